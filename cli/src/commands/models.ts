import { Command } from "commander";
import { formatBytes, type ModelInfo } from "@nanollm/shared";
import type { NanoClient } from "../client/NanoClient.js";
import { connect, connectionOptions, type ConnectionFlags } from "./connection.js";
import { plural } from "./format.js";
import { choiceArg, intArg } from "./options.js";

/** Runs `fn` with a client for --host and closes it after. */
export function withClient(fn: (client: NanoClient, ...args: string[]) => Promise<void>) {
  return async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command;
    const client = await connect(cmd.optsWithGlobals() as ConnectionFlags);
    try {
      await fn(client, ...(args.slice(0, -2) as string[]));
    } finally {
      client.close();
    }
  };
}

const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

/** "12s", "4m", "2h". */
function span(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m` : `${Math.floor(s / 3600)}h`;
}

/** How a loaded model is used: its memory, sessions, and idle time or turn. */
function usage(m: ModelInfo, now = Date.now()): string {
  const state = m.busy ? "busy" : `idle ${span(Number(m.idleMs))}${Number(m.unloadsAtMs) > 0 ? `, unloads in ${span(Number(m.unloadsAtMs) - now)}` : ""}`;
  return `${formatBytes(Number(m.memoryBytes))} · ${plural(m.sessionCount, "session")} · ${state}`;
}

/** The daemon's info line and loaded models (as before), then the models folder: what `load` can take. */
export async function printModels(client: NanoClient): Promise<void> {
  const info = await client.serverInfo();
  if (info.insecure) console.log(`WARNING: this daemon serves the network without ${[info.tls ? "" : "TLS", info.auth ? "" : "authentication"].filter(Boolean).join(" and ")} (--insecure): anyone who can reach it can read and drive every session.`);
  console.log(`nanollm ${info.version} · backend ${info.backend} (llama.cpp ${info.binary}) · threads ${info.threads} per step, ${info.batchThreads} per batch · ${info.parallel} sequences · ${info.sessions} session${info.sessions === 1 ? "" : "s"}`);
  for (const m of await client.listModels()) {
    console.log(`${m.name}  ${m.architecture}  ${(m.parameters / 1e6).toFixed(1)}M params  ${mb(m.sizeBytes)}  ctx ${m.contextSize}×${m.sequences}  KV ${mb(m.kvCacheBytes)} ${m.kvCacheType}  template ${m.defaultTemplate}`);
    console.log(`  ${m.file}`);
    console.log(`  loaded: ${usage(m)}`);
  }
  const local = await client.listLocalModels();
  const onDisk = local.models.filter((m) => m.file.startsWith(local.modelsDir));
  console.log(`models folder ${local.modelsDir || "(none)"}: ${onDisk.length === 0 ? "no models (fetch one with `nanollm pull hf:OWNER/REPO`)" : plural(onDisk.length, "model")} · memory ${formatBytes(Number(local.memoryUsedBytes))} of ${formatBytes(Number(local.memoryBudgetBytes))} in use`);
  for (const m of onDisk) {
    console.log(`  ${m.name}  ${formatBytes(Number(m.sizeBytes))}  ${m.quantization}  ${m.architecture}  ctx ${m.contextLength}${m.images ? "  images" : ""}${m.loaded ? `  loaded (${usage(m.loaded)})` : ""}`);
  }
  console.log(`${info.tls ? "TLS" : "plaintext"} · ${info.auth ? "authentication on" : "no authentication"} · you are ${info.identity}${info.admin ? " (admin)" : ""}`);
}

const KV_TYPES = ["f16", "q8_0"] as const;

/** `models`, `ps`, `load NAME`, `unload NAME`. */
export function modelCommands(): Command[] {
  const models = connectionOptions(new Command("models").description("show the daemon, its loaded models and the models in its models folder")).action(withClient(printModels));

  const ps = connectionOptions(new Command("ps").description("list the loaded models: memory, sessions, idle time")).action(
    withClient(async (client) => {
      const loaded = await client.listModels();
      if (loaded.length === 0) console.log("no model is loaded");
      for (const m of loaded) console.log(`${m.name}  ${usage(m)}  ctx ${m.contextSize}×${m.sequences} ${m.kvCacheType}`);
    }),
  );

  const load = connectionOptions(new Command("load").description("load a model of the daemon's models folder (see `nanollm models`)"))
    .argument("<name>", "the model's name (its file name without .gguf)")
    .option("-c, --ctx <n>", "context tokens per session (default: the daemon's --ctx)", intArg(16, 1 << 20))
    .option("-p, --parallel <n>", "sessions holding a KV cache at once (default: the daemon's --parallel)", intArg(1, 256))
    .option("--kv-cache-type <type>", `KV cache element type: ${KV_TYPES.join("|")} (default: the daemon's)`, choiceArg(KV_TYPES))
    .action(
      withClient(async (client, name) => {
        const opts = load.opts() as { ctx?: number; parallel?: number; kvCacheType?: string };
        const tty = process.stderr.isTTY === true;
        let shown = -1;
        for await (const ev of client.loadModel({ name: name!, ctx: opts.ctx ?? 0, parallel: opts.parallel ?? 0, kvCacheType: opts.kvCacheType ?? "" })) {
          const kind = ev.kind;
          if (kind?.$case === "progress") {
            const pct = Math.floor(kind.progress.progress * 100);
            // A terminal gets one line redrawn; a log gets a line each quarter.
            if (tty) process.stderr.write(`\rloading ${name}: ${pct}%`);
            else if (Math.floor(pct / 25) > shown) process.stderr.write(`loading ${name}: ${pct}%\n`);
            shown = Math.floor(pct / 25);
          } else if (kind?.$case === "loaded") {
            if (tty) process.stderr.write("\n");
            const m = kind.loaded;
            console.log(`loaded ${m.name} · ${formatBytes(Number(m.memoryBytes))} · ctx ${m.contextSize}×${m.sequences} ${m.kvCacheType}${m.images ? " · images" : ""}`);
          }
        }
      }),
    );

  const unload = connectionOptions(new Command("unload").description("unload a model now (its sessions load it again on their next turn)"))
    .argument("<name>", "the loaded model's name (see `nanollm ps`)")
    .action(
      withClient(async (client, name) => {
        await client.unloadModel(name!);
        console.log(`unloaded ${name}`);
      }),
    );
  return [models, ps, load, unload];
}
