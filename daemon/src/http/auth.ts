import type { IncomingHttpHeaders } from "node:http";
import type { FastifyRequest } from "fastify";
import { fail } from "@nanollm/shared";
import type { Identity } from "../auth/Identity.js";

/** What an authorization check sees of a request. */
export interface RequestCredentials {
  headers: IncomingHttpHeaders;
  remoteAddress: string | undefined;
}

/**
 * Establishes who is calling, or refuses the request by throwing a NanoError (UNAUTHENTICATED).
 * Called once per request before anything else is read: the one place HTTP requests are
 * authenticated. The daemon's default is its gRPC Authenticator (an OpenAI client's API key is a
 * nanollm token, sent as `Authorization: Bearer`).
 */
export type Authorize = (request: RequestCredentials) => Identity | Promise<Identity>;

const identities = new WeakMap<FastifyRequest, Identity>();

export function setIdentity(req: FastifyRequest, who: Identity): void {
  identities.set(req, who);
}

/** The identity the hook established for this request. */
export function identityOf(req: FastifyRequest): Identity {
  const who = identities.get(req);
  if (!who) throw fail.internal("An HTTP handler ran without the authorization hook; this is a bug in the daemon.");
  return who;
}
