// Where the benchmark keeps its generated models, the peer build and its results.
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (bench/dist/ is two levels below it). */
export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const CACHE = path.join(ROOT, ".cache");
export const MODELS_DIR = path.join(CACHE, "bench-models");
export const PEER_BIN = path.join(CACHE, "peer", "build", "bin");
export const RESULTS_DIR = path.join(ROOT, "bench", "results");
export const CLI_MAIN = path.join(ROOT, "cli", "bin", "nanollm.js");
