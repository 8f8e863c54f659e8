import { Command } from "commander";
import { discover } from "../client/discover.js";
import { intArg } from "./options.js";

/** `nanollm discover`: daemons announced on the LAN by `serve --advertise`. */
export function discoverCommand(): Command {
  return new Command("discover")
    .description("list nanollm daemons announced on the LAN (mDNS/DNS-SD)")
    .option("--wait <ms>", "how long to listen for announcements", intArg(100, 60_000), 2000)
    .action(async (opts: { wait: number }) => {
      const found = await discover(opts.wait);
      if (found.length === 0) console.log("no daemons found (start one with `nanollm serve --advertise`)");
      for (const d of found) console.log(`${d.address}  ${d.name}  model ${d.model}  ${d.tls ? "TLS" : "plaintext"}  ${d.auth ? "auth" : "no auth"}  v${d.version}`);
    });
}
