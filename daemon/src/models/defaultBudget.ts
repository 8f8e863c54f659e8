import { execFileSync } from "node:child_process";
import { defaultMemoryBudget } from "@nanollm/shared";

/**
 * What the loaded models may take when no --memory-budget is given: on CUDA the GPU's memory
 * (where the weights and caches go; the first GPU's, as nvidia-smi reports it) less a tenth for
 * the compute buffers; otherwise the machine's memory less a margin.
 */
export function defaultBudget(backend: string, log: (line: string) => void): number {
  if (backend === "cuda") {
    try {
      const out = execFileSync("nvidia-smi", ["--query-gpu=memory.total", "--format=csv,noheader,nounits"], { encoding: "utf8", timeout: 5000 });
      const mib = Number(out.trim().split("\n")[0]);
      if (Number.isFinite(mib) && mib > 0) return Math.floor(mib * 2 ** 20 * 0.9);
    } catch (err) {
      log(`could not read the GPU's memory with nvidia-smi (${(err as Error).message.split("\n")[0]}); the memory budget is the machine's memory instead`);
    }
  }
  return defaultMemoryBudget();
}
