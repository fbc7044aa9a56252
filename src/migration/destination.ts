/**
 * The destination side of a migration: check the offer, collect pre-copy
 * pages, decode and check the final image, restore and run the process, and
 * say so. Nothing runs unless every check passed.
 */
import { FerryError } from "../errors.js";
import { ImageDecoder, type DecodedImage } from "../image/mod.js";
import type { FramedConnection } from "../transport/mod.js";
import { Msg, parseJson, raiseIfError, readPages, sendJson, WIRE_PAGE_BYTES } from "./_wire.js";
import type { Offer } from "./source.js";

/** Wait for the next frame at most this long before giving up on a silent source. */
const IDLE_TIMEOUT_MS = 60_000;

/** A process waiting on the destination for its state. */
export interface Landing {
  /** Writes bytes at `byte_offset` of its memory (grown as needed). */
  write(byte_offset: number, data: Uint8Array): void;
  /** Gives it the rest of its state (every page is in place) and runs it; throws to refuse. */
  finish(image: DecodedImage): Promise<void>;
  /** Drops it (the migration failed). */
  abort(): Promise<void>;
}

/** How the destination reaches the world. */
export interface DestinationSide {
  /**
   * Checks the offer (module, directories, files) and prepares the process
   * to land — instantiated, memory ready — while the source still runs it;
   * throws a FerryError to refuse.
   */
  prepare(offer: Offer): Promise<Landing>;
}

/** Serves one incoming migration on `conn`. Resolves with the pid once it runs here. */
export async function migrateIn(conn: FramedConnection, side: DestinationSide): Promise<string> {
  let offer: Offer;
  let landing: Landing;
  try {
    const first = await conn.next({ timeout_ms: IDLE_TIMEOUT_MS });
    if (first.type !== Msg.offer) throw new FerryError("ERR_MIGRATION_PROTOCOL", `expected OFFER, got frame type ${first.type}`);
    offer = parseJson<Offer>(first.payload);
    landing = await side.prepare(offer);
  } catch (err: unknown) {
    await refuse(conn, err);
    throw err;
  }
  try {
    await sendJson(conn, Msg.ready, {});
    // Pages go straight into the waiting process's memory; the image is
    // checked whole before any of it is used.
    // Pages of the image go in place as they arrive, with no copy in
    // between; the process runs only once the whole image passed its checks,
    // and is thrown away otherwise.
    const decoder = new ImageDecoder({
      module_sha256: Buffer.from(offer.module_sha256, "hex"),
      write_pages: (offset, piece) => landing.write(offset, piece),
    });
    for (;;) {
      const frame = await conn.next({ timeout_ms: IDLE_TIMEOUT_MS });
      raiseIfError(frame, "the source gave up");
      if (frame.type === Msg.pages) for (const p of readPages(frame.payload)) landing.write(p.index * WIRE_PAGE_BYTES, p.data);
      else if (frame.type === Msg.image) decoder.push(frame.payload);
      else if (frame.type === Msg.image_end) break;
      else if (frame.type !== Msg.round_end) throw new FerryError("ERR_MIGRATION_PROTOCOL", `unexpected frame type ${frame.type}`);
    }
    await landing.finish(decoder.end());
  } catch (err: unknown) {
    await landing.abort();
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
