import os from "node:os";
import Bonjour from "bonjour-service";
import { VERSION } from "@nanollm/shared";

/** The DNS-SD service type nanollm daemons announce (_nanollm._tcp). */
export const SERVICE_TYPE = "nanollm";

export interface Announcement {
  port: number;
  /** The address bound, when it is one address rather than every interface. */
  host: string | undefined;
  model: string;
  tls: boolean;
  auth: boolean;
}

/** Announces the daemon on the LAN with mDNS/DNS-SD until the returned function is called. */
export function advertise(a: Announcement, log: (line: string) => void): () => Promise<void> {
  const bonjour = new Bonjour({}, (err: Error) => log(`mDNS: ${err.message}`));
  const name = `nanollm on ${os.hostname()}:${a.port}`;
  const txt: Record<string, string> = { v: VERSION, model: a.model, tls: a.tls ? "1" : "0", auth: a.auth ? "1" : "0" };
  if (a.host) txt.host = a.host;
  const service = bonjour.publish({ name, type: SERVICE_TYPE, port: a.port, txt });
  service.on("error", (err: Error) => log(`mDNS: ${err.message}`));
  log(`announcing "${name}" on the LAN (mDNS _${SERVICE_TYPE}._tcp)`);
  return () =>
    new Promise<void>((resolve) => {
      bonjour.unpublishAll(() => bonjour.destroy(() => resolve()));
      setTimeout(resolve, 1000).unref();
    });
}
