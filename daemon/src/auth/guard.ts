import type { ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import { fail } from "@nanollm/shared";
import { toServiceError } from "../rpc/errors.js";
import type { Authenticator } from "./authenticate.js";
import type { Identity, Peer } from "./Identity.js";

interface AnyCall {
  metadata: { getMap(): Record<string, unknown> };
  getPeer(): string;
  getAuthContext(): { sslPeerCertificate?: { subject?: Record<string, string | string[]> } };
  emit(event: "error", err: unknown): boolean;
}

const identities = new WeakMap<object, Identity>();

/** The identity the guard established for this call. */
export function identityOf(call: object): Identity {
  const who = identities.get(call);
  if (!who) throw fail.internal("A handler ran without the auth guard; this is a bug in the daemon.");
  return who;
}

/**
 * Every handler of `impl`, behind authentication: the call's identity is set before the handler
 * runs (read it with identityOf), and a call without valid credentials ends UNAUTHENTICATED
 * before any handler code sees it. The one place gRPC calls are authenticated.
 */
export function guard<T extends UntypedServiceImplementation>(service: ServiceDefinition, impl: T, auth: Authenticator, log: (line: string) => void): T {
  const wrapped: UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(impl)) {
    const method = service[name];
    if (!method) throw new Error(`guard: ${name} is not a method of the service`);
    const unaryReply = !method.responseStream;
    wrapped[name] = ((call: AnyCall, callback?: (err: unknown) => void) => {
      let who: Identity;
      try {
        who = auth.authenticate(call.metadata.getMap(), peerOf(call));
      } catch (err) {
        const status = toServiceError(err, log);
        if (unaryReply && callback) callback(status);
        else call.emit("error", status);
        return;
      }
      identities.set(call, who);
      (handler as (call: AnyCall, callback?: unknown) => void)(call, callback);
    }) as UntypedServiceImplementation[string];
  }
  return wrapped as T;
}

/** The caller's address (grpc-js gives "ADDRESS:PORT", IPv6 unbracketed) and its verified certificate. */
function peerOf(call: AnyCall): Peer {
  const peer = call.getPeer();
  const address = /:\d+$/.test(peer) ? peer.slice(0, peer.lastIndexOf(":")) : peer;
  const subject = call.getAuthContext().sslPeerCertificate?.subject;
  const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
  const commonName = first(subject?.CN);
  return { address, certificate: commonName ? { commonName, unit: first(subject?.OU) ?? "" } : undefined };
}
