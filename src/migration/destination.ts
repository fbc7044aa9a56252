/**
 * The destination side of a migration: check the offer, collect pre-copy
 * pages, decode and check the final image (its signature by a key this side
 * trusts included), restore and run the process, and say so. Nothing runs
 * unless every check passed; any failure is answered with ERROR at once, so
 * the source resumes the process.
 */
import { createHash } from "node:crypto";
import type { Duplex } from "node:stream";
import { FerryError, ImageError, ImageErrorCodes } from "../errors.js";
import { ImageDecoder, offThreadSha256, type AsyncHash, type DecodedImage, type ImageTrust } from "../image/mod.js";
import { CHUNK_BYTES } from "../memory/mod.js";
import type { FramedConnection } from "../transport/mod.js";
import { INLINE_FINAL_PAGES_MAX, Msg, PAGES_PER_FRAME_MAX, raiseIfError, readFrame, readPages, sendJson, WIRE_PAGE_BYTES, type Handover } from "./_wire.js";
import { decompressPagesPayload } from "./_compress.js";
import { BulkSealedSchema, HandoverSchema, OfferSchema, RoundEndSchema } from "./_schemas.js";
import { BULK_TAGS_META_KEY, SealedBulkReceiver } from "./_sealed_bulk.js";
import { BULK_META_KEY, BulkReceiver } from "./_bulk.js";
import { nativeBulkAvailable, NativeBulkReceiver, type BulkCipher } from "./_native_bulk.js";
import type { Offer } from "./source.js";
import { isSmallMemory } from "./_small.js";
import { collectBeforeStop, PhaseClock, type DestinationPhase } from "./phases.js";

/** The destination's phase clock as the side's own steps see it: they name the phase they enter. */
export type DestinationClock = Pick<PhaseClock<DestinationPhase>, "enter">;

/**
 * Default wait for the next frame before giving up on a silent source. The
 * standby it prepared holds the process's whole memory, populated: a source
 * that went quiet must not keep it. Rounds and image frames follow each
 * other within milliseconds; a source that is merely slow still sends a
 * frame well within this.
 */
export const STANDBY_IDLE_MS_DEFAULT = 30_000;

/** Options of {@link migrateIn}. */
export interface MigrateInOptions {
  /** Wait for the next frame at most this long (default STANDBY_IDLE_MS_DEFAULT); then the standby is dropped. */
  idle_ms?: number;
}

/** A process waiting on the destination for its state. */
export interface Landing {
  /**
   * Writes bytes at `byte_offset` of its memory (grown as needed). May return
   * the memory's view of them: the image's hash then reads them there, in
   * place, instead of a copy (ImageDecoderOptions.write_pages).
   */
  write(byte_offset: number, data: Uint8Array): unknown;
  /**
   * Gives it the rest of its state and runs it; throws to refuse. Every page
   * is in place, except with a `handover` (post-copy, hybrid): the chunks it
   * names are dropped (while the process's worker takes up the rest of its
   * state) and come from the source after the process runs. Resolves with
   * the moment the process ran again, as `performance.timeOrigin +
   * performance.now()` (ms), where it is known.
   */
  finish(image: DecodedImage, handover: Handover | null, clock?: DestinationClock): Promise<number | undefined>;
  /** Drops it (the migration failed). */
  abort(): Promise<void>;
  /** Post-copy and hybrid: the offer's page session is expected here, and its channel may open before the stop (READY `page_session`). */
  readonly early_pages?: boolean;
  /**
   * A writable view of `length` bytes of its memory at `byte_offset` (grown
   * as needed): the sealed BULK connection decrypts pages straight into it.
   * Absent: no sealed connection is offered.
   */
  place?(byte_offset: number, length: number): Uint8Array;
  /**
   * Resolves once the standby's memory is backed, where that goes on while
   * the first round arrives (pre-copy): the first round is confirmed only
   * after, so the source never stops the process before it. Absent: backed
   * before READY.
   */
  reserved?(): Promise<void>;
}

/** A door for the record connection (`_sealed_bulk.ts`, `_native_bulk.ts`): its ticket and key go to the source in READY. */
export interface SealedDoor {
  ticket: Uint8Array;
  key: Uint8Array;
  /** How its records are protected (absent: sealed, `aes-256-gcm`); `gmac` only where the native record stream is built. */
  cipher?: BulkCipher;
  /** The source's connection, once it came through the door. */
  socket: Promise<Duplex>;
  /** Closes the door and wipes the key (the migration is over, either way). */
  close(): void;
}

/** How the destination reaches the world. */
export interface DestinationSide {
  /**
   * Checks the offer (module, directories, files) and prepares the process
   * to land — instantiated, memory ready — while the source still runs it;
   * throws a FerryError to refuse.
   */
  prepare(offer: Offer, clock?: DestinationClock): Promise<Landing>;
  /**
   * The keys whose images this side runs (called with the image's key id,
   * after `prepare`): the node trusts its cluster's members.
   */
  trust: ImageTrust;
  /** Opens a door for stop-copy's record connection (between nodes with TLS: sealed records; without: tagged ones). */
  sealedDoor?(): SealedDoor;
}

/** Serves one incoming migration on `conn`. Resolves with the pid once it runs here. */
export async function migrateIn(conn: FramedConnection, side: DestinationSide, options: MigrateInOptions = {}): Promise<string> {
  const idle_ms = options.idle_ms ?? STANDBY_IDLE_MS_DEFAULT;
  let offer: Offer;
  let landing: Landing;
  const clock = new PhaseClock<DestinationPhase>();
  try {
    const first = await conn.next({ timeout_ms: idle_ms });
    if (first.type !== Msg.offer) throw new FerryError("ERR_MIGRATION_PROTOCOL", `expected OFFER, got frame type ${first.type}`);
    clock.enter("admit");
    offer = readFrame(OfferSchema, first.payload, "OFFER");
    landing = await side.prepare(offer, clock);
  } catch (err: unknown) {
    await refuse(conn, err);
    throw err;
  }
  let sha256: AsyncHash | undefined;
  let bulk: BulkReceiver | null = null;
  // Stop-copy's pages, and pre-copy's and hybrid's first round, may come as records on a connection of their own,
  // straight into memory; a small memory's come inside the image instead (`_small.ts`), so it needs no door.
  const place = landing.place?.bind(landing);
  const records = offer.strategy !== "post-copy" && place !== undefined && !isSmallMemory(offer.memory_bytes);
  let door = records ? (side.sealedDoor?.() ?? null) : null;
  const sealed = door === null || place === undefined ? null : recordReceiver(door, place, offer);
  if (sealed === null) {
    door?.close();
    door = null;
  }
  // A source that never comes through the door is caught by the wait on sealed.opened() below, which times out and says so.
  if (door !== null && sealed !== null) door.socket.then((socket) => sealed.attach(socket), () => undefined);
  let resumed_at: number | undefined;
  try {
    clock.stop();
    // bulk: stop-copy's pages may come as BULK frames, outside the image; sealed: or on the sealed connection.
    const door_fields =
      door === null ? {} : { sealed: { ticket: Buffer.from(door.ticket).toString("base64"), key: Buffer.from(door.key).toString("base64"), ...(door.cipher === "gmac" ? { cipher: "gmac" } : {}) } };
    await sendJson(conn, Msg.ready, { phases_ms: clock.snapshot(), bulk: true, ...door_fields, ...(landing.early_pages === true ? { page_session: true } : {}) });
    // Stop-copy's pages outside the image: only first, and hashed in place, so nothing else may write memory until their digest is in.
    let bulk_open = true;
    let bulk_digest: string | null = null;
    let sealed_digest: string | null = null;
    // Pages of the image go in place as they arrive, with no copy in
    // between; the process runs only once the whole image passed its checks,
    // and is thrown away otherwise. Made at the image's first frame, when it
    // is known whether the pages came before it.
    let decoder: ImageDecoder | null = null;
    const imageDecoder = (): ImageDecoder => {
      if (decoder !== null) return decoder;
      // The signature's SHA-256 is computed on a hashing thread, so this one only reads the socket and checks CRCs.
      // An image without pages (post-copy's, hybrid's, or stop-copy's after its BULK pages) is a few KiB, and a
      // small memory's holds a few pages: hashed here, faster than a hop to that thread.
      // Pre-copy's final copy is hashed here too when the last round was small, as the source does (INLINE_FINAL_PAGES_MAX).
      const small_final = last_round_pages <= INLINE_FINAL_PAGES_MAX;
      const outside = offer.strategy === "stop-copy" && (bulk_digest !== null || sealed_digest !== null);
      const few_pages = offer.strategy === "post-copy" || offer.strategy === "hybrid" || isSmallMemory(offer.memory_bytes) || outside || small_final;
      sha256 = few_pages ? undefined : offThreadSha256();
      decoder = new ImageDecoder({
        trust: side.trust,
        module_sha256: Buffer.from(offer.module_sha256, "hex"),
        write_pages: (offset, piece) => landing.write(offset, piece),
        ...(sha256 !== undefined ? { sha256 } : {}),
      });
      return decoder;
    };
    // The rounds' pages are not in the image; it carries their digest (META precopy_sha256), signed.
    const rounds_digest = createHash("sha256");
    let rounds_pages = false;
    // Pages of the round under way, and of the last one ended (Infinity: none ended).
    let round_pages_count = 0;
    let last_round_pages = Infinity;
    let collected = false;
    // Bytes of the rounds' PAGES frames, through this thread's buffers (the garbage a collection is for).
    let framed_bytes = 0;
    let handover: Handover | null = null;
    for (;;) {
      clock.enter("wait");
      const frame = await conn.next({ timeout_ms: idle_ms });
      raiseIfError(frame, "the source gave up");
      const round_pages = frame.type === Msg.pages || frame.type === Msg.pages_lz4;
      // A round's end is the rounds' too: confirming it is not the image's decoding.
      clock.enter(round_pages || frame.type === Msg.bulk || frame.type === Msg.round_end ? "pages" : "decode");
      if (frame.type === Msg.bulk) {
        if (!bulk_open) throw new FerryError("ERR_MIGRATION_PROTOCOL", "BULK after other frames of the migration");
        bulk ??= new BulkReceiver((offset, data) => landing.write(offset, data), offer.memory_max_bytes);
        bulk.push(frame.payload);
        continue;
      }
      if (frame.type === Msg.bulk_sealed) {
        if (!bulk_open || bulk !== null || sealed === null) throw new FerryError("ERR_MIGRATION_PROTOCOL", "BULK_SEALED without a sealed door, or after other frames");
        bulk_open = false;
        clock.enter("pages");
        const { records } = readFrame(BulkSealedSchema, frame.payload, "BULK_SEALED");
        sealed_digest = await withTimeout(sealed.opened(records), idle_ms, "the sealed BULK connection");
        // Pre-copy's and hybrid's first round: all of memory, as far as the stop's nearness goes (RoundLimits.collect).
        round_pages_count = offer.memory_bytes / WIRE_PAGE_BYTES;
        continue;
      }
      if (bulk_open) {
        bulk_open = false;
        if (bulk !== null) bulk_digest = await bulk.finish();
      }
      if (round_pages) {
        // After a handover, memory is the page channel's alone (writing a dropped page here would wait on it).
        if (handover !== null) throw new FerryError("ERR_MIGRATION_PROTOCOL", "PAGES after the handover");
        // A compressed frame stands for the PAGES payload it rebuilds to: that is what is hashed and placed.
        const payload = frame.type === Msg.pages ? frame.payload : decompressPagesPayload(frame.payload, PAGES_PER_FRAME_MAX);
        const pages = readPages(payload);
        rounds_digest.update(payload);
        framed_bytes += payload.length;
        rounds_pages = true;
        round_pages_count += pages.length;
        for (const p of pages) landing.write(p.index * WIRE_PAGE_BYTES, p.data);
      }
      // Acted on once the image is checked, by the landing (`finish`).
      else if (frame.type === Msg.handover && handover === null) handover = checkHandover(readFrame(HandoverSchema, frame.payload, "HANDOVER"), offer);
      else if (frame.type === Msg.image) imageDecoder().push(frame.payload);
      else if (frame.type === Msg.image_end) break;
      else if (frame.type === Msg.round_end) {
        // The first round's end (no round ended yet): its confirmation waits for the standby's backing.
        if (last_round_pages === Infinity && landing.reserved !== undefined) {
          clock.enter("reserve");
          await landing.reserved();
          clock.enter("pages");
        }
        last_round_pages = round_pages_count;
        round_pages_count = 0;
        // Hybrid stops after its one round; pre-copy soon after its first small round (as the source, RoundLimits.collect).
        if (!collected && (offer.strategy === "hybrid" || last_round_pages <= INLINE_FINAL_PAGES_MAX)) {
          if (collectBeforeStop(clock, framed_bytes)) clock.enter("pages");
          collected = true;
        }
        // Every page of the round is in place: the source measures the link by this, not by what it queued.
        await sendJson(conn, Msg.round_ack, { round: readFrame(RoundEndSchema, frame.payload, "ROUND_END").round });
      }
      else throw new FerryError("ERR_MIGRATION_PROTOCOL", `unexpected frame type ${frame.type}`);
    }
    const image = await imageDecoder().finish();
    checkRounds(image, rounds_digest.digest("hex"), rounds_pages);
    checkBulk(image, BULK_META_KEY, bulk_digest);
    checkBulk(image, BULK_TAGS_META_KEY, sealed_digest);
    if (handover !== null && handover.remote_bytes !== image.memory.size_bytes) {
      throw new FerryError("ERR_MIGRATION_PROTOCOL", `handover of ${handover.remote_bytes} bytes does not match the image's memory of ${image.memory.size_bytes}`);
    }
    clock.enter("restore");
    resumed_at = await landing.finish(image, handover, clock);
  } catch (err: unknown) {
    sha256?.drop();
    bulk?.drop();
    sealed?.close();
    door?.close();
    await landing.abort();
    await refuse(conn, err);
    throw err;
  }
  door?.close();
  clock.stop();
  // How long the process has run here already: the source takes it off the downtime it measures up to this answer.
  const ran_ms = resumed_at === undefined ? undefined : Math.max(0, performance.timeOrigin + performance.now() - resumed_at);
  await sendJson(conn, Msg.running, { phases_ms: clock.snapshot(), ...(ran_ms === undefined ? {} : { ran_ms }) });
  conn.close();
  return offer.pid;
}

/**
 * The pre-copied pages must be those the signed image vouches for: its META
 * names the SHA-256 of every PAGES frame the source sent (of none, if its
 * memory was all zero), and this side hashed what it received. An image
 * without the member vouches for no pre-copied pages at all.
 */
function checkRounds(image: DecodedImage, received_sha256: string, received_pages: boolean): void {
  const signed = image.meta["precopy_sha256"];
  if (signed === undefined ? !received_pages : signed === received_sha256) return;
  throw new ImageError(ImageErrorCodes.signature, "image signature: the pre-copied pages are not the ones the source signed for; the process is not run");
}

/**
 * Stop-copy's BULK pages must be those the signed image vouches for (META
 * bulk_sha256); an image without the member vouches for none.
 */
function checkBulk(image: DecodedImage, key: typeof BULK_META_KEY | typeof BULK_TAGS_META_KEY, received_sha256: string | null): void {
  const signed = image.meta[key];
  if (signed === undefined ? received_sha256 === null : signed === received_sha256) return;
  throw new ImageError(ImageErrorCodes.signature, "image signature: the pages sent before the image are not the ones the source signed for; the process is not run");
}

/** A handover passed its schema; its ranges must also lie inside the memory, in order, and within the process's cap. */
export function checkHandover(h: Handover, offer: Pick<Offer, "strategy" | "memory_max_bytes" | "page_session">): Handover {
  if (offer.strategy !== "post-copy" && offer.strategy !== "hybrid") throw new FerryError("ERR_MIGRATION_PROTOCOL", `a ${offer.strategy} migration has no handover`);
  if (h.remote_bytes > offer.memory_max_bytes) throw new FerryError("ERR_MIGRATION_PROTOCOL", `handover of ${h.remote_bytes} bytes is over the process's cap of ${offer.memory_max_bytes}`);
  if (offer.page_session !== undefined && h.session !== offer.page_session) throw new FerryError("ERR_MIGRATION_PROTOCOL", "handover of another page session than the offer named");
  let end = 0;
  for (const [first, count] of h.missing) {
    if (first < end || (first + count) * CHUNK_BYTES > h.remote_bytes) {
      throw new FerryError("ERR_MIGRATION_PROTOCOL", "handover ranges are out of order or outside the memory");
    }
    end = first + count;
  }
  return h;
}

/**
 * The receiver of the record connection: a native thread that reads the
 * socket itself where the addon has one, else (sealed records only) the
 * node's thread; null (no door) for tagged records without the addon.
 */
function recordReceiver(door: SealedDoor, place: (byte_offset: number, length: number) => Uint8Array, offer: Offer): Pick<SealedBulkReceiver, "attach" | "opened" | "close"> | null {
  const cipher = door.cipher ?? "aes-256-gcm";
  if (nativeBulkAvailable()) return new NativeBulkReceiver(door.key, cipher, place, offer.memory_max_bytes, offer.memory_bytes);
  // Not offered then: the pages come as BULK frames.
  if (cipher !== "aes-256-gcm") return null;
  return new SealedBulkReceiver(door.key, place, offer.memory_max_bytes);
}

/** `p`, or ERR_TRANSPORT_TIMEOUT naming `what` after `ms`. */
async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new FerryError("ERR_TRANSPORT_TIMEOUT", `${what} did not bring every record within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function refuse(conn: FramedConnection, err: unknown): Promise<void> {
  const code = err instanceof FerryError ? err.code : "ERR_MIGRATION_REFUSED";
  const message = err instanceof Error ? err.message : String(err);
  // The link may be gone already: then the source sees that instead, and resumes the process all the same.
  await sendJson(conn, Msg.error, { code, message }).catch(() => undefined);
  void conn.close();
}
