import fs from "node:fs";
import { ServerCredentials } from "@grpc/grpc-js";
import { fail, isLoopback } from "@nanollm/shared";

export interface TlsFiles {
  /** PEM certificate chain and private key the daemon serves TLS with. */
  cert?: string;
  key?: string;
  /** PEM CA whose client certificates are accepted (mutual TLS); clients without one are refused. */
  clientCa?: string;
}

/** Plaintext, or TLS from PEM files (mutual when a client CA is given). */
export function serverCredentials(tls: TlsFiles): ServerCredentials {
  if (!tls.cert && !tls.key) {
    if (tls.clientCa) throw fail.invalid("--tls-client-ca needs TLS itself: pass --tls-cert and --tls-key too.");
    return ServerCredentials.createInsecure();
  }
  if (!tls.cert || !tls.key) throw fail.invalid("TLS needs both --tls-cert and --tls-key (PEM files, e.g. from `nanollm certs init DIR`).");
  const pair = { cert_chain: readPem(tls.cert, "--tls-cert"), private_key: readPem(tls.key, "--tls-key") };
  const ca = tls.clientCa ? readPem(tls.clientCa, "--tls-client-ca") : null;
  try {
    return ServerCredentials.createSsl(ca, [pair], ca !== null);
  } catch (err) {
    throw fail.invalid(`The TLS files were refused (${(err as Error).message}); check that --tls-cert and --tls-key are a PEM certificate and its key.`);
  }
}

function readPem(file: string, flag: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    throw fail.invalid(`Cannot read ${flag} ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); give the path of a PEM file.`);
  }
  if (!bytes.includes("-----BEGIN")) throw fail.invalid(`${flag} ${file} is not a PEM file; give one from \`nanollm certs init DIR\`.`);
  return bytes;
}

/**
 * A non-loopback address is served only with TLS and authentication, or when the user said
 * --insecure; returns the warning to log (and to show in `nanollm models`) in that last case.
 */
export function checkExposure(host: string, listen: string, setup: { tls: boolean; auth: boolean; insecure: boolean }): string | undefined {
  if (isLoopback(host) || (setup.tls && setup.auth)) return undefined;
  const missing = [setup.tls ? "" : "TLS", setup.auth ? "" : "authentication"].filter(Boolean).join(" and ");
  if (!setup.insecure) {
    throw fail.precondition(
      `Refusing to serve ${listen} without ${missing}: anyone on the network could read and drive every session. Set it up with \`nanollm certs init DIR\` and \`nanollm tokens add NAME\` and pass --tls-cert/--tls-key, or pass --insecure to serve it open anyway.`,
    );
  }
  return `WARNING: serving ${listen} without ${missing} (--insecure): anyone who can reach it can read and drive every session.`;
}
