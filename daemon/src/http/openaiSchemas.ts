// Request shapes of the OpenAI API that the daemon serves, as JSON schemas (fastify validates each
// body against its schema before the handler runs) and the TypeScript types they guarantee.

const nullable = (schema: object) => ({ anyOf: [schema, { type: "null" }] });

const contentPart = {
  type: "object",
  required: ["type"],
  properties: {
    type: { type: "string" },
    text: { type: "string" },
    image_url: { type: "object", required: ["url"], properties: { url: { type: "string" }, detail: { type: "string" } } },
  },
};

const toolCall = {
  type: "object",
  required: ["function"],
  properties: {
    id: { type: "string" },
    type: { type: "string" },
    function: { type: "object", required: ["name"], properties: { name: { type: "string" }, arguments: { type: "string" } } },
  },
};

const message = {
  type: "object",
  required: ["role"],
  properties: {
    role: { enum: ["system", "developer", "user", "assistant", "tool"] },
    content: nullable({ anyOf: [{ type: "string" }, { type: "array", items: contentPart }] }),
    name: { type: "string" },
    tool_call_id: { type: "string" },
    tool_calls: nullable({ type: "array", items: toolCall }),
  },
};

const tool = {
  type: "object",
  required: ["type", "function"],
  properties: {
    type: { const: "function" },
    function: {
      type: "object",
      required: ["name"],
      properties: { name: { type: "string" }, description: { type: "string" }, parameters: { type: "object" }, strict: nullable({ type: "boolean" }) },
    },
  },
};

/** Sampling fields both endpoints take. */
const sampling = {
  model: { type: "string", minLength: 1 },
  max_tokens: nullable({ type: "integer", minimum: 1 }),
  temperature: nullable({ type: "number", minimum: 0, maximum: 2 }),
  top_p: nullable({ type: "number", minimum: 0, maximum: 1 }),
  seed: nullable({ type: "integer" }),
  stop: nullable({ anyOf: [{ type: "string" }, { type: "array", items: { type: "string" }, maxItems: 16 }] }),
  n: nullable({ type: "integer", minimum: 1 }),
  stream: nullable({ type: "boolean" }),
  stream_options: nullable({ type: "object", properties: { include_usage: nullable({ type: "boolean" }) } }),
};

export const chatCompletionSchema = {
  type: "object",
  required: ["model", "messages"],
  properties: {
    ...sampling,
    messages: { type: "array", minItems: 1, items: message },
    max_completion_tokens: nullable({ type: "integer", minimum: 1 }),
    tools: nullable({ type: "array", items: tool }),
    tool_choice: nullable({
      anyOf: [{ enum: ["none", "auto", "required"] }, { type: "object", required: ["function"], properties: { function: { type: "object", required: ["name"], properties: { name: { type: "string" } } } } }],
    }),
    response_format: nullable({
      type: "object",
      required: ["type"],
      properties: {
        type: { enum: ["text", "json_object", "json_schema"] },
        json_schema: { type: "object", properties: { name: { type: "string" }, schema: { type: "object" }, strict: nullable({ type: "boolean" }) } },
      },
    }),
  },
};

export const completionSchema = {
  type: "object",
  required: ["model", "prompt"],
  properties: { ...sampling, prompt: { anyOf: [{ type: "string" }, { type: "array", items: { type: "string" }, minItems: 1, maxItems: 1 }] } },
};

type Maybe<T> = T | null | undefined;

export type ContentPart = { type: string; text?: string; image_url?: { url: string; detail?: string } };

export interface ChatMessageBody {
  role: "system" | "developer" | "user" | "assistant" | "tool";
  content?: Maybe<string | ContentPart[]>;
  tool_calls?: Maybe<{ id?: string; function: { name: string; arguments?: string } }[]>;
}

export interface SamplingBody {
  model: string;
  max_tokens?: Maybe<number>;
  temperature?: Maybe<number>;
  top_p?: Maybe<number>;
  seed?: Maybe<number>;
  stop?: Maybe<string | string[]>;
  n?: Maybe<number>;
  stream?: Maybe<boolean>;
  stream_options?: Maybe<{ include_usage?: Maybe<boolean> }>;
}

export interface ChatCompletionBody extends SamplingBody {
  messages: ChatMessageBody[];
  max_completion_tokens?: Maybe<number>;
  tools?: Maybe<{ function: { name: string; description?: string; parameters?: object } }[]>;
  tool_choice?: Maybe<"none" | "auto" | "required" | { function: { name: string } }>;
  response_format?: Maybe<{ type: "text" | "json_object" | "json_schema"; json_schema?: { name?: string; schema?: object } }>;
}

export interface CompletionBody extends SamplingBody {
  prompt: string | string[];
}
