import Bonjour from "bonjour-service";

/** A daemon found on the LAN. */
export interface Found {
  name: string;
  /** HOST:PORT to connect to. */
  address: string;
  model: string;
  version: string;
  tls: boolean;
  auth: boolean;
}

/** Listens for nanollm daemons' mDNS/DNS-SD announcements (_nanollm._tcp) for `ms`. */
export async function discover(ms = 2000): Promise<Found[]> {
  const bonjour = new Bonjour({}, () => {});
  const found = new Map<string, Found>();
  const browser = bonjour.find({ type: "nanollm" }, (service) => {
    const txt = (service.txt ?? {}) as Record<string, string>;
    const addresses = (service.addresses ?? []).filter((a) => !a.includes(":"));
    const host = txt.host ?? addresses[0] ?? service.host;
    const address = host.includes(":") ? `[${host}]:${service.port}` : `${host}:${service.port}`;
    found.set(service.name, { name: service.name, address, model: txt.model ?? "", version: txt.v ?? "", tls: txt.tls === "1", auth: txt.auth === "1" });
  });
  await new Promise((resolve) => setTimeout(resolve, ms));
  browser.stop();
  await new Promise<void>((resolve) => bonjour.destroy(() => resolve()));
  return [...found.values()].sort((a, b) => a.name.localeCompare(b.name));
}
