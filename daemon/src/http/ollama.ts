import { createHash } from "node:crypto";
import fs from "node:fs";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { fail, VERSION, type GenerationParams } from "@nanollm/shared";
import type { ModelHost } from "../engine/ModelHost.js";
import type { LocalFile } from "../models/catalogue.js";
import type { TurnResult } from "../sessions/runTurn.js";
import type { Conversation } from "../sessions/StatelessSessions.js";
import { identityOf } from "./auth.js";
import { findModel, templateFor, toConversation, toolSet, type WireMessage } from "./conversation.js";
import { ollamaError, toHttpError } from "./errors.js";
import { EventStream } from "./EventStream.js";
import { base64Image } from "./images.js";
import { jsonGrammar, replyLimit, samplingOf } from "./formats.js";
import { chatSchema, generateSchema, showSchema, type ChatBody, type GenerateBody } from "./ollamaSchemas.js";
import { finishReason, imageStoreFor, pinnedSession, requestSignal, runHttpTurn, type HttpApi } from "./turn.js";

/** The Ollama API: chat and generate (NDJSON streams), and the model listings its clients ask for. */
export function ollamaRoutes(app: FastifyInstance, api: HttpApi, bodyBytes: number): void {
  const hosts = () => api.state.models.list();
  app.get("/api/version", async () => ({ version: VERSION }));
  app.get("/api/tags", async () => {
    const known = await hosts();
    // The models folder's files too, as `ollama list` shows what can be run; naming one loads it.
    const files = api.state.models.catalogue().filter((f) => !known.some((h) => h.facts.file === f.file));
    return {
      models: [
        ...known.map((h) => ({ ...describe(h), modified_at: new Date(api.state.startedAt).toISOString() })),
        ...files.map((f) => ({ ...describeFile(f), modified_at: fs.statSync(f.file).mtime.toISOString() })),
      ],
    };
  });
  app.get("/api/ps", async () => ({
    models: (await hosts()).filter((h) => h.loaded).map((h) => ({ ...describe(h), expires_at: new Date(api.state.models.unloadsAt(h) ?? Date.now() + 365 * 86_400_000).toISOString(), size_vram: 0, context_length: h.facts.contextSize })),
  }));
  app.post("/api/show", { schema: { body: showSchema } }, async (req) => {
    const body = req.body as { model?: string; name?: string };
    const h = await findModel(api.state.models, (body.model ?? body.name)!);
    const template = templateFor(h, api.state.sessions.templates, false);
    return {
      modelfile: "",
      parameters: "",
      template: template.name,
      details: describe(h).details,
      model_info: { "general.architecture": h.facts.architecture, "general.parameter_count": h.facts.parameters, [`${h.facts.architecture}.context_length`]: h.facts.contextSize },
      capabilities: [
        "completion",
        ...(template.tool_call || api.state.sessions.templates.names().includes(`${template.name}-tools`) ? ["tools"] : []),
        ...(h.images ? ["vision"] : []),
      ],
      modified_at: new Date(api.state.startedAt).toISOString(),
    };
  });

  app.post("/api/chat", { schema: { body: chatSchema } }, async (req, reply) => {
    const body = req.body as ChatBody;
    const host = await findModel(api.state.models, body.model);
    const messages = body.messages ?? [];
    if (messages.length === 0) return { model: body.model, created_at: new Date().toISOString(), message: { role: "assistant", content: "" }, done_reason: "load", done: true };
    const tools = (body.tools ?? []).map((t) => ({ name: t.function.name, description: t.function.description ?? "", parameters: t.function.parameters }));
    const template = templateFor(host, api.state.sessions.templates, tools.length > 0);
    const wire = messages.map((m, i): WireMessage => ({
      role: m.role,
      content: m.content ?? "",
      images: (m.images ?? []).map((b64, j) => base64Image(b64, `messages[${i}].images[${j}]`)),
      toolCalls: (m.tool_calls ?? []).map((c) => ({ name: c.function.name, arguments: JSON.stringify(c.function.arguments ?? {}) })),
    }));
    const conv = await toConversation(host, template, toolSet(tools), wire, api.stateless, identityOf(req), imageStoreFor(api, req));
    return answer(api, req, reply, bodyBytes, { conv, body, params: params(host, body), kind: "chat" });
  });

  app.post("/api/generate", { schema: { body: generateSchema } }, async (req, reply) => {
    const body = req.body as GenerateBody;
    const host = await findModel(api.state.models, body.model);
    if (!body.prompt && !body.images?.length) return { model: body.model, created_at: new Date().toISOString(), response: "", done_reason: "load", done: true };
    const template = templateFor(host, api.state.sessions.templates, false, body.raw === true);
    const images = (body.images ?? []).map((b64, j) => base64Image(b64, `images[${j}]`));
    const wire: WireMessage[] = [...(body.system && !body.raw ? [{ role: "system" as const, content: body.system, toolCalls: [] }] : []), { role: "user", content: body.prompt ?? "", images, toolCalls: [] }];
    const conv = await toConversation(host, template, toolSet([]), wire, api.stateless, identityOf(req), imageStoreFor(api, req));
    return answer(api, req, reply, bodyBytes, { conv, body, params: params(host, body), kind: "generate" });
  });
}

/** A model as Ollama's listings describe it. */
function describe(h: ModelHost) {
  const f = h.facts;
  return {
    name: `${f.name}:latest`,
    model: `${f.name}:latest`,
    size: f.sizeBytes,
    digest: createHash("sha256").update(`${f.file}:${f.sizeBytes}`).digest("hex"),
    details: { parent_model: "", format: "gguf", family: f.architecture, families: [f.architecture], parameter_size: parameterSize(f.parameters), quantization_level: "" },
  };
}

/** A file of the models folder as Ollama's listing describes it (from its header: no parameter count). */
function describeFile(f: LocalFile) {
  return {
    name: `${f.name}:latest`,
    model: `${f.name}:latest`,
    size: f.sizeBytes,
    digest: createHash("sha256").update(`${f.file}:${f.sizeBytes}`).digest("hex"),
    details: { parent_model: "", format: "gguf", family: f.architecture, families: [f.architecture], parameter_size: "", quantization_level: f.quantization },
  };
}

function parameterSize(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(1)}B` : n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : `${(n / 1e3).toFixed(1)}K`;
}

function params(host: ModelHost, body: { format?: ChatBody["format"]; options?: ChatBody["options"] }): GenerationParams & { stops: string[] } {
  const o = body.options ?? {};
  const format = body.format;
  // Ollama's defaults: temperature 0.8, top_p 0.9, top_k 40; num_predict -1 means no limit.
  return {
    maxNewTokens: replyLimit(host, "options.num_predict", o.num_predict),
    ...samplingOf(o.temperature ?? 0.8, o.top_p ?? 0.9, o.top_k ?? 40, o.seed),
    ...(o.repeat_penalty != null ? { repetitionPenalty: o.repeat_penalty } : {}),
    grammar: format === "json" ? jsonGrammar() : format && typeof format === "object" ? jsonGrammar(format) : undefined,
    stops: (o.stop ?? []).filter((s) => s.length > 0),
  };
}

interface Answer {
  conv: Conversation;
  body: { model: string; stream?: boolean | null };
  params: GenerationParams & { stops: string[] };
  kind: "chat" | "generate";
}

/** Runs the turn; answers with one JSON object, or (the default) streams NDJSON lines. */
async function answer(api: HttpApi, req: FastifyRequest, reply: FastifyReply, bodyBytes: number, a: Answer) {
  const started = performance.now();
  const { stops, ...params } = a.params;
  const signal = requestSignal(reply, api.shutdown);
  const turn = { who: identityOf(req), conv: a.conv, params, stops, pinned: pinnedSession(req), signal };
  const line = (text: string, extra: object = {}) => ({
    model: a.body.model,
    created_at: new Date().toISOString(),
    ...(a.kind === "chat" ? { message: { role: "assistant", content: text } } : { response: text }),
    done: false,
    ...extra,
  });
  const last = (r: TurnResult, text: string) => {
    const end = line(text, { done: true, done_reason: finishReason(r) === "length" ? "length" : "stop", ...timings(r, started) });
    const calls = r.toolCalls.map((c) => ({ function: { name: c.name, arguments: JSON.parse(c.argumentsJson) as object } }));
    if (a.kind === "chat" && calls.length > 0) Object.assign((end as { message: object }).message, { tool_calls: calls });
    return end;
  };
  if (a.body.stream === false) {
    const result = await runHttpTurn(api, { ...turn, text: async () => {} });
    return last(result, result.reply);
  }
  const stream = new EventStream(reply.raw, "ndjson");
  let opened = false;
  // Headers go out with the first line, so a turn refused before any text is a plain HTTP error.
  const send = async (event: object) => {
    if (!opened) {
      opened = true;
      reply.hijack();
      stream.open();
    }
    await stream.send(event);
  };
  try {
    const result = await runHttpTurn(api, { ...turn, text: (delta) => send(line(delta)) });
    await send(last(result, ""));
  } catch (err) {
    if (!opened) throw err;
    await stream.send(ollamaError(toHttpError(err, { bodyBytes }, api.state.log)));
  }
  stream.end();
  return reply;
}

/** Ollama's counts and durations (nanoseconds). */
function timings(r: TurnResult, started: number) {
  const ns = (ms: number) => Math.round(ms * 1e6);
  const s = r.stats;
  return {
    total_duration: ns(performance.now() - started),
    load_duration: 0,
    prompt_eval_count: s.evaluatedTokens,
    prompt_eval_duration: ns(s.prefillMs),
    eval_count: s.generatedTokens,
    eval_duration: ns(s.decodeMs),
  };
}
