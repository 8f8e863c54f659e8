import { createHash } from "node:crypto";
import { fail } from "@nanollm/shared";
import type { EncodedImage, NativeImageChunk, NativeProjector, ProjectorInfo } from "./projector.js";
import type { Token } from "./types.js";

/** How many images keep their preprocessed pixels and their embeddings in memory. */
const KEEP = 32;

/** One piece of an image as the model sees it: text tokens the projector wraps it in, or image positions. */
export type ImagePiece = { kind: "text"; tokens: Token[] } | { kind: "image"; placeholder: Token; nPos: number };

/** An image ready to take its place in a prompt. */
export interface ImageRef {
  /** SHA-256 of the file's bytes (mtmd's image id). */
  id: string;
  width: number;
  height: number;
  bytes: number;
  pieces: ImagePiece[];
}

interface Chunk {
  chunk: NativeImageChunk;
  encoded?: Promise<EncodedImage>;
}

/**
 * A model's images: bytes become pieces of a prompt, and the placeholder tokens that stand for an
 * image's positions become embeddings when a decode needs them. A placeholder is a negative id made
 * from the image's hash, so the same image in two prompts gives the same tokens (and the cache
 * alignment reuses it), another image different ones. Encoding is done once per image while it is
 * kept (least recently used images are forgotten; reading them again restores the same ids).
 */
export class Images {
  private readonly chunks = new Map<Token, Chunk>();
  private readonly refs = new Map<string, ImageRef>();

  constructor(private readonly projector: NativeProjector) {}

  get info(): ProjectorInfo {
    return this.projector.info();
  }

  /** Reads an image (PNG, JPEG, BMP, GIF's first frame); bad bytes are INVALID_ARGUMENT. */
  async read(bytes: Uint8Array): Promise<ImageRef> {
    const id = createHash("sha256").update(bytes).digest("hex");
    const known = this.refs.get(id);
    if (known) {
      this.refs.delete(id);
      this.refs.set(id, known);
      return known;
    }
    let out: Awaited<ReturnType<NativeProjector["tokenize"]>>;
    try {
      out = await this.projector.tokenize(this.info.marker, [bytes], { parseSpecial: true });
    } catch (err) {
      const why = (err as Error).message;
      throw fail.invalid(/send a/.test(why) ? why : `The image could not be read (${why.replace(/\.$/, "")}); send a PNG, JPEG, BMP or GIF file.`);
    }
    const facts = out.images[0];
    const pieces: ImagePiece[] = [];
    let index = 0;
    for (const c of out.chunks) {
      if (c.kind === "text") {
        if (c.tokens.length) pieces.push({ kind: "text", tokens: Array.from(c.tokens) });
        continue;
      }
      const placeholder = placeholderFor(id, index++);
      this.chunks.set(placeholder, { chunk: c.chunk });
      pieces.push({ kind: "image", placeholder, nPos: c.nPos });
    }
    const ref: ImageRef = { id, width: facts?.width ?? 0, height: facts?.height ?? 0, bytes: bytes.length, pieces };
    this.refs.set(id, ref);
    this.forgetOld();
    return ref;
  }

  /** Whether the image with this hash is read (its placeholders can be encoded). */
  knows(id: string): boolean {
    return this.refs.has(id);
  }

  /** The encoded image a placeholder stands for (encoded on first use, off the JS thread). */
  encoded(placeholder: Token): Promise<EncodedImage> {
    const c = this.chunks.get(placeholder);
    if (!c) throw fail.internal("An image of the prompt is no longer known; send the message again.");
    c.encoded ??= this.projector.encode(c.chunk);
    c.encoded.catch(() => (c.encoded = undefined));
    return c.encoded;
  }

  dispose(): void {
    this.chunks.clear();
    this.refs.clear();
    this.projector.dispose();
  }

  private forgetOld(): void {
    while (this.refs.size > KEEP) {
      const [id, ref] = this.refs.entries().next().value as [string, ImageRef];
      this.refs.delete(id);
      for (const p of ref.pieces) if (p.kind === "image") this.chunks.delete(p.placeholder);
    }
  }
}

/** A negative id from an image's hash and the chunk's index (never a vocabulary id). */
export function placeholderFor(id: string, index: number): Token {
  return -1 - ((parseInt(id.slice(0, 8), 16) + index) % 0x3fffffff);
}

/**
 * The images among tokens handed to the loop, encoded: [{offset, embedding}], each covering its
 * nPos placeholder entries. A prompt that holds images needs the model's projector.
 */
export async function imageSpans(images: Images | undefined, tokens: readonly Token[]): Promise<{ offset: number; embedding: EncodedImage["embd"] }[]> {
  const spans: { offset: number; embedding: EncodedImage["embd"] }[] = [];
  for (let i = 0; i < tokens.length; ) {
    const t = tokens[i]!;
    if (t >= 0) {
      i++;
      continue;
    }
    if (!images) throw fail.precondition("This model takes no images (it has no projector); start the daemon with --mmproj, or send text only.");
    const enc = await images.encoded(t);
    spans.push({ offset: i, embedding: enc.embd });
    i += enc.nPos;
  }
  return spans;
}

/** An image as a session keeps it (journaled): enough to render it without reading it again. */
export interface StoredImage {
  sha256: string;
  name: string;
  bytes: number;
  width: number;
  height: number;
  /** The pieces without their placeholders (those follow from the hash). */
  pieces: ({ kind: "text"; tokens: Token[] } | { kind: "image"; nPos: number })[];
  /** Where in its message's text the image goes (a string index); absent: before the text. */
  at?: number;
}

export function storedImage(ref: ImageRef, name: string, at = 0): StoredImage {
  return {
    sha256: ref.id,
    name,
    bytes: ref.bytes,
    width: ref.width,
    height: ref.height,
    pieces: ref.pieces.map((p) => (p.kind === "text" ? p : { kind: "image", nPos: p.nPos })),
    ...(at > 0 ? { at } : {}),
  };
}

/** The prompt pieces of a stored image: the same placeholders as when it was read. */
export function imageRefOf(stored: StoredImage): ImageRef {
  let index = 0;
  return {
    id: stored.sha256,
    width: stored.width,
    height: stored.height,
    bytes: stored.bytes,
    pieces: stored.pieces.map((p) => (p.kind === "text" ? p : { kind: "image", placeholder: placeholderFor(stored.sha256, index++), nPos: p.nPos })),
  };
}
