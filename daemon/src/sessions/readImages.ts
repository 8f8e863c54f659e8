import { fail } from "@nanollm/shared";
import { storedImage, type StoredImage } from "../engine/Images.js";
import type { ModelHost } from "../engine/ModelHost.js";
import type { ImageBytes } from "./Journal.js";

/** An image as a client sends it: the file's bytes and a name to show (never a path the daemon reads). */
export interface ImageInput {
  data: Uint8Array;
  name: string;
  /** Where in the message's text it goes (a string index); absent or 0: before the text. */
  at?: number;
}

/**
 * A message's images, read by the model's projector (bad bytes and WebP are refused here, a model
 * without a projector refuses any) and stored by hash in `store` when the session is journaled.
 * Every API's images come through here, so each refusal is the same sentence whatever the client.
 */
export async function readImages(host: ModelHost, images: readonly ImageInput[], store: ImageBytes | undefined): Promise<StoredImage[]> {
  const reader = host.images;
  if (!reader) throw fail.precondition(`The model ${host.facts.name} takes no images (no projector is loaded); start the daemon with --mmproj FILE, or send text only.`);
  const out: StoredImage[] = [];
  for (const im of images) {
    const name = im.name.replace(/[\u0000-\u001f]/g, "").slice(0, 200);
    if (/^RIFF....WEBP/s.test(Buffer.from(im.data.subarray(0, 12)).toString("latin1"))) throw fail.invalid(`The image ${name || "(unnamed)"} is WebP, which the daemon cannot read; convert it to PNG or JPEG first.`);
    const ref = await reader.read(im.data);
    // The model's reader hashed the bytes already (SHA-256, the image's id).
    await store?.put(im.data, ref.id);
    out.push(storedImage(ref, name, im.at));
  }
  return out;
}
