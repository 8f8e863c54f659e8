import { randomUUID } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { fail, type GenerationParams } from "@nanollm/shared";
import type { TurnResult } from "../sessions/runTurn.js";
import type { Conversation } from "../sessions/StatelessSessions.js";
import { identityOf } from "./auth.js";
import { findModel, templateFor, toConversation, toolSet, type WireMessage, type WireTool } from "./conversation.js";
import { openaiError, toHttpError } from "./errors.js";
import { EventStream } from "./EventStream.js";
import { dataUrlImage } from "./images.js";
import type { ImageInput } from "../sessions/readImages.js";
import { jsonGrammar, replyLimit, samplingOf, stopList } from "./formats.js";
import { chatCompletionSchema, completionSchema, type ChatCompletionBody, type ChatMessageBody, type CompletionBody, type SamplingBody } from "./openaiSchemas.js";
import { finishReason, imageStoreFor, pinnedSession, requestSignal, runHttpTurn, type HttpApi } from "./turn.js";

/** The OpenAI API: chat completions (tools, JSON output, streaming), completions, models. */
export function openaiRoutes(app: FastifyInstance, api: HttpApi, bodyBytes: number): void {
  const model = (h: Conversation["host"]) => ({ id: h.facts.name, object: "model", created: Math.floor(api.state.startedAt / 1000), owned_by: "nanollm" });
  app.get("/v1/models", async () => ({ object: "list", data: (await api.state.models.list()).map(model) }));
  app.get("/v1/models/:id", async (req) => model(await findModel(api.state.models, (req.params as { id: string }).id)));

  app.post("/v1/chat/completions", { schema: { body: chatCompletionSchema } }, async (req, reply) => {
    const body = req.body as ChatCompletionBody;
    const host = await findModel(api.state.models, body.model);
    const tools = body.tool_choice === "none" ? [] : chosenTools(body);
    const template = templateFor(host, api.state.sessions.templates, tools.length > 0);
    const conv = await toConversation(host, template, toolSet(tools), body.messages.map(wireMessage), api.stateless, identityOf(req), imageStoreFor(api, req));
    const params = { ...common(body, host, body.max_completion_tokens ?? body.max_tokens, body.max_completion_tokens ? "max_completion_tokens" : "max_tokens"), grammar: formatGrammar(body.response_format) };
    return complete(api, req, reply, bodyBytes, { conv, params, body, kind: "chat" });
  });

  app.post("/v1/completions", { schema: { body: completionSchema } }, async (req, reply) => {
    const body = req.body as CompletionBody;
    const host = await findModel(api.state.models, body.model);
    const prompt = typeof body.prompt === "string" ? body.prompt : body.prompt[0]!;
    if (!prompt) throw fail.invalid("The prompt is empty; send some text.");
    const template = templateFor(host, api.state.sessions.templates, false, true);
    const conv = await toConversation(host, template, toolSet([]), [{ role: "user", content: prompt, toolCalls: [] }], api.stateless, identityOf(req));
    return complete(api, req, reply, bodyBytes, { conv, params: common(body, host, body.max_tokens, "max_tokens"), body, kind: "text" });
  });
}

function common(body: SamplingBody, host: Conversation["host"], maxTokens: number | null | undefined, field: string): GenerationParams & { stops: string[] } {
  if ((body.n ?? 1) !== 1) throw fail.invalid(`n is ${body.n}; nanollm returns one choice per request, so send n=1 or leave it out.`);
  // OpenAI's defaults: temperature 1, top_p 1, no top-k.
  return { maxNewTokens: replyLimit(host, field, maxTokens), ...samplingOf(body.temperature ?? 1, body.top_p ?? 1, 0, body.seed), stops: stopList(body.stop) };
}

function chosenTools(body: ChatCompletionBody): WireTool[] {
  const tools = (body.tools ?? []).map((t) => ({ name: t.function.name, description: t.function.description ?? "", parameters: t.function.parameters }));
  const choice = body.tool_choice;
  if (typeof choice !== "object" || choice === null) return tools;
  // A named tool narrows the list to it (the model may still answer in text).
  const named = tools.filter((t) => t.name === choice.function.name);
  if (named.length === 0) throw fail.invalid(`tool_choice names "${choice.function.name}", which is not among the request's tools; name one of them.`);
  return named;
}

function formatGrammar(format: ChatCompletionBody["response_format"]): string | undefined {
  if (!format) return undefined;
  switch (format.type) {
    case "text":
      return undefined;
    case "json_object":
      return jsonGrammar();
    case "json_schema":
      if (!format.json_schema?.schema) throw fail.invalid("response_format json_schema needs json_schema.schema, the JSON Schema of the reply; add it.");
      return jsonGrammar(format.json_schema.schema);
    default:
      return format.type satisfies never;
  }
}

/** A message's text parts (joined) and its images (data: URLs) where they stand among them; other parts are refused. */
function wireMessage(m: ChatMessageBody, index: number): WireMessage {
  let content = "";
  const images: ImageInput[] = [];
  if (typeof m.content === "string") content = m.content;
  else if (Array.isArray(m.content)) {
    for (const [p, part] of m.content.entries()) {
      if (part.type === "text") content += part.text ?? "";
      // An image stands where it comes among the text parts.
      else if (part.type === "image_url" && part.image_url) images.push({ ...dataUrlImage(part.image_url.url, `messages[${index}].content[${p}]`), at: content.length });
      else throw fail.invalid(`Message ${index} has a "${part.type}" content part, which nanollm does not take; send text and image_url parts only.`);
    }
  }
  const role = m.role === "developer" ? "system" : m.role;
  return { role, content, images, toolCalls: (m.tool_calls ?? []).map((c) => ({ name: c.function.name, arguments: c.function.arguments ?? "{}" })) };
}

interface Completion {
  conv: Conversation;
  params: GenerationParams & { stops: string[] };
  body: SamplingBody;
  /** A chat completion (messages), or a text completion (a raw prompt). */
  kind: "chat" | "text";
}

/** Runs the turn; answers with the whole completion, or streams it as server-sent events. */
async function complete(api: HttpApi, req: FastifyRequest, reply: FastifyReply, bodyBytes: number, c: Completion) {
  const { stops, ...params } = c.params;
  const id = `${c.kind === "chat" ? "chatcmpl" : "cmpl"}-${randomUUID()}`;
  const head = { id, object: c.kind === "chat" ? "chat.completion" : "text_completion", created: Math.floor(Date.now() / 1000), model: c.body.model };
  const signal = requestSignal(reply, api.shutdown);
  const turn = { who: identityOf(req), conv: c.conv, params, stops, pinned: pinnedSession(req), signal };
  if (!c.body.stream) {
    const result = await runHttpTurn(api, { ...turn, text: async () => {} });
    const choice = c.kind === "chat" ? { index: 0, message: chatMessage(result), logprobs: null, finish_reason: finishReason(result) } : { index: 0, text: result.reply, logprobs: null, finish_reason: finishReason(result) };
    return { ...head, choices: [choice], usage: usage(result) };
  }
  const stream = new EventStream(reply.raw, "sse");
  const withUsage = c.body.stream_options?.include_usage === true;
  const chunkHead = { ...head, object: c.kind === "chat" ? "chat.completion.chunk" : "text_completion" };
  const chunk = (delta: object, finish: string | null = null) => ({
    ...chunkHead,
    choices: [c.kind === "chat" ? { index: 0, delta, logprobs: null, finish_reason: finish } : { index: 0, text: (delta as { content?: string }).content ?? "", logprobs: null, finish_reason: finish }],
    ...(withUsage ? { usage: null } : {}),
  });
  let opened = false;
  // Headers go out with the first event, so a turn refused before any text is a plain HTTP error.
  const send = async (event: object | "[DONE]") => {
    if (!opened) {
      opened = true;
      reply.hijack();
      stream.open();
      if (c.kind === "chat") await stream.send(chunk({ role: "assistant", content: "" }));
    }
    await stream.send(event);
  };
  try {
    const result = await runHttpTurn(api, { ...turn, text: (delta) => send(chunk({ content: delta })) });
    const calls = toolCalls(result);
    if (calls.length > 0) await send(chunk({ tool_calls: calls.map((call, index) => ({ index, ...call })) }));
    await send(chunk({}, finishReason(result)));
    if (withUsage) await send({ ...chunkHead, choices: [], usage: usage(result) });
    await send("[DONE]");
  } catch (err) {
    if (!opened) throw err;
    await stream.send(openaiError(toHttpError(err, { bodyBytes }, api.state.log)));
  }
  stream.end();
  return reply;
}

function chatMessage(r: TurnResult) {
  const calls = toolCalls(r);
  return { role: "assistant", content: calls.length > 0 && !r.reply ? null : r.reply, refusal: null, ...(calls.length > 0 ? { tool_calls: calls } : {}) };
}

function toolCalls(r: TurnResult) {
  return r.toolCalls.map((c) => ({ id: `call_${randomUUID().replaceAll("-", "").slice(0, 24)}`, type: "function", function: { name: c.name, arguments: c.argumentsJson } }));
}

function usage(r: TurnResult) {
  const s = r.stats;
  return { prompt_tokens: s.inputTokens, completion_tokens: s.generatedTokens, total_tokens: s.inputTokens + s.generatedTokens, prompt_tokens_details: { cached_tokens: s.reusedTokens } };
}
