// Request shapes of the Ollama API that the daemon serves, as JSON schemas (validated by fastify
// before the handler runs) and the TypeScript types they guarantee. Optional fields may be null
// (clients such as Open WebUI send unset options that way).

const nullable = (schema: object) => ({ anyOf: [schema, { type: "null" }] });

const options = {
  type: "object",
  properties: {
    temperature: nullable({ type: "number", minimum: 0, maximum: 5 }),
    top_p: nullable({ type: "number", minimum: 0, maximum: 1 }),
    top_k: nullable({ type: "integer", minimum: 0 }),
    seed: nullable({ type: "integer" }),
    num_predict: nullable({ type: "integer" }),
    stop: nullable({ type: "array", items: { type: "string" }, maxItems: 16 }),
    repeat_penalty: nullable({ type: "number", exclusiveMinimum: 0, maximum: 10 }),
  },
};

const format = { anyOf: [{ enum: ["", "json", null] }, { type: "object" }] };

const common = {
  model: { type: "string", minLength: 1 },
  format,
  options: nullable(options),
  stream: nullable({ type: "boolean" }),
  keep_alive: { anyOf: [{ type: "string" }, { type: "number" }, { type: "null" }] },
};

const message = {
  type: "object",
  required: ["role"],
  properties: {
    role: { enum: ["system", "user", "assistant", "tool"] },
    content: { type: "string" },
    images: { anyOf: [{ type: "array", items: { type: "string" } }, { type: "null" }] },
    tool_calls: { type: "array", items: { type: "object", required: ["function"], properties: { function: { type: "object", required: ["name"], properties: { name: { type: "string" }, arguments: { type: "object" } } } } } },
  },
};

const tool = {
  type: "object",
  required: ["function"],
  properties: { function: { type: "object", required: ["name"], properties: { name: { type: "string" }, description: { type: "string" }, parameters: { type: "object" } } } },
};

export const chatSchema = {
  type: "object",
  required: ["model"],
  properties: { ...common, messages: nullable({ type: "array", items: message }), tools: nullable({ type: "array", items: tool }) },
};

export const generateSchema = {
  type: "object",
  required: ["model"],
  properties: { ...common, prompt: nullable({ type: "string" }), system: nullable({ type: "string" }), raw: nullable({ type: "boolean" }), images: { anyOf: [{ type: "array", items: { type: "string" } }, { type: "null" }] } },
};

export const showSchema = {
  type: "object",
  properties: { model: { type: "string", minLength: 1 }, name: { type: "string", minLength: 1 } },
  anyOf: [{ required: ["model"] }, { required: ["name"] }],
};

type Maybe<T> = T | null | undefined;

export interface OllamaOptions {
  temperature?: Maybe<number>;
  top_p?: Maybe<number>;
  top_k?: Maybe<number>;
  seed?: Maybe<number>;
  num_predict?: Maybe<number>;
  stop?: Maybe<string[]>;
  repeat_penalty?: Maybe<number>;
}

interface CommonBody {
  model: string;
  format?: Maybe<"" | "json" | object>;
  options?: Maybe<OllamaOptions>;
  stream?: Maybe<boolean>;
}

export interface ChatBody extends CommonBody {
  messages?: Maybe<{ role: "system" | "user" | "assistant" | "tool"; content?: string; images?: Maybe<string[]>; tool_calls?: { function: { name: string; arguments?: object } }[] }[]>;
  tools?: Maybe<{ function: { name: string; description?: string; parameters?: object } }[]>;
}

export interface GenerateBody extends CommonBody {
  prompt?: Maybe<string>;
  system?: Maybe<string>;
  raw?: Maybe<boolean>;
  images?: Maybe<string[]>;
}
