import { timingSafeEqual } from "node:crypto";
import { fail, isLoopback } from "@nanollm/shared";
import { LOCAL_OWNER, type Identity, type Peer } from "./Identity.js";
import { tokenDigest, type TokenFile } from "./TokenFile.js";

/** Request headers as gRPC metadata maps and node's HTTP server both give them. */
export type Headers = Record<string, unknown>;

const MISSING = "This daemon requires a token: pass --token (or set NANOLLM_TOKEN) with one from `nanollm tokens add NAME` on the daemon's host.";
// One sentence for a malformed, unknown or revoked token, so a caller cannot tell them apart.
const REJECTED = "The daemon did not accept this token (unknown, revoked or malformed); ask for a new one from `nanollm tokens add NAME`.";
const LONGEST_HEADER = 4096;
const ZERO = Buffer.alloc(32);

export interface AuthOptions {
  /** Where tokens are kept; undefined when the daemon has no data dir (then only certificates). */
  tokens: TokenFile | undefined;
  /** Client certificates are verified against a CA (mutual TLS); a verified one is an identity. */
  clientCertificates: boolean;
  /** Demand credentials even while the tokens file is empty. */
  required: boolean;
}

/** Turns a call's headers and transport into an Identity, or throws UNAUTHENTICATED. */
export class Authenticator {
  private locked: boolean;

  constructor(private readonly opts: AuthOptions) {
    this.locked = opts.required;
  }

  /** Whether callers must present a token or a client certificate. */
  get enabled(): boolean {
    // Once tokens have existed, revoking them all locks the daemon rather than opening it.
    this.locked ||= this.count() > 0;
    return this.locked || this.opts.clientCertificates;
  }

  /** Tokens issued now. */
  count(): number {
    return this.opts.tokens?.entries().length ?? 0;
  }

  authenticate(headers: Headers, peer: Peer): Identity {
    const loopback = isLoopback(peer.address);
    const header = headers.authorization ?? headers.Authorization;
    if (header !== undefined) {
      if (!this.enabled) return { name: LOCAL_OWNER, admin: loopback, loopback, via: "none" };
      return { ...this.token(header), loopback, via: "token" };
    }
    if (peer.certificate && this.opts.clientCertificates) {
      return { name: peer.certificate.commonName, admin: peer.certificate.unit === "admin", loopback, via: "certificate" };
    }
    if (this.enabled) throw fail.unauthenticated(MISSING);
    return { name: LOCAL_OWNER, admin: loopback, loopback, via: "none" };
  }

  /**
   * The entry the bearer token matches. Malformed values are hashed and compared like well-formed
   * ones, and every entry is compared without stopping at a match, so the time taken does not say
   * which case it was or how many tokens exist.
   */
  private token(header: unknown): { name: string; admin: boolean } {
    const value = Array.isArray(header) ? header[0] : header;
    const text = typeof value === "string" ? value.slice(0, LONGEST_HEADER) : "";
    const match = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/i.exec(text);
    const digest = tokenDigest(match?.[1] ?? text);
    let found: { name: string; admin: boolean } | undefined;
    for (const entry of this.opts.tokens?.entries() ?? []) {
      const same = timingSafeEqual(Buffer.from(entry.sha256, "hex"), digest);
      if (same && match) found = { name: entry.name, admin: entry.admin };
    }
    if (!match) timingSafeEqual(ZERO, digest);
    if (!found) throw fail.unauthenticated(REJECTED);
    return found;
  }
}
