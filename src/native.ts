/**
 * The native addon (native/, built by `npm ci` through scripts/build-native.mjs):
 * loaded once, shared by the kernel tracker, post-copy's remote pages, the
 * node front's socket peek, the post-copy source's page sealer and the WASI
 * host's nanosecond file times.
 */
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** Bytes registered from a memory's base: the whole wasm32 reservation, so grown pages are covered too. */
export const REGISTERED_BYTES = 4 * 1024 * 1024 * 1024;

/** How the addon's copyOut reads: see {@link NativeAddon.copyOut}. */
export const CopyMode = { all: 0, kernel: 1, if_slow: 2 } as const;
/** One of {@link CopyMode}. */
export type CopyMode = (typeof CopyMode)[keyof typeof CopyMode];

/** What the addon exports. */
export interface NativeAddon {
  /**
   * MADV_POPULATE_WRITE of the view's first `bytes`; with `huge`, as transparent huge pages where the kernel has them.
   * One call to the kernel per huge page (2 MiB), so a thread that maps memory meanwhile waits for one at most; returns the calls made.
   */
  populate(view: Uint8Array, bytes: number, huge?: boolean): number;
  /** MADV_DONTNEED of the whole pages in the view's first `bytes`: given back to the kernel, reading as zeros after. */
  discard(view: Uint8Array, bytes: number): void;
  /**
   * Copies src to the start of dst: by memcpy, or through /proc/self/mem (the kernel's mapping of each page) when
   * memcpy's first 64 KiB was slow; by memcpy where /proc/self/mem cannot be read. `mode` ({@link CopyMode}): all
   * of it (the default), all through /proc/self/mem, or only when memcpy was slow (false: only the first 64 KiB
   * were copied, read src in place). True when all of src is in dst.
   */
  copyOut(src: Uint8Array, dst: Uint8Array, mode?: CopyMode): boolean;
  create(view: Uint8Array, registered_bytes: number): unknown;
  /** Pages written since the last scan, as [first, end) runs; re-armed unless `rearm` is false (default true). */
  scan(handle: unknown, size_bytes: number, rearm?: boolean): Uint32Array;
  close(handle: unknown): void;
  postcopyOpen(view: Uint8Array, registered_bytes: number, remote_bytes: number, chunk_bytes: number, on_event: (code: number) => void): unknown;
  postcopyDrop(handle: unknown, byte_offset: number, bytes: number): void;
  /** Grows the part that comes from the source, before the first attach. */
  postcopyResize(handle: unknown, remote_bytes: number): void;
  /** Writes whole pages inside `memory` (the registered memory as it is now) while the guest is stopped: those not there yet placed with UFFDIO_COPY, the others in place. */
  postcopyWrite(handle: unknown, memory: Uint8Array, byte_offset: number, data: Uint8Array): void;
  /** Placement of `bytes` timed three ways (native/place_bench.c): UFFDIO_COPY, UFFDIO_CONTINUE over a memfd, plain memcpy. */
  placeCompare(bytes: number): { copy_ms: number; continue_ms: number; continue_warm_ms: number; memcpy_ms: number };
  /** The guest runs: frees, on a thread of its own, the old pages its drops moved aside. */
  postcopySettle(handle: unknown): void;
  /** `keys`: 64 bytes, the key of records to the destination then of records to the source (docs/cluster.md, "Sealed records"). */
  postcopyAttach(handle: unknown, fd: number, keys?: Uint8Array, demand?: boolean): void;
  postcopyFail(handle: unknown): [number, number][];
  postcopyStats(handle: unknown): RemoteStatsNative;
  postcopyClose(handle: unknown): void;
  /** Bytes waiting on socket `fd`, left in place: empty if none yet, null if the peer closed. */
  peek(fd: number, max_bytes: number): Buffer | null;
  /** A duplicate of socket `fd` (close-on-exec, same open description): a link lane's worker writes there (absent in an addon built before lanes). */
  dupFd?(fd: number): number;
  /** futimens(fd) when `path` is null, else utimensat(path); a mode is 0 to keep the time, 1 to set it to `ns`. */
  setTimes(fd: number, path: string | null, follow: boolean, atime_mode: number, atime_ns: bigint, mtime_mode: number, mtime_ns: bigint): void;
  /** A sealer of page records (native/seal_napi.c): `key` 32 bytes, `direction` the nonce's first word. */
  sealerCreate(key: Uint8Array, direction: number): unknown;
  /** Seals `head` then `body` as one record into `out` (not overlapping them); the record's bytes. */
  sealerSeal(handle: unknown, head: Uint8Array, body: Uint8Array | null, out: Uint8Array): number;
  /** Wipes and frees the sealer's key schedule; the handle is dead after. */
  sealerFree(handle: unknown): void;
  /**
   * Seals `parts` (1 to 6) as one record and writes all of it to socket `fd`, waiting at most `wait_ms` for room: 0,
   * or a positive errno (EAGAIN: no room in time), after which the stream may hold part of the record (absent in an
   * addon built before lanes).
   */
  sealerSend?(handle: unknown, fd: number, parts: Uint8Array[], wait_ms: number): number;
  /** An opener of sealed records in pieces (native/seal_napi.c; stop-copy's sealed BULK connection): `key` 32 bytes, `direction` the nonce's first word. */
  openerCreate?(key: Uint8Array, direction: number): unknown;
  /** Begins the next record with its 4 head bytes (the additional data). */
  openerBegin?(handle: unknown, head: Uint8Array): void;
  /** Decrypts `input` into `output` (as long; the same bytes or apart). Nothing is authentic before openerFinish says so. */
  openerUpdate?(handle: unknown, input: Uint8Array, output: Uint8Array): void;
  /** Checks the record's tag: true when authentic, and only then is its number spent. */
  openerFinish?(handle: unknown, tag: Uint8Array): boolean;
  /** Wipes and frees the opener's key schedule; the handle is dead after. */
  openerFree?(handle: unknown): void;
  /**
   * Stop-copy's record stream (native/bulk_stream.c): a thread writes every
   * non-zero page of `memory` as records to a duplicate of socket `fd`
   * (sealed: AES-256-GCM; else GMAC-tagged cleartext) and ends it; `done` is
   * called on this thread.
   */
  bulkSend?(fd: number, memory: Uint8Array, key: Uint8Array, sealed: boolean, done: (err: Error | null, sent: NativeBulkSent | null) => void): unknown;
  /** Stops a send between records (and a write that waits): `done` then says `stopped`. */
  bulkSendStop?(handle: unknown): void;
  /** A receiver of that stream on a duplicate of socket `fd`; runs from bulkRecvRun. */
  bulkRecvOpen?(fd: number, key: Uint8Array, sealed: boolean, memory_bytes_max: number): unknown;
  /** A thread reads records into `memory` until the stream ends, fails, is stopped, or needs more memory (`grow`: run again with a larger view). */
  bulkRecvRun?(handle: unknown, memory: Uint8Array, done: (run: NativeBulkRun) => void): void;
  /** Stops the receiving thread (its run ends `stopped`). */
  bulkRecvStop?(handle: unknown): void;
  /** Frees an idle receiver and closes its socket. */
  bulkRecvClose?(handle: unknown): void;
}

/** Counters of a native record stream. */
export interface NativeBulkCounts {
  records: number;
  pages: number;
  /** Bytes on the connection. */
  bytes: number;
  /** writev / recv / shutdown calls made. */
  syscalls: number;
  /** SHA-256 of the records' tags in order, once the stream is whole (null when empty or unfinished). */
  tags_sha256: Buffer | null;
}

/** What a native send did. */
export interface NativeBulkSent extends NativeBulkCounts {
  stopped: boolean;
}

/** How a native receiver's run ended. */
export interface NativeBulkRun extends NativeBulkCounts {
  kind: "end" | "grow" | "error" | "stopped";
  need_bytes: number;
  code?: string;
  message?: string;
}

/** Counters of a post-copy session, as the addon reports them (see remote.ts). */
export interface RemoteStatsNative {
  chunks: number;
  present: number;
  faults: number;
  demand_chunks: number;
  demand_served: number;
  pushed_chunks: number;
  zero_chunks: number;
  bytes_in: number;
  attaches: number;
  complete_ms: number;
  /** Chunks placed from the demand channel. */
  preempt_chunks: number;
}

let loaded: { addon: NativeAddon } | { reason: string } | undefined;

/** Where the built addon is (a thread that cannot import this module, such as an eval'd worker, requires it from here). */
export const NATIVE_ADDON_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "native", "build", "Release", "ferry_uffd.node");

/** The addon, or why it cannot be had. */
export function nativeAddon(): { addon: NativeAddon } | { reason: string } {
  if (loaded !== undefined) return loaded;
  try {
    loaded = { addon: createRequire(import.meta.url)(NATIVE_ADDON_FILE) as NativeAddon };
  } catch (err: unknown) {
    loaded = { reason: `the native addon is not built (${(err as Error).message.split("\n")[0]}); run npm run build:native` };
  }
  return loaded;
}
