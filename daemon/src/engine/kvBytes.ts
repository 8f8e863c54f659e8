import type { KvCacheType } from "./types.js";

// ggml block sizes: f16 is 2 bytes an element; q8_0 packs 32 elements into 34 bytes.
const BYTES_PER_ELEMENT: Record<KvCacheType, number> = { f16: 2, q8_0: 34 / 32 };

/** Bytes of K and V for `cells` tokens of a model with the given shape. */
export function kvCacheBytes(shape: { layers: number; kvEmbd: number }, cells: number, type: KvCacheType): number {
  return Math.ceil(2 * shape.layers * shape.kvEmbd * cells * BYTES_PER_ELEMENT[type]);
}
