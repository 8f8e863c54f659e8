// Minimal GGUF v3 writer (little endian), enough to build test models for llama.cpp.
// Layout: "GGUF" | u32 version | u64 n_tensors | u64 n_kv | KVs | tensor infos |
// pad to alignment | tensor data (each tensor's offset aligned, relative to data start).
import { writeFileSync } from "node:fs";

// Plain objects rather than enums so the file also works under erasableSyntaxOnly / type stripping.
export const GgufValueType = {
    UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6,
    BOOL: 7, STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12,
} as const;
export type GgufValueType = (typeof GgufValueType)[keyof typeof GgufValueType];

export const GgmlType = { F32: 0, F16: 1, Q8_0: 8 } as const;
export type GgmlType = (typeof GgmlType)[keyof typeof GgmlType];

export const GGUF_ALIGNMENT = 32;
const QK8_0 = 32;

const textEncoder = new TextEncoder();

/** Append-only little-endian byte sink; grows geometrically to avoid O(n^2) copies. */
class ByteSink {
    private buf = new Uint8Array(1024);
    private view = new DataView(this.buf.buffer);
    length = 0;

    private reserve(n: number): number {
        const at = this.length;
        if (at + n > this.buf.length) {
            const next = new Uint8Array(Math.max(this.buf.length * 2, at + n));
            next.set(this.buf.subarray(0, at));
            this.buf = next;
            this.view = new DataView(next.buffer);
        }
        this.length += n;
        return at;
    }

    // reserve() may swap the buffer, so it must run before this.view/this.buf are read.
    u8(v: number): void { const at = this.reserve(1); this.view.setUint8(at, v); }
    i8(v: number): void { const at = this.reserve(1); this.view.setInt8(at, v); }
    u16(v: number): void { const at = this.reserve(2); this.view.setUint16(at, v, true); }
    u32(v: number): void { const at = this.reserve(4); this.view.setUint32(at, v, true); }
    i32(v: number): void { const at = this.reserve(4); this.view.setInt32(at, v, true); }
    f32(v: number): void { const at = this.reserve(4); this.view.setFloat32(at, v, true); }
    f64(v: number): void { const at = this.reserve(8); this.view.setFloat64(at, v, true); }
    u64(v: number | bigint): void { const at = this.reserve(8); this.view.setBigUint64(at, BigInt(v), true); }
    i64(v: number | bigint): void { const at = this.reserve(8); this.view.setBigInt64(at, BigInt(v), true); }
    bytes(b: Uint8Array): void { const at = this.reserve(b.length); this.buf.set(b, at); }
    zeros(n: number): void { const at = this.reserve(n); this.buf.fill(0, at, at + n); }
    str(s: string): void {
        const b = textEncoder.encode(s);
        this.u64(b.length);
        this.bytes(b);
    }
    padTo(alignment: number): void { this.zeros(padding(this.length, alignment)); }
    result(): Uint8Array { return this.buf.subarray(0, this.length); }
}

function padding(n: number, alignment: number): number {
    return (alignment - (n % alignment)) % alignment;
}

/** IEEE 754 binary16 bits for a float, round-to-nearest-even (handles subnormals, inf, NaN). */
export function float32ToFloat16Bits(value: number): number {
    const f32 = new Float32Array([value]);
    const x = new Uint32Array(f32.buffer)[0]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
    let e = exp - 127 + 15;
    if (e >= 0x1f) return sign | 0x7c00;
    if (e <= 0) {
        if (e < -10) return sign;
        mant |= 0x800000;
        const shift = 14 - e;
        const half = 1 << (shift - 1);
        let h = mant >>> shift;
        const rem = mant & ((1 << shift) - 1);
        if (rem > half || (rem === half && (h & 1) !== 0)) h++;
        return sign | h;
    }
    let h = (e << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++; // carry into exponent is correct
    return sign | h;
}

function float16BitsToFloat32(h: number): number {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >>> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) return s * m * 2 ** -24;
    if (e === 0x1f) return m ? NaN : s * Infinity;
    return s * (1 + m / 1024) * 2 ** (e - 15);
}

function encodeTensor(values: Float32Array, type: GgmlType): Uint8Array {
    const out = new ByteSink();
    if (type === GgmlType.F32) {
        for (const v of values) out.f32(v);
    } else if (type === GgmlType.F16) {
        for (const v of values) out.u16(float32ToFloat16Bits(v));
    } else {
        if (values.length % QK8_0 !== 0) throw new Error(`Q8_0 needs a multiple of ${QK8_0} values`);
        for (let b = 0; b < values.length; b += QK8_0) {
            let amax = 0;
            for (let i = 0; i < QK8_0; i++) amax = Math.max(amax, Math.abs(values[b + i]!));
            const dBits = float32ToFloat16Bits(amax / 127);
            // Quantize with the scale llama.cpp will actually see (the f16-rounded one).
            const d = float16BitsToFloat32(dBits);
            const inv = d > 0 ? 1 / d : 0;
            out.u16(dBits);
            for (let i = 0; i < QK8_0; i++)
                out.i8(Math.max(-127, Math.min(127, Math.round(values[b + i]! * inv))));
        }
    }
    return out.result();
}

type KvWriter = (sink: ByteSink) => void;

interface TensorEntry {
    name: string;
    ne: readonly number[];
    type: GgmlType;
    data: Uint8Array;
}

export class GgufWriter {
    private readonly kvs = new Map<string, KvWriter>();
    private readonly tensors: TensorEntry[] = [];

    readonly alignment: number;

    constructor(alignment: number = GGUF_ALIGNMENT) {
        this.alignment = alignment;
        // llama.cpp defaults to 32 when absent; writing it keeps other readers honest.
        if (alignment !== GGUF_ALIGNMENT) this.addUint32("general.alignment", alignment);
    }

    private addKv(key: string, type: GgufValueType, write: KvWriter): this {
        if (this.kvs.has(key)) throw new Error(`duplicate GGUF key: ${key}`);
        this.kvs.set(key, (s) => { s.str(key); s.u32(type); write(s); });
        return this;
    }

    private addArray<T>(key: string, type: GgufValueType, values: readonly T[], each: (s: ByteSink, v: T) => void): this {
        return this.addKv(key, GgufValueType.ARRAY, (s) => {
            s.u32(type);
            s.u64(values.length);
            for (const v of values) each(s, v);
        });
    }

    addUint8(key: string, v: number): this { return this.addKv(key, GgufValueType.UINT8, (s) => s.u8(v)); }
    addUint32(key: string, v: number): this { return this.addKv(key, GgufValueType.UINT32, (s) => s.u32(v)); }
    addInt32(key: string, v: number): this { return this.addKv(key, GgufValueType.INT32, (s) => s.i32(v)); }
    addUint64(key: string, v: number | bigint): this { return this.addKv(key, GgufValueType.UINT64, (s) => s.u64(v)); }
    addInt64(key: string, v: number | bigint): this { return this.addKv(key, GgufValueType.INT64, (s) => s.i64(v)); }
    addFloat32(key: string, v: number): this { return this.addKv(key, GgufValueType.FLOAT32, (s) => s.f32(v)); }
    addFloat64(key: string, v: number): this { return this.addKv(key, GgufValueType.FLOAT64, (s) => s.f64(v)); }
    addBool(key: string, v: boolean): this { return this.addKv(key, GgufValueType.BOOL, (s) => s.u8(v ? 1 : 0)); }
    addString(key: string, v: string): this { return this.addKv(key, GgufValueType.STRING, (s) => s.str(v)); }

    addStringArray(key: string, v: readonly string[]): this {
        return this.addArray(key, GgufValueType.STRING, v, (s, x) => s.str(x));
    }
    addFloat32Array(key: string, v: ArrayLike<number>): this {
        return this.addArray(key, GgufValueType.FLOAT32, Array.from(v), (s, x) => s.f32(x));
    }
    addInt32Array(key: string, v: ArrayLike<number>): this {
        return this.addArray(key, GgufValueType.INT32, Array.from(v), (s, x) => s.i32(x));
    }
    addUint32Array(key: string, v: ArrayLike<number>): this {
        return this.addArray(key, GgufValueType.UINT32, Array.from(v), (s, x) => s.u32(x));
    }

    /**
     * Adds a tensor. `ne` is in ggml order: ne[0] is the innermost (contiguous row) length,
     * so a PyTorch/numpy weight of shape [out, in] has ne = [in, out].
     */
    addTensor(name: string, ne: readonly number[], values: Float32Array, type: GgmlType = GgmlType.F32): this {
        const count = ne.reduce((a, b) => a * b, 1);
        if (count !== values.length) throw new Error(`${name}: ne ${ne.join("x")} != ${values.length} values`);
        if (type === GgmlType.Q8_0 && (ne[0] ?? 0) % QK8_0 !== 0)
            throw new Error(`${name}: Q8_0 needs ne[0] to be a multiple of ${QK8_0}`);
        return this.addRawTensor(name, ne, type, encodeTensor(values, type));
    }

    /** Adds an already-encoded tensor (no validation of `data` against `type`). */
    addRawTensor(name: string, ne: readonly number[], type: GgmlType, data: Uint8Array): this {
        if (this.tensors.some((t) => t.name === name)) throw new Error(`duplicate tensor: ${name}`);
        this.tensors.push({ name, ne: [...ne], type, data });
        return this;
    }

    /** Serializes the whole file into memory. */
    toBytes(): Uint8Array {
        const s = new ByteSink();
        s.bytes(textEncoder.encode("GGUF"));
        s.u32(3);
        s.u64(this.tensors.length);
        s.u64(this.kvs.size);
        for (const write of this.kvs.values()) write(s);

        let offset = 0;
        for (const t of this.tensors) {
            s.str(t.name);
            s.u32(t.ne.length);
            for (const n of t.ne) s.u64(n);
            s.u32(t.type);
            s.u64(offset);
            offset += t.data.length + padding(t.data.length, this.alignment);
        }
        s.padTo(this.alignment);
        for (const t of this.tensors) {
            s.bytes(t.data);
            s.padTo(this.alignment);
        }
        return s.result();
    }

    write(path: string): void {
        writeFileSync(path, this.toBytes());
    }
}
