import fs from "node:fs";

// A GGUF file's keys and tensor infos, read without llama.cpp (whose loaders may crash on a bad file
// rather than fail): the header only, in chunks, with limits on every count a hostile file declares.

export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface GgufTensorInfo {
  /** ggml order: dims[0] is the contiguous row length. */
  dims: number[];
  type: number;
}

export interface GgufHeader {
  version: number;
  keys: Map<string, GgufValue>;
  tensors: Map<string, GgufTensorInfo>;
}

const MAX_COUNT = 1 << 20;
const MAX_STRING = 1 << 24;
const CHUNK = 1 << 20;

class Reader {
  private buf = Buffer.alloc(0);
  private start = 0;
  pos = 0;
  constructor(
    private readonly fd: number,
    private readonly size: number,
  ) {}

  private need(n: number): void {
    if (this.pos + n > this.size) throw new Error("the file ends inside its header");
    if (this.pos >= this.start && this.pos + n <= this.start + this.buf.length) return;
    this.buf = Buffer.alloc(Math.max(n, CHUNK));
    const got = fs.readSync(this.fd, this.buf, 0, this.buf.length, this.pos);
    this.buf = this.buf.subarray(0, got);
    this.start = this.pos;
  }
  /** The buffer offset of the next n bytes (call before reading this.buf: it may refill). */
  private at(n: number): number {
    this.need(n);
    const off = this.pos - this.start;
    this.pos += n;
    return off;
  }
  u8 = () => { const off = this.at(1); return this.buf.readUInt8(off); };
  i8 = () => { const off = this.at(1); return this.buf.readInt8(off); };
  u16 = () => { const off = this.at(2); return this.buf.readUInt16LE(off); };
  i16 = () => { const off = this.at(2); return this.buf.readInt16LE(off); };
  u32 = () => { const off = this.at(4); return this.buf.readUInt32LE(off); };
  i32 = () => { const off = this.at(4); return this.buf.readInt32LE(off); };
  f32 = () => { const off = this.at(4); return this.buf.readFloatLE(off); };
  f64 = () => { const off = this.at(8); return this.buf.readDoubleLE(off); };
  u64 = () => { const off = this.at(8); return this.buf.readBigUInt64LE(off); };
  i64 = () => { const off = this.at(8); return this.buf.readBigInt64LE(off); };
  count(what: string, max = MAX_COUNT): number {
    const n = this.u64();
    if (n > BigInt(max)) throw new Error(`it declares ${n} ${what}`);
    return Number(n);
  }
  str(): string {
    const n = this.count("bytes in a string", MAX_STRING);
    const off = this.at(n);
    return this.buf.toString("utf8", off, off + n);
  }
}

function readValue(r: Reader, type: number): GgufValue {
  switch (type) {
    case 0: return r.u8();
    case 1: return r.i8();
    case 2: return r.u16();
    case 3: return r.i16();
    case 4: return r.u32();
    case 5: return r.i32();
    case 6: return r.f32();
    case 7: return r.u8() !== 0;
    case 8: return r.str();
    case 9: {
      const inner = r.u32();
      const n = r.count("array elements");
      const out: GgufValue[] = [];
      for (let i = 0; i < n; i++) out.push(readValue(r, inner));
      return out;
    }
    case 10: return r.u64();
    case 11: return r.i64();
    case 12: return r.f64();
    default: throw new Error(`a value has the unknown type ${type}`);
  }
}

/** Reads a GGUF header; throws Error("<why>") when the file is not a well-formed GGUF. */
export function readGgufHeader(file: string): GgufHeader {
  const fd = fs.openSync(file, "r");
  try {
    const r = new Reader(fd, fs.fstatSync(fd).size);
    if (r.u32() !== 0x46554747) throw new Error("it does not start with GGUF");
    const version = r.u32();
    if (version < 2 || version > 3) throw new Error(`it is GGUF version ${version}`);
    const nTensors = r.count("tensors");
    const nKeys = r.count("keys");
    const keys = new Map<string, GgufValue>();
    for (let i = 0; i < nKeys; i++) {
      const key = r.str();
      keys.set(key, readValue(r, r.u32()));
    }
    const tensors = new Map<string, GgufTensorInfo>();
    for (let i = 0; i < nTensors; i++) {
      const name = r.str();
      const nDims = r.u32();
      if (nDims < 1 || nDims > 4) throw new Error(`tensor ${name} has ${nDims} dimensions`);
      const dims: number[] = [];
      for (let d = 0; d < nDims; d++) dims.push(Number(r.u64()));
      const type = r.u32();
      r.u64(); // offset
      tensors.set(name, { dims, type });
    }
    return { version, keys, tensors };
  } finally {
    fs.closeSync(fd);
  }
}
