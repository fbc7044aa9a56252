/**
 * Stop-copy's pages outside the image (docs/cluster.md, "BULK"): once the
 * process is suspended, its non-zero pages go as BULK frames straight from
 * guest memory to the socket, before a small image that holds no pages and
 * whose signed META names the SHA-256 of the BULK stream (`bulk_sha256`).
 *
 * Why not in the image: an image's PAGES sections each carry a CRC-32, which
 * both sides compute on the thread that also drives the socket. The
 * signature's SHA-256 already covers every byte, so here that is the only
 * check, and both sides compute it on a hashing thread, over the pages in
 * place (the source's suspended memory, the destination's standby memory the
 * pages were just written to): the socket's thread only moves bytes.
 *
 * The BULK payloads, concatenated in order, are a byte stream of runs (a
 * frame may end anywhere, so the receiver takes its pieces as they arrive):
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 4 | first page, u32 little-endian |
 * | 4 | 4 | count of pages, u32 little-endian, 1 to 256 |
 * | 8 | 4096 × count | the pages |
 *
 * Runs are strictly increasing and never overlap: every page of memory is
 * written at most once by the stream, so the destination may hash what it
 * wrote after the fact, and a replayed or reordered run is refused.
 */
import { FerryError } from "../errors.js";
import { ImageLimits, offThreadSha256, sparsePages, type AsyncHash, type MemoryRun } from "../image/mod.js";
import { yieldIfDue, type FramedConnection } from "../transport/mod.js";
import { Msg, WIRE_PAGE_BYTES } from "./_wire.js";

/** Bytes of a run's header in the BULK stream. */
export const BULK_RUN_HEAD_BYTES = 8;

/** Most pages in one run: the image's own run limit, so a run and its header fit in one frame. */
export const BULK_RUN_PAGES_MAX = ImageLimits.page_run_pages_max;

/** The META member that carries the BULK stream's SHA-256 (hex). */
export const BULK_META_KEY = "bulk_sha256";

/** What sending the BULK stream took. */
export interface BulkSent {
  pages: number;
  /** Bytes on the connection, frame headers included. */
  bytes: number;
  /** SHA-256 of the stream, hex: what the image's META must carry; null when no page was sent (META then has none). */
  sha256: string | null;
}

/**
 * Bytes of memory scanned for non-zero pages between two looks at whether
 * this thread is due to give its event loop a turn: zeros scan at about 4-10
 * GB/s here, so about a millisecond at most.
 */
const SCAN_SLICE_BYTES = 4 * 1024 * 1024;

/**
 * The runs of non-zero pages of `memory`, as sparsePages' pageRuns finds
 * them, but SCAN_SLICE_BYTES at a time (a run never crosses the end of a
 * slice), with a turn of the event loop between two slices when one is due
 * (`turns.ts`): a scan of 1 GiB of zeros in one go held the node's thread
 * for 100-250 ms.
 */
export async function* pageRunsInTurns(memory: Uint8Array): AsyncGenerator<MemoryRun, void, undefined> {
  for (let at = 0; at < memory.length; at += SCAN_SLICE_BYTES) {
    const first = at / WIRE_PAGE_BYTES;
    const runs = sparsePages(memory.subarray(at, Math.min(memory.length, at + SCAN_SLICE_BYTES))).pageRuns;
    if (runs === undefined) throw new Error("sparsePages() has no pageRuns");
    for (const run of runs()) yield { first: first + run.first, data: run.data };
    await yieldIfDue();
  }
}

/**
 * Sends every non-zero page of `memory` as BULK frames, one run per frame,
 * the pages as views of the memory (which must not change until the digest
 * is in: the process is suspended). Stops early, without the digest, once
 * `stop()` says so. The SHA-256 is taken on a hashing thread.
 */
export async function sendBulk(conn: FramedConnection, memory: Uint8Array, stop: () => boolean = () => false): Promise<BulkSent | null> {
  const sha = offThreadSha256();
  let pages = 0;
  let bytes = 0;
  try {
    for await (const run of pageRunsInTurns(memory)) {
      const count = run.data.length / WIRE_PAGE_BYTES;
      // From Node's slab pool: 8 bytes a frame should not cost a page.
      const head = Buffer.allocUnsafe(BULK_RUN_HEAD_BYTES);
      head.writeUInt32LE(run.first, 0);
      head.writeUInt32LE(count, 4);
      sha.update(head);
      sha.update(run.data);
      await conn.send(Msg.bulk, [head, run.data]);
      pages += count;
      bytes += 5 + BULK_RUN_HEAD_BYTES + run.data.length;
      if (stop()) {
        sha.drop();
        return null;
      }
    }
  } catch (err: unknown) {
    sha.drop();
    throw err;
  }
  const digest = await sha.digest();
  return { pages, bytes, sha256: pages === 0 ? null : Buffer.from(digest).toString("hex") };
}

/** Where the receiver puts a run's bytes; may return the memory's view of them, which is then hashed in place. */
export type BulkWrite = (byte_offset: number, data: Uint8Array) => unknown;

/**
 * The destination's side of the BULK stream: takes the frames' pieces as
 * they come, checks each run's header before a byte of it is written, puts
 * the pages in place and hashes them there. Throws ERR_MIGRATION_PROTOCOL at
 * the first bad header.
 */
export class BulkReceiver {
  readonly #write: BulkWrite;
  readonly #memory_bytes_max: number;
  readonly #sha: AsyncHash = offThreadSha256();
  readonly #head = Buffer.alloc(BULK_RUN_HEAD_BYTES);
  #head_fill = 0;
  /** Bytes of the current run's pages still to come, and where the next goes. */
  #left = 0;
  #at = 0;
  #next_page_min = 0;
  #pages = 0;
  #closed = false;

  /** `memory_bytes_max`: the process's cap; no run may reach past it. */
  constructor(write: BulkWrite, memory_bytes_max: number) {
    this.#write = write;
    this.#memory_bytes_max = memory_bytes_max;
  }

  /** Pages received so far. */
  get pages(): number {
    return this.#pages;
  }

  /** Takes the next piece of the stream. */
  push(piece: Uint8Array): void {
    if (this.#closed) throw protocolError("BULK after the page stream ended");
    let at = 0;
    while (at < piece.length) {
      if (this.#left === 0) {
        const take = Math.min(BULK_RUN_HEAD_BYTES - this.#head_fill, piece.length - at);
        this.#head.set(piece.subarray(at, at + take), this.#head_fill);
        this.#head_fill += take;
        at += take;
        if (this.#head_fill === BULK_RUN_HEAD_BYTES) this.#startRun();
        continue;
      }
      const take = Math.min(this.#left, piece.length - at);
      const data = piece.subarray(at, at + take);
      const placed = this.#write(this.#at, data);
      // The memory's own view when the landing gives one (a standby's shared memory): hashed there, not copied.
      this.#sha.update(placed instanceof Uint8Array && placed.length === take ? placed : data);
      this.#at += take;
      this.#left -= take;
      at += take;
    }
  }

  #startRun(): void {
    const first = this.#head.readUInt32LE(0);
    const count = this.#head.readUInt32LE(4);
    this.#head_fill = 0;
    checkRun(first, count, this.#next_page_min, this.#memory_bytes_max);
    // A copy: the header bytes may lie in a socket chunk that is reused.
    this.#sha.update(Buffer.from(this.#head));
    this.#next_page_min = first + count;
    this.#at = first * WIRE_PAGE_BYTES;
    this.#left = count * WIRE_PAGE_BYTES;
    this.#pages += count;
  }

  /**
   * Ends the stream (it must end between runs) and resolves with its
   * SHA-256, hex, once every byte written was hashed: only then may anything
   * else write the memory. Null if the stream was empty.
   */
  async finish(): Promise<string | null> {
    if (this.#closed) throw new Error("BulkReceiver.finish() called twice");
    this.#closed = true;
    if (this.#head_fill !== 0 || this.#left !== 0) {
      this.#sha.drop();
      throw protocolError("the BULK stream ended inside a run");
    }
    if (this.#pages === 0) {
      this.#sha.drop();
      return null;
    }
    return Buffer.from(await this.#sha.digest()).toString("hex");
  }

  /** Forgets the hash (the migration failed). */
  drop(): void {
    this.#closed = true;
    this.#sha.drop();
  }
}

/**
 * Checks a run's header before a byte of it is written: 1 to
 * BULK_RUN_PAGES_MAX pages, after every page of the runs before it, and
 * inside the process's memory cap. Throws ERR_MIGRATION_PROTOCOL.
 */
export function checkRun(first: number, count: number, next_page_min: number, memory_bytes_max: number): void {
  if (count < 1 || count > BULK_RUN_PAGES_MAX) throw protocolError(`BULK run of ${count} pages (1 to ${BULK_RUN_PAGES_MAX})`);
  if (first < next_page_min) throw protocolError(`BULK run at page ${first} after page ${next_page_min - 1}: runs must increase`);
  const end_bytes = (first + count) * WIRE_PAGE_BYTES;
  if (end_bytes > memory_bytes_max) throw protocolError(`BULK run up to byte ${end_bytes} is past the process's memory cap of ${memory_bytes_max}`);
}

function protocolError(message: string): FerryError {
  return new FerryError("ERR_MIGRATION_PROTOCOL", message);
}
