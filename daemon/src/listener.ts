import http2 from "node:http2";
import net from "node:net";
import { status, type Server, type ServerCredentials } from "@grpc/grpc-js";

/** A connection that has sent nothing this long after connecting is closed (slowloris). */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/** Refusals answered at once; past this many, a connection over the limit is simply closed. */
const MAX_REFUSING = 64;

export interface ConnectionLimits {
  /** Client connections served at once (NANOLLM_MAX_CONNECTIONS). */
  maxConnections: number;
  /** Whether connections speak TLS: the refusal is then a plain close (it would need the certificate). */
  tls: boolean;
}

export interface Listener {
  port: number;
  /** Connections being served now. */
  readonly connections: number;
  close(): void;
}

/**
 * Accepts TCP connections for the gRPC server itself (grpc-js has no connection limit): up to
 * `maxConnections` are handed to grpc-js; one more gets every call answered RESOURCE_EXHAUSTED
 * with a sentence saying why, then is closed (over TLS it is closed at once). Measured before: 20,000 idle connections used up
 * the daemon's file descriptors and every new client got UNAVAILABLE.
 */
export async function listen(server: Server, credentials: ServerCredentials, host: string, port: number, limits: ConnectionLimits, log: (line: string) => void): Promise<Listener> {
  const injector = server.createConnectionInjector(credentials);
  const refusal = `The daemon already serves ${limits.maxConnections} connections, its limit (NANOLLM_MAX_CONNECTIONS); close idle clients or raise the limit.`;
  const refuser = http2.createServer();
  refuser.on("stream", (stream) => {
    stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": String(status.RESOURCE_EXHAUSTED), "grpc-message": refusal }, { endStream: true });
    stream.session?.close();
  });
  refuser.on("sessionError", () => undefined);
  let connections = 0;
  let refusing = 0;
  let warned = 0;
  const tcp = net.createServer((socket) => {
    socket.on("error", () => undefined);
    if (connections >= limits.maxConnections) {
      if (Date.now() - warned > 10_000) {
        warned = Date.now();
        log(`refusing connections: ${connections} are open, the limit (NANOLLM_MAX_CONNECTIONS)`);
      }
      if (limits.tls || refusing >= MAX_REFUSING) return void socket.destroy();
      refusing++;
      // Timers, not socket timeouts: once HTTP/2 owns the socket its timeout events stop.
      const timer = setTimeout(() => socket.destroy(), 2000);
      socket.once("close", () => {
        refusing--;
        clearTimeout(timer);
      });
      refuser.emit("connection", socket);
      return;
    }
    connections++;
    const handshake = setTimeout(() => socket.bytesRead === 0 && socket.destroy(), HANDSHAKE_TIMEOUT_MS);
    socket.once("close", () => {
      connections--;
      clearTimeout(handshake);
    });
    injector.injectConnection(socket);
  });
  await new Promise<void>((resolve, reject) => {
    tcp.once("error", reject);
    tcp.listen({ host, port }, () => {
      tcp.off("error", reject);
      resolve();
    });
  });
  return {
    port: (tcp.address() as net.AddressInfo).port,
    get connections() {
      return connections;
    },
    close: () => {
      tcp.close();
      injector.destroy();
      refuser.close();
    },
  };
}
