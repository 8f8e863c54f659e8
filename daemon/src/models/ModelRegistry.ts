import path from "node:path";
import { fail, formatBytes } from "@nanollm/shared";
import { ModelHost, type LoadSettings } from "../engine/ModelHost.js";
import type { EngineOptions } from "../engine/types.js";
import { describeFile, estimateBytes, findModelFile, modelFiles, modelName, type LocalFile } from "./catalogue.js";

/** The least time a model stays loaded after a load or a look-up that is not a turn (see scheduleUnload). */
const ACCESS_GRACE_MS = 5000;

/** How loaded models share the machine. */
export interface ModelPolicy {
  /** Bytes loaded models may take together (weights, projectors, KV caches). */
  memoryBudget: number;
  /** The budget was given (a model alone past it is refused) rather than guessed (it loads, with a warning). */
  budgetGiven: boolean;
  /** How long an idle model stays loaded, in ms; -1: forever; 0: unloaded as soon as its turn ends. */
  keepAliveMs: number;
  /** Called before a model is unloaded (the daemon renders its sessions' prompts while it can). */
  beforeUnload?: (host: ModelHost) => void;
}

/** A loaded model's keep-alive: when its idle timer ends. */
interface Idle {
  timer: NodeJS.Timeout;
  at: number;
}

/**
 * Models by name: the daemon's default, the models folder's files (loaded when a client names
 * one), and files named by path (only from the daemon's own host or an admin, so a remote client
 * cannot make the daemon open files of its choosing). Loaded models share a memory budget: to load
 * one, the least recently used idle ones are unloaded first; a model idle for the keep-alive is
 * unloaded too. An unloaded model's host stays known: a turn of one of its sessions loads it again
 * (ModelHost.begin), and the sessions find their caches parked on disk.
 */
export class ModelRegistry {
  private readonly hosts = new Map<string, Promise<ModelHost>>();
  /** The hosts whose first load ended, by name. */
  private readonly known = new Map<string, ModelHost>();
  private readonly idle = new Map<ModelHost, Idle>();
  /** Loads and unloads, one at a time, so the budget is counted against settled models. */
  private transitions: Promise<unknown> = Promise.resolve();
  private defaultName = "";
  private closed = false;

  constructor(
    private readonly engine: Omit<EngineOptions, "modelPath">,
    /** Where models named without a path are looked up (NAME.gguf, also in its subfolders). */
    readonly modelsDir: string | undefined = undefined,
    readonly policy: ModelPolicy = { memoryBudget: Number.MAX_SAFE_INTEGER, budgetGiven: false, keepAliveMs: -1 },
  ) {}

  /** Loads the daemon's model; `mmproj` is its projector ("none": none; default: one beside it). */
  async loadDefault(file: string, mmproj?: string): Promise<ModelHost> {
    const host = await this.load(file, { mmproj });
    this.defaultName = host.facts.name;
    return host;
  }

  /** The default model's name ("" when there is none). */
  get defaultModel(): string {
    return this.defaultName;
  }

  /**
   * A loaded model: "" is the default model; a known model's name finds it (loaded again if it was
   * unloaded); another name loads NAME.gguf from the models folder; a .gguf path loads it once,
   * when `mayOpenPaths`. The access counts as use for keep-alive.
   */
  async get(nameOrPath: string, mayOpenPaths = false): Promise<ModelHost> {
    const host = await this.find(nameOrPath, mayOpenPaths);
    await this.ready(host);
    return host;
  }

  /** Loads a model of the catalogue (or a known one) with `settings`; a loaded one must have the same settings. */
  async loadByName(name: string, settings: LoadSettings, onProgress?: (fraction: number) => void, mayOpenPaths = false): Promise<ModelHost> {
    const known = this.known.get(name);
    if (known?.loaded) {
      const now = known.settings;
      const differs = (Object.keys(settings) as (keyof LoadSettings)[]).filter((k) => settings[k] !== undefined && settings[k] !== now[k]);
      if (differs.length > 0) throw fail.precondition(`${name} is loaded with ${differs.map((k) => `${k} ${now[k]}`).join(", ")}; unload it first (\`nanollm unload ${name}\`) to load it with other settings.`);
      this.touch(known);
      return known;
    }
    if (known) {
      await this.ready(known, settings, onProgress);
      return known;
    }
    const host = await this.find(name, mayOpenPaths, settings, onProgress);
    await this.ready(host);
    return host;
  }

  /** Unloads a model now; its sessions stay and load it again on their next turn. */
  async unload(name: string): Promise<void> {
    const host = this.known.get(name);
    if (!host?.loaded) throw fail.notFound(`No model named "${name}" is loaded; see the loaded ones with \`nanollm ps\`.`);
    if (host.turns > 0) throw fail.precondition(`${name} has a turn running; wait for it to end (or cancel it), then unload.`);
    await this.transition(() => this.unloadNow(host));
  }

  /** Every known model host, loaded or not. */
  list(): ModelHost[] {
    return [...this.known.values()];
  }

  /** The loaded models. */
  listLoaded(): ModelHost[] {
    return this.list().filter((h) => h.loaded);
  }

  /** The models folder's files, read from their headers (unreadable ones are logged and left out). */
  catalogue(): LocalFile[] {
    return modelFiles(this.modelsDir).flatMap((f) => describeFile(f, this.engine.log) ?? []);
  }

  /** Bytes the loaded models take now. */
  memoryUsed(): number {
    return this.listLoaded().reduce((sum, h) => sum + h.memoryBytes, 0);
  }

  /** When keep-alive unloads the model (ms since the epoch), or undefined: never, or it is busy. */
  unloadsAt(host: ModelHost): number | undefined {
    return this.idle.get(host)?.at;
  }

  async dispose(): Promise<void> {
    this.closed = true;
    for (const { timer } of this.idle.values()) clearTimeout(timer);
    this.idle.clear();
    await this.transitions;
    await Promise.allSettled(this.hosts.values());
    for (const host of this.list()) await host.dispose();
    this.hosts.clear();
    this.known.clear();
  }

  /** The host of a name or path, loading it the first time (within the budget). */
  private async find(nameOrPath: string, mayOpenPaths: boolean, settings: LoadSettings = {}, onProgress?: (fraction: number) => void): Promise<ModelHost> {
    const key = nameOrPath || this.defaultName;
    const known = this.hosts.get(key);
    if (known) return known;
    if (/[\\/]/.test(nameOrPath) || /\.gguf$/i.test(nameOrPath)) {
      if (!mayOpenPaths) throw fail.denied(`Only an admin or a client on the daemon's host may load a model by path; name a model from the daemon's models folder instead (see \`nanollm models\`).`);
      return this.load(nameOrPath, settings, onProgress);
    }
    if (!key) throw fail.notFound("The daemon has no default model; name a .gguf file when creating the session.");
    const inFolder = findModelFile(this.modelsDir, nameOrPath);
    if (inFolder) return this.load(inFolder, settings, onProgress);
    const names = [...new Set([...this.hosts.keys(), ...modelFiles(this.modelsDir).map(modelName)])];
    throw fail.notFound(`No model named "${nameOrPath}" is loaded or in ${this.modelsDir ?? "the models folder"}; use one of ${names.join(", ") || "(none)"} (see \`nanollm models\`).`);
  }

  /** A first load of a file: room is made in the budget, then it loads; a failed load is forgotten so a fixed file can be tried again. */
  private load(file: string, opts: LoadSettings & { mmproj?: string }, onProgress?: (fraction: number) => void): Promise<ModelHost> {
    const name = modelName(file);
    const existing = this.hosts.get(name);
    if (existing) return existing;
    const loading = this.transition(async () => {
      const settings = { ...this.settings(), ...definedOnly(opts) };
      const described = describeFile(path.resolve(file), () => undefined);
      if (described) await this.makeRoom(name, estimateBytes(described, settings), undefined);
      const host = await ModelHost.load({ ...this.engine, ...settings, modelPath: file, mmproj: opts.mmproj }, onProgress);
      host.keeper = { ready: (h, progress) => this.ready(h, {}, progress), idle: (h, afterTurn) => this.scheduleUnload(h, afterTurn) };
      this.known.set(name, host);
      this.scheduleUnload(host, false);
      return host;
    });
    this.hosts.set(name, loading);
    loading.catch(() => this.hosts.delete(name));
    return loading;
  }

  /** Loads an unloaded host again (after making room); counts as use either way. */
  private async ready(host: ModelHost, settings: LoadSettings = {}, onProgress?: (fraction: number) => void): Promise<void> {
    this.touch(host);
    if (host.loaded && !host.unloading) return;
    await this.transition(async () => {
      if (host.loaded) return;
      const merged = { ...host.settings, ...definedOnly(settings) };
      const described = describeFile(host.facts.file, () => undefined);
      await this.makeRoom(host.facts.name, described ? estimateBytes(described, merged) : host.memoryBytes, host);
      await host.reload(merged, onProgress);
    });
    this.touch(host);
  }

  /** Unloads the least recently used idle models until `need` more bytes fit the budget. */
  private async makeRoom(name: string, need: number, loading: ModelHost | undefined): Promise<void> {
    if (this.closed) throw fail.unavailable("The daemon is shutting down; retry on its next start.");
    const budget = this.policy.memoryBudget;
    for (;;) {
      const loaded = this.listLoaded().filter((h) => h !== loading);
      const used = loaded.reduce((sum, h) => sum + h.memoryBytes, 0);
      if (used + need <= budget) return;
      const victim = loaded.filter((h) => h.turns === 0).sort((a, b) => a.lastUsed - b.lastUsed)[0];
      if (!victim) {
        if (loaded.length === 0) {
          if (this.policy.budgetGiven) throw fail.exhausted(`${name} needs about ${formatBytes(need)}, more than the whole memory budget of ${formatBytes(budget)}; raise --memory-budget.`);
          this.engine.log(`warning: ${name} needs about ${formatBytes(need)}, more than the ${formatBytes(budget)} this machine can spare; loading it anyway`);
          return;
        }
        throw fail.exhausted(`Loading ${name} needs about ${formatBytes(need)} and the loaded models (${loaded.map((h) => h.facts.name).join(", ")}) take ${formatBytes(used)} of the ${formatBytes(budget)} memory budget with turns running; wait for them to end, unload one with \`nanollm unload NAME\`, or raise --memory-budget.`);
      }
      this.engine.log(`unloading ${victim.facts.name} (idle the longest) to make room for ${name}`);
      await this.unloadNow(victim);
    }
  }

  /** Within a transition: unloads the host unless a turn has begun on it since. */
  private async unloadNow(host: ModelHost): Promise<void> {
    this.cancelIdle(host);
    if (host.turns > 0 || !host.loaded) return;
    this.policy.beforeUnload?.(host);
    await host.unload();
  }

  /**
   * Keep-alive: an idle loaded model is unloaded after the policy's time (never with -1). Only a
   * turn's end starts it at 0; a load or a look-up (a session being made on it, an HTTP request
   * about to start its turn) gets a few seconds, or its caller would find the model gone.
   */
  private scheduleUnload(host: ModelHost, turnEnded: boolean): void {
    this.cancelIdle(host);
    const keep = this.policy.keepAliveMs;
    if (keep < 0 || this.closed || host.turns > 0 || !host.loaded) return;
    const ms = turnEnded ? keep : Math.max(keep, ACCESS_GRACE_MS);
    const timer = setTimeout(() => {
      this.idle.delete(host);
      this.transition(() => this.unloadNow(host)).catch((err: Error) => this.engine.log(`could not unload ${host.facts.name}: ${err.message}`));
    }, ms);
    timer.unref();
    this.idle.set(host, { timer, at: Date.now() + ms });
  }

  private cancelIdle(host: ModelHost): void {
    const idle = this.idle.get(host);
    if (idle) clearTimeout(idle.timer);
    this.idle.delete(host);
  }

  /** Use of a model: restarts its keep-alive (when no turn holds it). */
  private touch(host: ModelHost): void {
    host.lastUsed = Date.now();
    if (host.turns === 0) this.scheduleUnload(host, false);
    else this.cancelIdle(host);
  }

  private settings(): Required<LoadSettings> {
    return { ctx: this.engine.ctx, parallel: this.engine.parallel, kvCacheType: this.engine.kvCacheType };
  }

  /** Runs `fn` after every earlier load or unload has settled. */
  private transition<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.transitions.then(fn, fn);
    this.transitions = next.catch(() => undefined);
    return next;
  }
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
