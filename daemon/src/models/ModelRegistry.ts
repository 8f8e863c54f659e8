import path from "node:path";
import { fail } from "@nanollm/shared";
import { ModelHost } from "../engine/ModelHost.js";
import type { EngineOptions } from "../engine/types.js";

/** Loaded models by name: the daemon's default, plus any a client names by .gguf path. */
export class ModelRegistry {
  private readonly loaded = new Map<string, Promise<ModelHost>>();
  private defaultName = "";

  constructor(private readonly engine: Omit<EngineOptions, "modelPath">) {}

  async loadDefault(file: string): Promise<ModelHost> {
    const host = await this.load(file);
    this.defaultName = host.facts.name;
    return host;
  }

  /** "" is the default model; a loaded model's name finds it; a .gguf path loads it once. */
  async get(nameOrPath: string): Promise<ModelHost> {
    const key = nameOrPath || this.defaultName;
    const byName = this.loaded.get(key);
    if (byName) return byName;
    if (/\.gguf$/i.test(nameOrPath)) return this.load(nameOrPath);
    if (!key) throw fail.notFound("The daemon has no default model; name a .gguf file when creating the session.");
    throw fail.notFound(`No model named "${nameOrPath}" is loaded; use one of ${[...this.loaded.keys()].join(", ") || "(none)"} or a path to a .gguf file.`);
  }

  async list(): Promise<ModelHost[]> {
    const settled = await Promise.allSettled(this.loaded.values());
    return settled.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  }

  async dispose(): Promise<void> {
    for (const host of await this.list()) await host.dispose();
    this.loaded.clear();
  }

  private load(file: string): Promise<ModelHost> {
    const name = path.basename(file).replace(/\.gguf$/i, "");
    const existing = this.loaded.get(name);
    if (existing) return existing;
    const loading = ModelHost.load({ ...this.engine, modelPath: file });
    this.loaded.set(name, loading);
    // A failed load is forgotten so a fixed file can be tried again.
    loading.catch(() => this.loaded.delete(name));
    return loading;
  }
}
