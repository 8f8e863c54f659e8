import fs from "node:fs";
import path from "node:path";
import { fail } from "@nanollm/shared";
import { ModelHost } from "../engine/ModelHost.js";
import type { EngineOptions } from "../engine/types.js";

/**
 * Loaded models by name: the daemon's default, plus any a client names: by name from the models
 * folder, or by .gguf path (a path only from the daemon's own host or an admin, so a remote
 * client cannot make the daemon open files of its choosing).
 */
export class ModelRegistry {
  private readonly loaded = new Map<string, Promise<ModelHost>>();
  private defaultName = "";

  constructor(
    private readonly engine: Omit<EngineOptions, "modelPath">,
    /** Where models named without a path are looked up (NAME.gguf). */
    private readonly modelsDir: string | undefined = undefined,
  ) {}

  /** Loads the daemon's model; `mmproj` is its projector ("none": none; default: one beside it). */
  async loadDefault(file: string, mmproj?: string): Promise<ModelHost> {
    const host = await this.load(file, mmproj);
    this.defaultName = host.facts.name;
    return host;
  }

  /**
   * "" is the default model; a loaded model's name finds it; another name loads NAME.gguf from
   * the models folder; a .gguf path loads it once, when `mayOpenPaths`.
   */
  async get(nameOrPath: string, mayOpenPaths = false): Promise<ModelHost> {
    const key = nameOrPath || this.defaultName;
    const byName = this.loaded.get(key);
    if (byName) return byName;
    if (/[\\/]/.test(nameOrPath) || /\.gguf$/i.test(nameOrPath)) {
      if (!mayOpenPaths) throw fail.denied(`Only an admin or a client on the daemon's host may load a model by path; name a model from the daemon's models folder instead (see \`nanollm models\`).`);
      return this.load(nameOrPath);
    }
    if (!key) throw fail.notFound("The daemon has no default model; name a .gguf file when creating the session.");
    const inFolder = this.modelsDir && path.join(this.modelsDir, `${nameOrPath}.gguf`);
    if (inFolder && fs.existsSync(inFolder)) return this.load(inFolder);
    throw fail.notFound(`No model named "${nameOrPath}" is loaded or in ${this.modelsDir ?? "the models folder"}; use one of ${[...this.loaded.keys()].join(", ") || "(none)"}.`);
  }

  async list(): Promise<ModelHost[]> {
    const settled = await Promise.allSettled(this.loaded.values());
    return settled.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  }

  async dispose(): Promise<void> {
    for (const host of await this.list()) await host.dispose();
    this.loaded.clear();
  }

  private load(file: string, mmproj?: string): Promise<ModelHost> {
    const name = path.basename(file).replace(/\.gguf$/i, "");
    const existing = this.loaded.get(name);
    if (existing) return existing;
    const loading = ModelHost.load({ ...this.engine, modelPath: file, mmproj });
    this.loaded.set(name, loading);
    // A failed load is forgotten so a fixed file can be tried again.
    loading.catch(() => this.loaded.delete(name));
    return loading;
  }
}
