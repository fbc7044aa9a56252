/**
 * The destination side of a migration: check the offer, collect pre-copy
 * pages, decode and check the final image, restore and run the process, and
 * say so. Nothing runs unless every check passed.
 */
import { FerryError } from "../errors.js";
import { ImageDecoder, sparsePages, type DecodedImage } from "../image/mod.js";
import type { FramedConnection } from "../transport/mod.js";
import { Msg, parseJson, raiseIfError, readPages, sendJson, WIRE_PAGE_BYTES } from "./_wire.js";
import type { Offer } from "./source.js";

/** Wait for the next frame at most this long before giving up on a silent source. */
const IDLE_TIMEOUT_MS = 60_000;
/** Highest byte a wasm32 memory can have: bounds pages a source may send. */
const MEMORY_BYTES_MAX = 4 * 1024 * 1024 * 1024;

/** How the destination reaches the world. */
export interface DestinationSide {
  /** Checks the offer (module, directories, files); throws a FerryError to refuse. */
  prepare(offer: Offer): Promise<void>;
  /** Restores the process and runs it; throws to refuse. */
  restore(offer: Offer, image: DecodedImage): Promise<void>;
}

/** Pre-copied pages, kept until the final image arrives. */
class Staging {
  #buf = Buffer.alloc(0);
  #size = 0;
  used = false;

  write(index: number, data: Uint8Array): void {
    const end = (index + 1) * WIRE_PAGE_BYTES;
    if (end > MEMORY_BYTES_MAX) throw new FerryError("ERR_MIGRATION_PROTOCOL", `page ${index} is past 4 GiB`);
    if (end > this.#buf.length) {
      const bigger = Buffer.alloc(Math.min(MEMORY_BYTES_MAX, Math.max(end, this.#buf.length * 2)));
      this.#buf.copy(bigger, 0, 0, this.#size);
      this.#buf = bigger;
    }
    this.#buf.set(data, index * WIRE_PAGE_BYTES);
    this.#size = Math.max(this.#size, end);
    this.used = true;
  }

  /** The final image with its pages laid over the staged ones. */
  merge(image: DecodedImage): DecodedImage {
    for (const page of image.memory.pages()) {
      for (let i = 0; i * WIRE_PAGE_BYTES < page.data.length; i += 1) {
        this.write(page.index + i, page.data.subarray(i * WIRE_PAGE_BYTES, (i + 1) * WIRE_PAGE_BYTES));
      }
    }
    const size = image.memory.size_bytes;
    if (this.#size > size) this.#buf.fill(0, size, this.#size);
    if (this.#buf.length < size) this.write(size / WIRE_PAGE_BYTES - 1, new Uint8Array(WIRE_PAGE_BYTES));
    const memory = sparsePages(this.#buf.subarray(0, size));
    return { ...image, memory: { ...memory, pages: () => memory.pages(), page_count: -1 } };
  }
}

/** Serves one incoming migration on `conn`. Resolves with the pid once it runs here. */
export async function migrateIn(conn: FramedConnection, side: DestinationSide): Promise<string> {
  let offer: Offer;
  try {
    const first = await conn.next({ timeout_ms: IDLE_TIMEOUT_MS });
    if (first.type !== Msg.offer) throw new FerryError("ERR_MIGRATION_PROTOCOL", `expected OFFER, got frame type ${first.type}`);
    offer = parseJson<Offer>(first.payload);
    await side.prepare(offer);
  } catch (err: unknown) {
    await refuse(conn, err);
    throw err;
  }
  await sendJson(conn, Msg.ready, {});
  const staging = new Staging();
  const decoder = new ImageDecoder({ module_sha256: Buffer.from(offer.module_sha256, "hex") });
  for (;;) {
    const frame = await conn.next({ timeout_ms: IDLE_TIMEOUT_MS });
    raiseIfError(frame, "the source gave up");
    if (frame.type === Msg.pages) for (const p of readPages(frame.payload)) staging.write(p.index, p.data);
    else if (frame.type === Msg.image) decoder.push(frame.payload);
    else if (frame.type === Msg.image_end) break;
    else if (frame.type !== Msg.round_end) throw new FerryError("ERR_MIGRATION_PROTOCOL", `unexpected frame type ${frame.type}`);
  }
  try {
    const decoded = decoder.end();
    await side.restore(offer, staging.used ? staging.merge(decoded) : decoded);
  } catch (err: unknown) {
    await refuse(conn, err);
    throw err;
  }
  await sendJson(conn, Msg.running, {});
  conn.close();
  return offer.pid;
}

async function refuse(conn: FramedConnection, err: unknown): Promise<void> {
  const code = err instanceof FerryError ? err.code : "ERR_MIGRATION_REFUSED";
  const message = err instanceof Error ? err.message : String(err);
  await sendJson(conn, Msg.error, { code, message }).catch(() => undefined);
  conn.close();
}
