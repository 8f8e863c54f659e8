import { NanoError, type ErrorCode } from "@nanollm/shared";

/** An error as the HTTP APIs report it: a status, one sentence, and when to retry (overload). */
export interface HttpError {
  status: number;
  message: string;
  retryAfterSeconds?: number;
}

const STATUS: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: 400,
  OUT_OF_RANGE: 400,
  NOT_FOUND: 404,
  FAILED_PRECONDITION: 409,
  RESOURCE_EXHAUSTED: 429,
  // A cancelled turn's client is gone, or the daemon is shutting down: either way, retry later.
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  CANCELLED: 503,
  UNAVAILABLE: 503,
  INTERNAL: 500,
};

// Messages echo client strings at times; a status line's sentence stays short.
const MAX_MESSAGE = 500;

/** fastify's own errors that a client causes, as the sentence that says what to fix. */
interface FrameworkError {
  code?: string;
  statusCode?: number;
  validation?: { instancePath: string; message?: string; params?: Record<string, unknown> }[];
  validationContext?: string;
}

/** The one place an error becomes an HTTP status and sentence; anything unexpected is logged and hidden. */
export function toHttpError(err: unknown, limits: { bodyBytes: number }, log: (line: string) => void): HttpError {
  if (err instanceof NanoError) {
    const status = STATUS[err.code];
    return { status, message: clip(err.message), retryAfterSeconds: status === 429 || status === 503 ? 1 : undefined };
  }
  const fe = (err ?? {}) as FrameworkError;
  switch (fe.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return { status: 413, message: `The request body is larger than the limit of ${limits.bodyBytes} bytes; send a shorter conversation.` };
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return { status: 400, message: `The request body is not valid JSON (${clip((err as Error).message, 200)}); send one JSON object.` };
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return { status: 400, message: "The request body is empty; send a JSON object." };
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return { status: 415, message: "The request body's content type is not supported; send JSON (Content-Type: application/json)." };
  }
  const first = fe.validation?.[0];
  if (first) {
    const field = first.instancePath ? first.instancePath.slice(1).replaceAll("/", ".") : "the body";
    const allowed = Array.isArray(first.params?.allowedValues) ? ` (one of ${first.params.allowedValues.join(", ")})` : "";
    return { status: 400, message: clip(`The request is invalid: ${field} ${first.message ?? "is wrong"}${allowed}; fix that field and retry.`) };
  }
  if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) return { status: fe.statusCode, message: clip(`The request was refused (${(err as Error).message}).`) };
  log(`internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  const why = err instanceof Error ? err.message.split("\n")[0] : String(err);
  return { status: 500, message: clip(`The daemon failed unexpectedly (${why}); see its log.`) };
}

function clip(message: string, max = MAX_MESSAGE): string {
  const oneLine = message.replace(/[\u0000-\u001f\u007f]/g, " ");
  return oneLine.length <= max ? oneLine : `${oneLine.slice(0, max - 1)}…`;
}

/** The OpenAI API's error body. */
export function openaiError(e: HttpError): { error: { message: string; type: string; param: null; code: string | null } } {
  const type =
    e.status === 429 ? "rate_limit_error" : e.status >= 500 ? "server_error" : e.status === 404 ? "not_found_error" : e.status === 401 ? "authentication_error" : e.status === 403 ? "permission_error" : "invalid_request_error";
  return { error: { message: e.message, type, param: null, code: e.status === 404 ? "not_found" : null } };
}

/** The Ollama API's error body. */
export function ollamaError(e: HttpError): { error: string } {
  return { error: e.message };
}
