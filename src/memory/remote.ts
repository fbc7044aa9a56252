/**
 * Remote pages for post-copy (DESIGN.md, "A migration": post-copy): the
 * destination's memory is registered with userfaultfd in MISSING mode and the
 * pages still at the source are dropped. Native threads in the addon serve
 * every fault from a socket to the source that they own (see
 * native/uffd_postcopy.c for why no JavaScript thread may be on that path).
 *
 * Rules for the caller: never touch the memory from this thread while pages
 * are missing; before terminating the guest's worker, tell the guest to stop
 * and then {@link RemotePages.fail} (a worker waiting on a page cannot be
 * terminated); {@link RemotePages.close} only once complete or failed.
 */
import type { Duplex } from "node:stream";
import { TLSSocket } from "node:tls";
import { FerryError } from "../errors.js";
import { nativeAddon, REGISTERED_BYTES, type NativeAddon, type RemoteStatsNative } from "../native.js";
import { RECORD_KEY_BYTES, type PageChannelKeys } from "./page_records.js";

/** Unit of transfer and of bookkeeping: one wasm page. */
export const CHUNK_BYTES = 65536;

/** Frame kinds of the page channel (16-byte header: kind, a, b, c; docs/cluster.md). */
export const PageFrame = { hello: 1, req: 2, done: 3, abort: 4, pages: 16, zero: 17 } as const;
/** Bytes of a page-channel frame header. */
export const PAGE_FRAME_HEAD_BYTES = 16;
/** Chunks in one PAGES frame at most. */
export const CHUNKS_PER_FRAME_MAX = 16;
/** PAGES flag: sent because the destination faulted on it. */
export const PAGES_FLAG_DEMAND = 1;

/** A page-channel frame header. */
export function pageFrameHead(kind: number, a = 0, b = 0, c = 0): Buffer {
  const h = Buffer.alloc(PAGE_FRAME_HEAD_BYTES);
  h.writeUInt32LE(kind, 0);
  h.writeUInt32LE(a, 4);
  h.writeUInt32LE(b, 8);
  h.writeUInt32LE(c, 12);
  return h;
}

/**
 * Counters of a session: chunks (total) and present; faults (events read; a
 * chunk may fault more than once before it arrives); demand_chunks (asked for
 * because a thread faulted on them) and demand_served (arrived as answers);
 * pushed_chunks (arrived by the background push); zero_chunks (the source
 * said all zero); bytes_in; attaches (more than one: the link broke and was
 * recovered); complete_ms (open to last chunk in place, or -1);
 * preempt_chunks (placed from the demand channel).
 */
export type RemoteStats = RemoteStatsNative;

const EVENT_DOWN = 1;
const EVENT_COMPLETE = 2;

/** What a session tells its owner (on this thread). */
export interface RemoteEvents {
  /** The socket to the source broke; faulting threads wait for the next one. */
  down(): void;
  /** Every chunk is here (DONE was sent to the source). */
  complete(): void;
}

function addon(): NativeAddon {
  const n = nativeAddon();
  if (!("addon" in n)) throw new FerryError("ERR_UFFD_UNAVAILABLE", `post-copy cannot run here: ${n.reason}`);
  return n.addon;
}

/** A memory whose first `remote_bytes` are served from the source on first touch. */
export class RemotePages {
  #remote_bytes: number;
  readonly #native: NativeAddon;
  readonly #handle: unknown;
  #closed = false;

  /** Registers `view`'s memory (nothing is missing until {@link drop}). Throws ERR_UFFD_UNAVAILABLE with the reason. */
  constructor(view: Uint8Array, remote_bytes: number, events: RemoteEvents) {
    this.#native = addon();
    this.#remote_bytes = remote_bytes;
    try {
      this.#handle = this.#native.postcopyOpen(view, REGISTERED_BYTES, remote_bytes, CHUNK_BYTES, (code) => {
        if (code === EVENT_DOWN) events.down();
        else if (code === EVENT_COMPLETE) events.complete();
      });
    } catch (err: unknown) {
      throw new FerryError("ERR_UFFD_UNAVAILABLE", `post-copy cannot use userfaultfd here: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Bytes from the base that come from the source. */
  get remote_bytes(): number {
    return this.#remote_bytes;
  }

  /**
   * Grows the part that comes from the source (its new chunks count as here
   * until dropped), before the first {@link attach}: a session opened while
   * the source still runs learns the size of its memory at the stop only then.
   */
  resize(remote_bytes: number): void {
    this.#native.postcopyResize(this.#handle, remote_bytes);
    this.#remote_bytes = remote_bytes;
  }

  /**
   * Writes whole pages at `byte_offset` of `memory` (a view of the whole
   * registered memory as it is now; nothing goes past its end) while the
   * guest is stopped and nothing is missing there: a page not there yet is
   * placed whole, without the faults a plain write of fresh registered
   * memory takes (one to this session's thread per chunk, then one per page).
   */
  write(memory: Uint8Array, byte_offset: number, data: Uint8Array): void {
    this.#native.postcopyWrite(this.#handle, memory, byte_offset, data);
  }

  /** Makes whole chunks missing: they now come from the source. */
  drop(byte_offset: number, bytes: number): void {
    this.#native.postcopyDrop(this.#handle, byte_offset, bytes);
  }

  /**
   * Says the guest runs: the old pages of dropped chunks, moved aside rather
   * than freed while it was stopped, are freed now off this thread.
   */
  settle(): void {
    if (!this.#closed) this.#native.postcopySettle(this.#handle);
  }

  /**
   * Hands a connected TCP socket to the source over to the native threads:
   * its file descriptor is duplicated and the socket object destroyed.
   * With `keys` (fresh for this connection; docs/cluster.md, "Sealed
   * records") every frame each way is sealed; without, frames travel in the
   * clear (a node without TLS). Nothing may have been read from the socket
   * past what authenticated it. A TLS socket is refused: the threads cannot
   * read TLS, and no JavaScript thread stands between them and the source.
   * With `demand` it becomes the demand channel (preempt): every fault is
   * asked for there from now on and answered there, never behind the push;
   * if it breaks, what it owed is asked for again on the page channel.
   */
  attach(socket: Duplex, keys?: PageChannelKeys, options: { demand?: boolean } = {}): void {
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (socket instanceof TLSSocket || typeof fd !== "number" || fd < 0) {
      socket.destroy();
      throw new FerryError("ERR_POSTCOPY", "the page channel must be a plain TCP socket with a file descriptor to hand over");
    }
    let packed: Buffer | undefined;
    if (keys !== undefined) {
      if (keys.to_destination.length !== RECORD_KEY_BYTES || keys.to_source.length !== RECORD_KEY_BYTES) {
        socket.destroy();
        throw new RangeError(`page-channel keys have ${RECORD_KEY_BYTES} bytes each`);
      }
      packed = Buffer.concat([keys.to_destination, keys.to_source]);
    }
    socket.pause();
    try {
      this.#native.postcopyAttach(this.#handle, fd, packed, options.demand ?? false);
    } finally {
      // The threads hold their own copies of the socket and of the keys.
      packed?.fill(0);
      socket.destroy();
    }
  }

  /**
   * Gives up on the source: the guest must already be told to stop. Wakes
   * every waiting thread (with pages it must never act on) and returns the
   * byte ranges that never arrived.
   */
  fail(): { byte_offset: number; bytes: number }[] {
    if (this.#closed) return [];
    return this.#native.postcopyFail(this.#handle).map(([first, count]) => ({ byte_offset: first * CHUNK_BYTES, bytes: count * CHUNK_BYTES }));
  }

  get stats(): RemoteStats {
    return this.#native.postcopyStats(this.#handle);
  }

  get complete(): boolean {
    const s = this.stats;
    return s.present === s.chunks;
  }

  /** Stops serving and unregisters: only once complete or failed (throws otherwise). */
  close(): void {
    if (this.#closed) return;
    this.#native.postcopyClose(this.#handle);
    this.#closed = true;
  }
}

let availability: { available: true } | { available: false; reason: string } | undefined;

/** Whether post-copy can run on this machine, and why not. */
export function remotePagesAvailability(): { available: true } | { available: false; reason: string } {
  if (availability !== undefined) return availability;
  try {
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
    const pages = new RemotePages(new Uint8Array(memory.buffer), 0, { down: () => undefined, complete: () => undefined });
    pages.close();
    availability = { available: true };
  } catch (err: unknown) {
    availability = { available: false, reason: (err as Error).message };
  }
  return availability;
}

/** Byte ranges as a short human list: `0x10000-0x2ffff (128 KiB), ...`. */
export function describeRanges(ranges: { byte_offset: number; bytes: number }[], max = 4): string {
  const total = ranges.reduce((n, r) => n + r.bytes, 0);
  const shown = ranges.slice(0, max).map((r) => `0x${r.byte_offset.toString(16)}-0x${(r.byte_offset + r.bytes - 1).toString(16)}`);
  const more = ranges.length > max ? `, and ${ranges.length - max} more ranges` : "";
  return `${total / 4096} pages (${(total / 1048576).toFixed(1)} MiB): ${shown.join(", ")}${more}`;
}
