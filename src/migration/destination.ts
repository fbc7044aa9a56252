/**
 * The destination side of a migration: check the offer, collect pre-copy
 * pages, decode and check the final image, restore and run the process, and
 * say so. Nothing runs unless every check passed.
 */
import { FerryError } from "../errors.js";
import { ImageDecoder, type DecodedImage } from "../image/mod.js";
import { CHUNK_BYTES } from "../memory/mod.js";
import type { FramedConnection } from "../transport/mod.js";
import { Msg, parseJson, raiseIfError, readPages, sendJson, WIRE_PAGE_BYTES, type Handover } from "./_wire.js";
import type { Offer } from "./source.js";

/** Wait for the next frame at most this long before giving up on a silent source. */
const IDLE_TIMEOUT_MS = 60_000;

/** A process waiting on the destination for its state. */
export interface Landing {
  /** Writes bytes at `byte_offset` of its memory (grown as needed). */
  write(byte_offset: number, data: Uint8Array): void;
  /**
   * Gives it the rest of its state and runs it; throws to refuse. Every page
   * is in place, except with a `handover` (post-copy, hybrid): the chunks it
   * names come from the source after the process runs.
   */
  finish(image: DecodedImage, handover: Handover | null): Promise<void>;
  /**
   * Post-copy and hybrid: the chunks named are dropped now and will come from
   * the source (the page channel can attach before the image is checked; the
   * process runs only after). Called once, before `finish`.
   */
  handover(h: Handover): void;
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
    let handover: Handover | null = null;
    for (;;) {
      const frame = await conn.next({ timeout_ms: IDLE_TIMEOUT_MS });
      raiseIfError(frame, "the source gave up");
      if (frame.type === Msg.pages) {
        // After a handover, memory is the page channel's alone (writing a dropped page here would wait on it).
        if (handover !== null) throw new FerryError("ERR_MIGRATION_PROTOCOL", "PAGES after the handover");
        for (const p of readPages(frame.payload)) landing.write(p.index * WIRE_PAGE_BYTES, p.data);
      }
      else if (frame.type === Msg.handover && handover === null) {
        handover = checkHandover(parseJson<Handover>(frame.payload), offer);
        landing.handover(handover);
      }
      else if (frame.type === Msg.image) decoder.push(frame.payload);
      else if (frame.type === Msg.image_end) break;
      else if (frame.type !== Msg.round_end) throw new FerryError("ERR_MIGRATION_PROTOCOL", `unexpected frame type ${frame.type}`);
    }
    const image = decoder.end();
    if (handover !== null && handover.remote_bytes !== image.memory.size_bytes) {
      throw new FerryError("ERR_MIGRATION_PROTOCOL", `handover of ${handover.remote_bytes} bytes does not match the image's memory of ${image.memory.size_bytes}`);
    }
    await landing.finish(image, handover);
  } catch (err: unknown) {
    await landing.abort();
    await refuse(conn, err);
    throw err;
  }
  await sendJson(conn, Msg.running, {});
  conn.close();
  return offer.pid;
}

/** A handover is untrusted input: its ranges must lie inside the memory, in order. */
function checkHandover(h: Handover, offer: Offer): Handover {
  if (offer.strategy !== "post-copy" && offer.strategy !== "hybrid") throw new FerryError("ERR_MIGRATION_PROTOCOL", `a ${offer.strategy} migration has no handover`);
  const ok =
    typeof h.session === "string" &&
    /^[A-Za-z0-9._-]{1,128}$/.test(h.session) &&
    Number.isInteger(h.remote_bytes) &&
    h.remote_bytes >= 0 &&
    h.remote_bytes % CHUNK_BYTES === 0 &&
    Array.isArray(h.missing);
  let end = 0;
  if (ok) {
    for (const run of h.missing) {
      const [first, count] = Array.isArray(run) ? run : [NaN, NaN];
      if (!Number.isInteger(first) || !Number.isInteger(count) || first! < end || count! <= 0 || (first! + count!) * CHUNK_BYTES > h.remote_bytes) {
        throw new FerryError("ERR_MIGRATION_PROTOCOL", "handover ranges are out of order or outside the memory");
      }
      end = first! + count!;
    }
    return h;
  }
  throw new FerryError("ERR_MIGRATION_PROTOCOL", "malformed handover");
}

async function refuse(conn: FramedConnection, err: unknown): Promise<void> {
  const code = err instanceof FerryError ? err.code : "ERR_MIGRATION_REFUSED";
  const message = err instanceof Error ? err.message : String(err);
  await sendJson(conn, Msg.error, { code, message }).catch(() => undefined);
  conn.close();
}
