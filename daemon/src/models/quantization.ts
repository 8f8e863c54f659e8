import type { GgufHeader } from "../engine/ggufHeader.js";

// llama.cpp's llama_ftype (general.file_type): what a model file says its weights are.
const FILE_TYPES: Record<number, string> = {
  0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M",
  13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS",
  21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
  29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
};

// ggml_type of a tensor, for files without general.file_type.
const TENSOR_TYPES: Record<number, string> = {
  0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K",
  12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S",
  20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
};

/** The weights' type: the file's own word for it, else the type most of its 2-D tensors have. */
export function quantization(h: GgufHeader): string {
  const fileType = h.keys.get("general.file_type");
  if (typeof fileType === "number" && FILE_TYPES[fileType]) return FILE_TYPES[fileType];
  const counts = new Map<number, number>();
  for (const t of h.tensors.values()) if (t.dims.length >= 2) counts.set(t.type, (counts.get(t.type) ?? 0) + 1);
  const [type] = [...counts].sort((a, b) => b[1] - a[1])[0] ?? [];
  return type === undefined ? "unknown" : (TENSOR_TYPES[type] ?? `type ${type}`);
}
