// Small test images written in code: PNG (zlib from Node) and BMP, plus the JPEG llama.cpp ships.
import fs from "node:fs";
import { fileURLToPath } from "node:url";
import zlib from "node:zlib";

export type Pixel = (x: number, y: number) => [number, number, number];

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "latin1");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** An RGB PNG of `width` x `height` whose pixels `pixel` gives. */
export function makePng(width: number, height: number, pixel: Pixel): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, deflate, no filter method, no interlace
  const raw = Buffer.alloc(height * (1 + width * 3));
  for (let y = 0; y < height; y++) {
    const row = y * (1 + width * 3); // filter byte 0 (none)
    for (let x = 0; x < width; x++) raw.set(pixel(x, y), row + 1 + x * 3);
  }
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([signature, chunk("IHDR", ihdr), chunk("IDAT", zlib.deflateSync(raw)), chunk("IEND", Buffer.alloc(0))]);
}

/** A 24-bit BMP of `width` x `height`. */
export function makeBmp(width: number, height: number, pixel: Pixel): Buffer {
  const stride = Math.ceil((width * 3) / 4) * 4;
  const out = Buffer.alloc(54 + stride * height);
  out.write("BM", 0, "latin1");
  out.writeUInt32LE(out.length, 2);
  out.writeUInt32LE(54, 10);
  out.writeUInt32LE(40, 14);
  out.writeInt32LE(width, 18);
  out.writeInt32LE(height, 22); // bottom-up rows
  out.writeUInt16LE(1, 26);
  out.writeUInt16LE(24, 28);
  out.writeUInt32LE(stride * height, 34);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const [r, g, b] = pixel(x, height - 1 - y);
      out.set([b, g, r], 54 + y * stride + x * 3);
    }
  }
  return out;
}

/** The header of a WebP file (RIFF....WEBPVP8 ...): enough for a reader to know what it is. */
export function webpBytes(): Buffer {
  const body = Buffer.concat([Buffer.from("WEBPVP8 ", "latin1"), Buffer.alloc(24, 0x2a)]);
  const head = Buffer.alloc(8);
  head.write("RIFF", 0, "latin1");
  head.writeUInt32LE(body.length, 4);
  return Buffer.concat([head, body]);
}

/** Gradient and checkerboard pictures: different enough that a projector must tell them apart. */
export const gradient: Pixel = (x, y) => [(x * 4) & 255, (y * 4) & 255, 128];
export const checkerboard: Pixel = (x, y) => (((x >> 3) + (y >> 3)) & 1 ? [255, 255, 255] : [0, 0, 0]);

/** tools/mtmd/test-1.jpeg from the llama.cpp source, extracted by daemon/native/mtmd.mjs during `npm ci`. */
export function llamaTestJpeg(): Buffer {
  return fs.readFileSync(fileURLToPath(new URL("../../../daemon/native/build-mtmd/src/tools/mtmd/test-1.jpeg", import.meta.url)));
}
