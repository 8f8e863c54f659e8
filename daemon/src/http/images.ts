import { fail } from "@nanollm/shared";
import type { ImageInput } from "../sessions/readImages.js";

// Images as the HTTP APIs carry them: the OpenAI API's image_url content parts (data: URLs) and
// Ollama's base64 strings. The daemon fetches nothing a client names, so a remote URL is refused.

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** The bytes of an OpenAI `image_url` (a base64 data: URL); `where` names the part in errors. */
export function dataUrlImage(url: string, where: string): ImageInput {
  if (/^https?:/i.test(url)) {
    throw fail.invalid(`${where} is a remote URL, and the daemon fetches no URL a client names; send the image inline as a data: URL (data:image/png;base64,...).`);
  }
  const match = /^data:([^,;]*)((?:;[^,;]*)*),/i.exec(url);
  if (!match) throw fail.invalid(`${where} is not a data: URL; send the image inline as one (data:image/png;base64,...).`);
  if (!/;base64$/i.test(match[2] ?? "")) throw fail.invalid(`${where} is a data: URL without ;base64; send the image's bytes base64-encoded (data:image/png;base64,...).`);
  return base64Image(url.slice(match[0].length), where);
}

/** The bytes of a base64 image (Ollama's `images` entries); `where` names it in errors. */
export function base64Image(text: string, where: string): ImageInput {
  const compact = text.replace(/\s+/g, "");
  if (!BASE64.test(compact) || compact.length % 4 === 1) throw fail.invalid(`${where} is not valid base64; send the image file's bytes base64-encoded.`);
  return { data: Buffer.from(compact, "base64"), name: where };
}
