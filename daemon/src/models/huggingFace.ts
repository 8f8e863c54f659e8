import fs from "node:fs";
import path from "node:path";
import { fail } from "@nanollm/shared";
import { fetchJson } from "./download.js";

/** An hf: URI: a repository, and a quantization or a file in it. */
export interface HfRef {
  repo: string;
  quant: string | undefined;
  file: string | undefined;
}

/** A file of a repository as the hub lists it. */
export interface HfFile {
  path: string;
  size: number;
  /** The LFS SHA-256 (what the file's bytes hash to), when the hub gives it. */
  sha256: string | undefined;
}

/** hf:OWNER/REPO, hf:OWNER/REPO:QUANT or hf:OWNER/REPO/FILE.gguf. */
export function parseHf(uri: string): HfRef {
  const match = /^hf:([\w.-]+\/[\w.-]+)(?::([\w.-]+)|\/(.+\.gguf))?$/i.exec(uri);
  if (!match) throw fail.invalid(`"${uri}" is not an hf: URI; write hf:OWNER/REPO, hf:OWNER/REPO:QUANT (e.g. :Q4_K_M) or hf:OWNER/REPO/FILE.gguf.`);
  return { repo: match[1]!, quant: match[2], file: match[3] };
}

/** The folder a repository's files are kept in (one per repository, so its projector lies beside its model). */
export function repoDir(modelsDir: string, ref: HfRef): string {
  return path.join(modelsDir, ref.repo.replace("/", "_"));
}

const isProjector = (p: string) => /^mmproj.*\.gguf$/i.test(path.basename(p));

/** The model file `ref` names among `paths` (GGUF files of the repository), or why there is none. */
export function chooseModel(ref: HfRef, paths: string[]): string {
  if (ref.file) {
    const found = paths.find((p) => p === ref.file);
    if (!found) throw fail.notFound(`hf:${ref.repo} has no file ${ref.file}; pick one of ${list(paths)}.`);
    return found;
  }
  const models = paths.filter((p) => /\.gguf$/i.test(p) && !isProjector(p));
  const quant = ref.quant ?? (models.length === 1 ? undefined : "Q4_K_M");
  const matching = quant ? models.filter((p) => new RegExp(`[-_.]${quant.replace(/[.]/g, "\\.")}(-\\d{5}-of-\\d{5})?\\.gguf$`, "i").test(path.basename(p))) : models;
  if (matching.length === 0) throw fail.notFound(`hf:${ref.repo} has no ${quant ?? "GGUF"} model file; name one of ${list(models)} (hf:${ref.repo}:QUANT or hf:${ref.repo}/FILE.gguf).`);
  if (matching.some((p) => /-\d{5}-of-\d{5}\.gguf$/.test(p))) throw fail.invalid(`hf:${ref.repo}'s ${quant} model is split into several files, which nanollm does not join; pick another quantization.`);
  if (matching.length > 1) throw fail.invalid(`hf:${ref.repo} has ${matching.length} ${quant ?? "GGUF"} model files (${list(matching)}); name one as hf:${ref.repo}/FILE.gguf.`);
  return matching[0]!;
}

/** The repository's image projector, if it ships one: f16 preferred, as llama.cpp's own repositories name it. */
export function chooseProjector(paths: string[]): string | undefined {
  const projectors = paths.filter(isProjector).sort();
  return projectors.find((p) => /f16/i.test(path.basename(p)) && !/bf16/i.test(path.basename(p))) ?? projectors[0];
}

/** The repository's files, with their sizes and SHA-256s (the hub's model API). */
export async function listRepo(endpoint: string, ref: HfRef, opts: { timeoutMs: number; headers: Record<string, string>; offlineHint: string }): Promise<HfFile[]> {
  const url = `${endpoint.replace(/\/+$/, "")}/api/models/${ref.repo}?blobs=true`;
  const body = (await fetchJson(url, opts)) as { siblings?: { rfilename?: unknown; size?: unknown; lfs?: { sha256?: unknown; oid?: unknown } }[] };
  if (!Array.isArray(body.siblings)) throw fail.unavailable(`${url} did not list the repository's files; check the hub address (NANOLLM_HF_ENDPOINT).`);
  return body.siblings.flatMap((s) => {
    if (typeof s.rfilename !== "string") return [];
    const sha = s.lfs?.sha256 ?? s.lfs?.oid;
    return [{ path: s.rfilename, size: typeof s.size === "number" ? s.size : 0, sha256: typeof sha === "string" ? sha : undefined }];
  });
}

/** A file fetched before for `ref`, found without the network. */
export function cachedModel(modelsDir: string, ref: HfRef): string | undefined {
  const dir = repoDir(modelsDir, ref);
  if (!fs.existsSync(dir)) return undefined;
  const names = fs.readdirSync(dir).filter((n) => n.endsWith(".gguf"));
  try {
    return path.join(dir, path.basename(chooseModel({ ...ref, file: ref.file && path.basename(ref.file) }, names)));
  } catch {
    return undefined;
  }
}

function list(paths: string[]): string {
  return paths.length === 0 ? "(none)" : paths.slice(0, 8).join(", ") + (paths.length > 8 ? `, … (${paths.length} in all)` : "");
}
