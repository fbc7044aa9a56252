/**
 * Stop-copy's record stream in native threads (docs/cluster.md, "Sealed
 * BULK"; native/bulk_stream.c): the source's thread writes every non-zero
 * page of the suspended guest straight from its memory to the record
 * connection, the destination's thread reads that connection itself and
 * puts the pages straight into the standby's memory. No JavaScript thread
 * touches a page, and the receive overlaps the send.
 *
 * Between nodes with TLS the records are sealed (AES-256-GCM); between
 * nodes without they are the same records in the clear, tagged with GMAC
 * (`gmac`): the tag covers every byte, and the image's signed META names
 * the SHA-256 of the tags in order (`bulk_tags_sha256`), so a changed,
 * dropped, replayed or reordered record is refused either way.
 */
import type { Duplex } from "node:stream";
import { TLSSocket } from "node:tls";
import { knownCode } from "../error_codes.js";
import { FerryError } from "../errors.js";
import { nativeAddon, type NativeAddon, type NativeBulkRun, type NativeBulkSent } from "../native.js";
import type { SealedPlace } from "./_sealed_bulk.js";

/** How the records of a stream are protected: sealed (nodes with TLS), or tagged in the clear (nodes without). */
export type BulkCipher = "aes-256-gcm" | "gmac";

/** What the native stream took, as counted by its thread. */
export interface NativeBulkSendResult {
  pages: number;
  records: number;
  /** Bytes on the record connection. */
  bytes: number;
  /** System calls the sending thread made (writev, shutdown). */
  syscalls: number;
  /** SHA-256 of the records' tags, hex; null when there was no record. */
  tags_sha256: string | null;
}

type BulkAddon = Required<Pick<NativeAddon, "bulkSend" | "bulkSendStop" | "bulkRecvOpen" | "bulkRecvRun" | "bulkRecvStop" | "bulkRecvClose">>;

/** The addon's record stream, or null where it is not built (or predates it). */
function bulkAddon(): BulkAddon | null {
  const n = nativeAddon();
  if (!("addon" in n) || typeof n.addon.bulkSend !== "function" || typeof n.addon.bulkRecvRun !== "function") return null;
  return n.addon as BulkAddon;
}

/** Whether this node can send and receive the record stream natively. */
export function nativeBulkAvailable(): boolean {
  return bulkAddon() !== null;
}

/** The socket's file descriptor, for a thread to take over; a TLS socket has none to give. */
function socketFd(socket: Duplex): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (socket instanceof TLSSocket || typeof fd !== "number" || fd < 0) {
    throw new FerryError("ERR_MIGRATION_FAILED", "the record connection must be a plain TCP socket with a file descriptor to hand over");
  }
  return fd;
}

/**
 * Sends every non-zero page of `memory` as records on `socket` from a native
 * thread, and ends the stream. The socket is handed over (destroyed here at
 * once; the thread writes its own duplicate). The memory must not change
 * until this resolves (the process is suspended). Resolves null once
 * `signal` aborted: the thread is told at once (no timer polls for it) and
 * stops between records, or in the write it is in.
 */
export async function sendNativeBulk(socket: Duplex, memory: Uint8Array, key: Uint8Array, cipher: BulkCipher, signal?: AbortSignal): Promise<NativeBulkSendResult | null> {
  const addon = bulkAddon();
  if (addon === null) throw new FerryError("ERR_MIGRATION_FAILED", "the native record stream is not built (run npm run build:native)");
  let handle: unknown;
  const sent = new Promise<NativeBulkSent>((resolve, reject) => {
    try {
      socket.pause();
      handle = addon.bulkSend(socketFd(socket), memory, key, cipher === "aes-256-gcm", (err, result) => (err !== null ? reject(err) : resolve(result as NativeBulkSent)));
    } finally {
      // The thread holds its own duplicate of the socket.
      socket.destroy();
    }
  });
  const stop = (): void => {
    // A handle whose thread is done ignores it.
    if (handle !== undefined) addon.bulkSendStop(handle);
  };
  if (signal?.aborted === true) stop();
  signal?.addEventListener("abort", stop, { once: true });
  let result: NativeBulkSent;
  try {
    result = await sent;
  } catch (err: unknown) {
    const e = err as Error & { code?: string };
    throw new FerryError(e.code === "ERR_CONNECTION_CLOSED" ? "ERR_CONNECTION_CLOSED" : "ERR_MIGRATION_FAILED", `the record stream failed: ${e.message}`, { cause: err });
  } finally {
    signal?.removeEventListener("abort", stop);
  }
  if (result.stopped || signal?.aborted === true) return null;
  return {
    pages: result.pages,
    records: result.records,
    bytes: result.bytes,
    syscalls: result.syscalls,
    tags_sha256: result.tags_sha256 === null ? null : result.tags_sha256.toString("hex"),
  };
}

/** What a native receiver took, as counted by its thread. */
export interface NativeBulkReceived {
  records: number;
  pages: number;
  bytes: number;
  /** recv calls the receiving thread made. */
  syscalls: number;
}

/**
 * The destination's side: a native thread reads the record connection and
 * places each run straight into memory (`place`, which grows the standby
 * when a run lies past its size). Nothing it placed is trusted before the
 * image that vouches for the tags has been checked (the standby runs only
 * after). Same surface as SealedBulkReceiver.
 */
export class NativeBulkReceiver {
  readonly #addon: BulkAddon;
  readonly #key: Uint8Array;
  readonly #cipher: BulkCipher;
  readonly #place: SealedPlace;
  readonly #memory_bytes_max: number;
  readonly #initial_bytes: number;
  #handle: unknown = null;
  #running = false;
  #closed = false;
  /** Settles when the stream ended (the run's last outcome). */
  #outcome: Promise<NativeBulkRun>;
  #settle!: (run: NativeBulkRun) => void;
  #received: NativeBulkReceived = { records: 0, pages: 0, bytes: 0, syscalls: 0 };
  #grows = 0;

  /** `initial_bytes`: the standby's size now (its memory is viewed that far; a run past it grows it). */
  constructor(key: Uint8Array, cipher: BulkCipher, place: SealedPlace, memory_bytes_max: number, initial_bytes: number) {
    const addon = bulkAddon();
    if (addon === null) throw new FerryError("ERR_MIGRATION_FAILED", "the native record stream is not built (run npm run build:native)");
    this.#addon = addon;
    // A copy: the door wipes its key once a connection took it, which is before the thread starts. Wiped here once the thread has its own.
    this.#key = Uint8Array.from(key);
    this.#cipher = cipher;
    this.#place = place;
    this.#memory_bytes_max = memory_bytes_max;
    this.#initial_bytes = initial_bytes;
    this.#outcome = new Promise((resolve) => (this.#settle = resolve));
  }

  /** Pages placed so far (of records whose tags passed). */
  get pages(): number {
    return this.#received.pages;
  }

  /**
   * How often the thread stopped for the memory to grow (a run lay past it):
   * each is a hop to the node's thread and back. None when the memory did not
   * grow since the offer (the standby was grown to its size before READY).
   */
  get grows(): number {
    return this.#grows;
  }

  /** What the thread counted. */
  get received(): NativeBulkReceived {
    return { ...this.#received };
  }

  /** Hands the connection to a native thread (the socket object is destroyed; the thread reads a duplicate). */
  attach(socket: Duplex): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    try {
      socket.pause();
      this.#handle = this.#addon.bulkRecvOpen(socketFd(socket), this.#key, this.#cipher === "aes-256-gcm", this.#memory_bytes_max);
    } catch (err: unknown) {
      this.#finish({ kind: "error", code: "ERR_MIGRATION_FAILED", message: (err as Error).message, need_bytes: 0, records: 0, pages: 0, bytes: 0, syscalls: 0, tags_sha256: null });
      return;
    } finally {
      this.#key.fill(0);
      socket.destroy();
    }
    this.#run(this.#place(0, this.#initial_bytes));
  }

  #run(view: Uint8Array): void {
    this.#running = true;
    this.#addon.bulkRecvRun(this.#handle, view, (run) => {
      this.#running = false;
      this.#received = { records: run.records, pages: run.pages, bytes: run.bytes, syscalls: run.syscalls };
      if (run.kind === "grow" && !this.#closed) {
        let grown: Uint8Array;
        this.#grows += 1;
        try {
          // Reserved against the node's quota and the process's cap first (the landing's growth).
          grown = this.#place(0, run.need_bytes);
        } catch (err: unknown) {
          const e = err as Error & { code?: string };
          this.#finish({ ...run, kind: "error", code: knownCode(e.code, "ERR_MIGRATION_PROTOCOL"), message: e.message });
          return;
        }
        this.#run(grown);
        return;
      }
      this.#finish(run.kind === "grow" ? { ...run, kind: "stopped" } : run);
    });
  }

  #finish(run: NativeBulkRun): void {
    if (this.#handle !== null && !this.#running) {
      this.#addon.bulkRecvClose(this.#handle);
      this.#handle = null;
    }
    this.#settle(run);
  }

  /**
   * Resolves with the SHA-256 of the tags (hex) once the stream ended after
   * exactly `records` records: nothing more is written to memory after.
   * Rejects if it failed, or carried another count.
   */
  async opened(records: number): Promise<string | null> {
    const run = await this.#outcome;
    // The thread's codes are the registry's; one it should not have made is a protocol fault all the same.
    if (run.kind === "error") throw new FerryError(knownCode(run.code, "ERR_MIGRATION_PROTOCOL"), `the record connection: ${run.message ?? "failed"}`);
    if (run.kind === "stopped") throw new FerryError("ERR_CONNECTION_CLOSED", "the record connection was closed here");
    if (run.records !== records) {
      throw new FerryError(run.records > records ? "ERR_MIGRATION_PROTOCOL" : "ERR_CONNECTION_CLOSED", `the record connection carried ${run.records} records, not the ${records} announced`);
    }
    return run.tags_sha256 === null ? null : run.tags_sha256.toString("hex");
  }

  /** Stops the thread (a run in progress ends `stopped`) and closes the connection. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#key.fill(0);
    if (this.#handle === null) {
      this.#settle({ kind: "stopped", need_bytes: 0, records: 0, pages: 0, bytes: 0, syscalls: 0, tags_sha256: null });
      return;
    }
    if (this.#running) this.#addon.bulkRecvStop(this.#handle);
    else this.#finish({ kind: "stopped", need_bytes: 0, ...this.#received, tags_sha256: null });
  }
}
