import { Command } from "commander";
import { DEFAULT_LISTEN, NanoError, readClientFile, readEnv } from "@nanollm/shared";
import { NanoClient, type Connection } from "../client/NanoClient.js";
import { discover } from "../client/discover.js";

export interface ConnectionFlags extends Connection {
  host?: string;
}

/** Adds --host and the TLS/token flags every command that talks to a daemon takes. */
export function connectionOptions(cmd: Command): Command {
  return cmd
    .option("-H, --host <host:port|auto>", `daemon address, or auto to find one on the LAN (env NANOLLM_HOST; default ${DEFAULT_LISTEN})`)
    .option("--tls-ca <pem>", "CA that signed the daemon's certificate; turns TLS on (env NANOLLM_TLS_CA)")
    .option("--tls-cert <pem>", "client certificate, for a daemon that wants one (env NANOLLM_TLS_CERT)")
    .option("--tls-key <pem>", "the client certificate's key (env NANOLLM_TLS_KEY)")
    .option("--token <token>", "bearer token from `nanollm tokens add` (env NANOLLM_TOKEN)");
}

/** Flags, then environment variables, then the client config file, then the defaults. */
export function resolveConnection(flags: ConnectionFlags): ConnectionFlags & { host: string } {
  const env = readEnv();
  const file = readClientFile(env.clientConfig);
  return {
    host: flags.host ?? (process.env.NANOLLM_HOST ? env.host : undefined) ?? file.host ?? DEFAULT_LISTEN,
    token: flags.token ?? env.token ?? file.token,
    tlsCa: flags.tlsCa ?? env.tlsCa ?? file.tlsCa,
    tlsCert: flags.tlsCert ?? env.tlsCert ?? file.tlsCert,
    tlsKey: flags.tlsKey ?? env.tlsKey ?? file.tlsKey,
  };
}

/** A client for the flags' daemon; `--host auto` takes the first daemon announced on the LAN. */
export async function connect(given: ConnectionFlags): Promise<NanoClient> {
  const flags = resolveConnection(given);
  let host = flags.host;
  if (host === "auto") {
    const found = await discover();
    const first = found[0];
    if (!first) throw new NanoError("UNAVAILABLE", "No nanollm daemon announced itself on the LAN within 2 s; start one with `nanollm serve --advertise`, or pass --host HOST:PORT.");
    if (first.tls && !flags.tlsCa) throw new NanoError("INVALID_ARGUMENT", `${first.name} at ${first.address} serves TLS; pass --tls-ca with the CA that signed its certificate.`);
    process.stderr.write(`using ${first.name} at ${first.address}${found.length > 1 ? ` (${found.length - 1} more: see \`nanollm discover\`)` : ""}\n`);
    host = first.address;
  }
  return new NanoClient(host, { tlsCa: flags.tlsCa, tlsCert: flags.tlsCert, tlsKey: flags.tlsKey, token: flags.token });
}
