import Fastify, { type FastifyError, type FastifyInstance } from "fastify";
import { fail, formatAddress, isLoopback, parseAddress } from "@nanollm/shared";
import { setIdentity, type Authorize } from "./auth.js";
import { ollamaError, openaiError, toHttpError } from "./errors.js";
import { ollamaRoutes } from "./ollama.js";
import { openaiRoutes } from "./openai.js";
import type { HttpApi } from "./turn.js";

export interface HttpOptions {
  listen: string;
  /** Largest request body accepted, in bytes (a longer one is refused with 413). */
  bodyBytes: number;
  authorize: Authorize;
}

export interface RunningHttp {
  address: string;
  port: number;
  /** Stops accepting; requests in flight end when their turns do (shutdown aborts them). */
  close(): Promise<void>;
}

/** Serves the OpenAI (/v1) and Ollama (/api) HTTP APIs over the daemon's own models and sessions. */
export async function startHttp(api: HttpApi, opts: HttpOptions): Promise<RunningHttp> {
  const app: FastifyInstance = Fastify({
    bodyLimit: opts.bodyBytes,
    // Wrong types are errors, not coerced ("5" is not a number); unknown fields are ignored.
    ajv: { customOptions: { coerceTypes: false, allErrors: false } },
    logger: false,
  });
  app.addHook("onRequest", async (req) => {
    setIdentity(req, await opts.authorize({ headers: req.headers, remoteAddress: req.socket.remoteAddress }));
  });
  // Some clients (curl without -H) send JSON as text/plain or with no type at all.
  app.addContentTypeParser(["text/plain", "application/x-www-form-urlencoded"], { parseAs: "string" }, app.getDefaultJsonParser("error", "error"));
  const shape = (url: string) => (url.startsWith("/v1/") ? openaiError : ollamaError);
  app.setErrorHandler((err: FastifyError, req, reply) => {
    const e = toHttpError(err, { bodyBytes: opts.bodyBytes }, api.state.log);
    if (e.retryAfterSeconds !== undefined) void reply.header("retry-after", String(e.retryAfterSeconds));
    if (e.status === 401) void reply.header("www-authenticate", 'Bearer realm="nanollm"');
    void reply.code(e.status).send(shape(req.url)(e));
  });
  app.setNotFoundHandler((req, reply) => {
    const e = { status: 404, message: `There is no ${req.method} ${req.url.split("?")[0]}; the OpenAI API is under /v1 (e.g. POST /v1/chat/completions), the Ollama API under /api.` };
    void reply.code(404).send(shape(req.url)(e));
  });
  app.get("/", async () => "nanollm is running\n");
  openaiRoutes(app, api, opts.bodyBytes);
  ollamaRoutes(app, api, opts.bodyBytes);

  const { host, port } = parseAddress(opts.listen);
  try {
    await app.listen({ host, port });
  } catch (err) {
    throw fail.unavailable(`Cannot serve HTTP on ${opts.listen} (${(err as Error).message}); pick another address with --http, or --http off.`);
  }
  const bound = app.server.address();
  const boundPort = typeof bound === "object" && bound ? bound.port : port;
  let closing: Promise<void> | undefined;
  return { address: formatAddress(host, boundPort), port: boundPort, close: () => (closing ??= app.close()) };
}

/**
 * The HTTP APIs have no TLS: off loopback, tokens and chats would cross the network in clear text,
 * so that needs --insecure (returns the warning to log then).
 */
export function checkHttpExposure(listen: string, insecure: boolean): string | undefined {
  if (isLoopback(parseAddress(listen).host)) return undefined;
  if (!insecure) {
    throw fail.precondition(
      `Refusing to serve the HTTP APIs on ${listen}: they have no TLS, so tokens and chats would cross the network in clear text; keep them on loopback (the default) behind an SSH tunnel or a TLS proxy, or pass --insecure to serve them anyway.`,
    );
  }
  return `WARNING: serving the HTTP APIs on ${listen} in clear text (--insecure): anyone on the network can read the chats and the tokens sent.`;
}
