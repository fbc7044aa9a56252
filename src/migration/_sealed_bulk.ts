/**
 * Stop-copy's BULK runs between nodes with TLS (docs/cluster.md, "Sealed
 * BULK"): not through the TLS stream, whose encryption, copies and small
 * reads on the node's thread cost more than half of loopback's throughput,
 * but on a second, plain TCP connection whose every record is sealed with
 * AES-256-GCM under a key that only this migration's two nodes hold (it
 * travels in READY, inside mutual TLS). The source seals each run straight
 * from the suspended guest's memory (native/seal_napi.c, into a few buffers
 * it reuses); the destination opens each record into the standby's memory.
 *
 * A record is the page channel's sealed record (docs/cluster.md, "Sealed
 * records"), direction 1, numbered from 0 on this connection; its plaintext
 * is one BULK run (`_bulk.ts`). A changed, dropped, replayed or reordered
 * record fails its tag (ERR_PAGE_RECORD_AUTH). The image's signed META names
 * the SHA-256 of all the records' tags in order (`bulk_tags_sha256`), and
 * the TLS connection says how many records there were (BULK_SEALED): a
 * stream cut short, or records from another migration, cannot pass.
 */
import { createDecipheriv, createHash, createSecretKey, type DecipherGCM } from "node:crypto";
import type { Duplex } from "node:stream";
import { FerryError } from "../errors.js";
import { yieldIfDue } from "../transport/mod.js";
import {
  nativeRecordSealer,
  RECORD_BYTES_MAX,
  RECORD_HEAD_BYTES,
  RECORD_TAG_BYTES,
  RECORD_WIRE_BYTES_MAX,
  recordNonce,
  RecordDirection,
  RecordSealer,
} from "../memory/mod.js";
import { nativeAddon, type NativeAddon } from "../native.js";
import { BULK_RUN_HEAD_BYTES, checkRun, pageRunsInTurns } from "./_bulk.js";
import { WIRE_PAGE_BYTES } from "./_wire.js";

/** The META member that carries the SHA-256 of the sealed records' tags (hex). */
export const BULK_TAGS_META_KEY = "bulk_tags_sha256";

/**
 * Record buffers the source seals into and reuses once the socket has taken
 * them: one being sealed while others are written, so sealing and the
 * kernel's copy overlap; more would only hold more memory.
 */
const SEAL_BUFFERS = 4;
/** Where the pages of a record whose run is refused are decrypted to, piece by piece, only so that its tag can be checked. */
const SCRATCH_BYTES = 64 * 1024;
/** Bytes the JavaScript sealer (where the addon is not built) may have queued before it waits. */
const JS_SEND_HIGH_WATER_BYTES = 4 * 1024 * 1024;

/** What sending the sealed stream took. */
export interface SealedBulkSent {
  pages: number;
  records: number;
  /** Bytes on the sealed connection. */
  bytes: number;
  /** SHA-256 of the records' tags, hex; null when there was no record. */
  tags_sha256: string | null;
}

/**
 * Seals every non-zero page of `memory` as records on `socket` (one run a
 * record) and ends it. The memory must not change until this resolves (the
 * process is suspended). Stops early once `stop()` says so.
 */
export async function sendSealedBulk(socket: Duplex, memory: Uint8Array, key: Uint8Array, stop: () => boolean = () => false): Promise<SealedBulkSent | null> {
  const native = nativeRecordSealer(key, RecordDirection.to_destination);
  const js = native === null ? new RecordSealer(key, RecordDirection.to_destination) : null;
  const tags = createHash("sha256");
  let failure: Error | null = null;
  const onError = (err: Error): void => {
    failure ??= err;
    wake();
  };
  const onClose = (): void => onError(new FerryError("ERR_CONNECTION_CLOSED", "the sealed BULK connection closed before every record was sent"));
  socket.on("error", onError);
  socket.on("close", onClose);
  const free: Buffer[] = native === null ? [] : Array.from({ length: SEAL_BUFFERS }, () => Buffer.allocUnsafeSlow(RECORD_WIRE_BYTES_MAX));
  let waiting: (() => void) | null = null;
  const wake = (): void => {
    const w = waiting;
    waiting = null;
    w?.();
  };
  const until = async (ready: () => boolean): Promise<void> => {
    while (!ready() && failure === null) await new Promise<void>((resolve) => (waiting = resolve));
    if (failure !== null) throw failure;
  };
  let pages = 0;
  let records = 0;
  let bytes = 0;
  try {
    for await (const run of pageRunsInTurns(memory)) {
      const head = Buffer.allocUnsafe(BULK_RUN_HEAD_BYTES);
      const count = run.data.length / WIRE_PAGE_BYTES;
      head.writeUInt32LE(run.first, 0);
      head.writeUInt32LE(count, 4);
      if (native !== null) {
        await until(() => free.length > 0);
        const out = free.pop() as Buffer;
        const n = native.sealInto(head, run.data, out);
        const record = out.subarray(0, n);
        tags.update(record.subarray(n - RECORD_TAG_BYTES));
        socket.write(record, (err) => {
          if (err !== null && err !== undefined) return;
          free.push(out);
          wake();
        });
        bytes += n;
      } else {
        const parts = (js as RecordSealer).seal([head, run.data]);
        tags.update(parts.at(-1) as Buffer);
        socket.cork();
        for (const part of parts) socket.write(part);
        socket.uncork();
        bytes += parts.reduce((s, p) => s + p.length, 0);
        await until(() => socket.writableLength < JS_SEND_HIGH_WATER_BYTES);
      }
      records += 1;
      pages += count;
      if (stop()) return null;
      // On a link that takes every write at once (the records' plain TCP, on loopback) nothing above waits for a
      // turn of the event loop: this thread's other work (its other processes' relays and links, its API) would wait
      // for the whole memory.
      await yieldIfDue();
    }
    if (failure !== null) throw failure;
    // Every record handed on (to the kernel), so the memory may change again once this resolves; the close that follows is no failure.
    socket.off("close", onClose);
    await new Promise<void>((resolve, reject) => {
      socket.end((err?: Error | null) => (err === null || err === undefined ? resolve() : reject(err)));
    });
  } finally {
    socket.off("error", onError);
    socket.off("close", onClose);
    native?.close();
  }
  return { pages, records, bytes, tags_sha256: records === 0 ? null : tags.digest("hex") };
}

/** Decrypts one record at a time, in pieces: natively (into guest memory directly) where the addon has it, else with node:crypto. */
interface PieceOpener {
  begin(head: Uint8Array, seq: number): void;
  /** Decrypts `input` into `output` (as long). */
  update(input: Uint8Array, output: Uint8Array): void;
  /** Whether the record just decrypted is authentic. */
  finish(tag: Uint8Array): boolean;
  close(): void;
}

function pieceOpener(key: Uint8Array, native: boolean): PieceOpener {
  const n = nativeAddon();
  if (native && "addon" in n && n.addon.openerCreate !== undefined) {
    const addon = n.addon as Required<NativeAddon>;
    let handle: unknown = addon.openerCreate(key, RecordDirection.to_destination);
    return {
      begin: (head) => addon.openerBegin(handle, head),
      update: (input, output) => addon.openerUpdate(handle, input, output),
      finish: (tag) => addon.openerFinish(handle, tag),
      close: () => {
        if (handle !== null) addon.openerFree(handle);
        handle = null;
      },
    };
  }
  // Where the addon is not built (or predates the opener): node:crypto, which returns each piece in new memory, copied into place.
  const secret = createSecretKey(Buffer.from(key));
  let decipher: DecipherGCM | null = null;
  return {
    begin(head, seq) {
      decipher = createDecipheriv("aes-256-gcm", secret, recordNonce(RecordDirection.to_destination, seq), { authTagLength: RECORD_TAG_BYTES });
      decipher.setAAD(head);
    },
    update: (input, output) => output.set((decipher as DecipherGCM).update(input)),
    finish(tag) {
      const d = decipher as DecipherGCM;
      decipher = null;
      d.setAuthTag(tag);
      try {
        d.final();
        return true;
      } catch {
        // The tag did not verify: the caller reports it as ERR_PAGE_RECORD_AUTH.
        return false;
      }
    },
    close: () => void (decipher = null),
  };
}

/** Where the receiver puts a run: a writable view of `length` bytes of memory at `byte_offset` (grown as needed). */
export type SealedPlace = (byte_offset: number, length: number) => Uint8Array;

/**
 * Opens the sealed records as their bytes arrive and places each run's
 * pages in memory as they are decrypted; a record's tag is checked when its
 * last byte is in. Nothing it placed is trusted before then, nor anything
 * at all before the image that vouches for the tags has been checked (the
 * standby runs only after).
 */
export class SealedBulkReceiver {
  readonly #opener: PieceOpener;
  readonly #place: SealedPlace;
  readonly #memory_bytes_max: number;
  readonly #tags = createHash("sha256");
  /** Where in the current record: its length field, its plaintext (run header, then pages), its tag. */
  #stage: "head" | "body" | "tag" = "head";
  readonly #head = Buffer.alloc(RECORD_HEAD_BYTES);
  readonly #tag = Buffer.alloc(RECORD_TAG_BYTES);
  readonly #run_head = Buffer.alloc(BULK_RUN_HEAD_BYTES);
  #fill = 0;
  #body_left = 0;
  #view: Uint8Array | null = null;
  #view_at = 0;
  #next_page_min = 0;
  #opened = 0;
  #pages = 0;
  #failure: Error | null = null;
  #ended = false;
  /** Why the current record's run is refused, once its tag has passed (until then it may just not be authentic). */
  #bad: Error | null = null;
  readonly #scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
  #socket: Duplex | null = null;
  #waiter: { records: number; resolve: () => void; reject: (err: Error) => void } | null = null;

  /** `native: false` opens with node:crypto even where the addon could (tests of both ways). */
  constructor(key: Uint8Array, place: SealedPlace, memory_bytes_max: number, options: { native?: boolean } = {}) {
    this.#opener = pieceOpener(key, options.native ?? true);
    this.#place = place;
    this.#memory_bytes_max = memory_bytes_max;
  }

  /** Pages placed so far (of records whose tags passed). */
  get pages(): number {
    return this.#pages;
  }

  /** Reads the connection: its bytes go through {@link push}; it may end only between records. */
  attach(socket: Duplex): void {
    this.#socket = socket;
    socket.on("data", (chunk: Buffer) => {
      if (this.#failure !== null) return;
      try {
        this.push(chunk);
      } catch (err: unknown) {
        this.#fail(err instanceof Error ? err : new Error(String(err)));
      }
    });
    const ended = (): void => {
      if (this.#stage !== "head" || this.#fill !== 0) this.#fail(new FerryError("ERR_CONNECTION_CLOSED", `the sealed BULK connection ended inside record ${this.#opened}`));
      this.#ended = true;
      this.#settle();
    };
    socket.on("end", ended);
    socket.on("close", ended);
    socket.on("error", (err) => this.#fail(err));
    socket.resume();
  }

  /** Takes the next bytes of the connection. Throws ERR_PAGE_RECORD_AUTH, ERR_PAGE_RECORD_LIMIT or ERR_MIGRATION_PROTOCOL. */
  push(chunk: Uint8Array): void {
    if (this.#failure !== null) throw this.#failure;
    let at = 0;
    while (at < chunk.length) {
      if (this.#stage === "head") {
        const take = Math.min(RECORD_HEAD_BYTES - this.#fill, chunk.length - at);
        this.#head.set(chunk.subarray(at, at + take), this.#fill);
        this.#fill += take;
        at += take;
        if (this.#fill === RECORD_HEAD_BYTES) this.#begin();
      } else if (this.#stage === "body") {
        const take = Math.min(this.#body_left, chunk.length - at);
        this.#cipher(chunk.subarray(at, at + take));
        this.#body_left -= take;
        at += take;
        if (this.#body_left === 0) {
          this.#stage = "tag";
          this.#fill = 0;
        }
      } else {
        const take = Math.min(RECORD_TAG_BYTES - this.#fill, chunk.length - at);
        this.#tag.set(chunk.subarray(at, at + take), this.#fill);
        this.#fill += take;
        at += take;
        if (this.#fill === RECORD_TAG_BYTES) this.#end();
      }
    }
  }

  /**
   * Resolves with the SHA-256 of the tags (hex) once exactly `records`
   * records have been opened, and closes the connection: nothing more is
   * written to memory after. Rejects if the stream fails or ends first.
   */
  opened(records: number): Promise<string | null> {
    return new Promise((resolve, reject) => {
      this.#waiter = { records, resolve: () => resolve(records === 0 ? null : this.#tags.digest("hex")), reject };
      this.#settle();
    });
  }

  /** Stops reading and writing: the connection is dropped, and whatever comes after is ignored. */
  close(): void {
    this.#fail(new FerryError("ERR_CONNECTION_CLOSED", "the sealed BULK connection was closed here"));
  }

  #fail(err: Error): void {
    if (this.#failure !== null) return;
    this.#failure = err;
    this.#socket?.destroy();
    this.#opener.close();
    this.#settle();
  }

  /** Answers the waiter, if what it waits for is decided. */
  #settle(): void {
    const w = this.#waiter;
    if (w === null) return;
    const boundary = this.#stage === "head" && this.#fill === 0;
    if (this.#failure !== null) w.reject(this.#failure);
    else if (this.#opened > w.records) w.reject(new FerryError("ERR_MIGRATION_PROTOCOL", `the sealed BULK connection carried more than the ${w.records} records announced`));
    else if (this.#opened === w.records && boundary) {
      this.#waiter = null;
      w.resolve();
      this.close();
      return;
    } else if (this.#ended) w.reject(new FerryError("ERR_CONNECTION_CLOSED", `the sealed BULK connection ended after ${this.#opened} of ${w.records} records`));
    else return;
    this.#waiter = null;
  }

  #begin(): void {
    const length = this.#head.readUInt32LE(0);
    if (length < BULK_RUN_HEAD_BYTES + WIRE_PAGE_BYTES || length > RECORD_BYTES_MAX || (length - BULK_RUN_HEAD_BYTES) % WIRE_PAGE_BYTES !== 0) {
      throw new FerryError("ERR_PAGE_RECORD_LIMIT", `a sealed BULK record says it holds ${length} bytes: not one run of whole pages of at most ${RECORD_BYTES_MAX} bytes`);
    }
    this.#opener.begin(this.#head, this.#opened);
    this.#body_left = length;
    this.#view = null;
    this.#fill = 0;
    this.#stage = "body";
  }

  /** Ciphertext of the current record: its run header first (decrypted aside, then checked), then the pages, decrypted into place. */
  #cipher(bytes: Uint8Array): void {
    let at = 0;
    if (this.#view === null) {
      const take = Math.min(BULK_RUN_HEAD_BYTES - this.#fill, bytes.length);
      this.#opener.update(bytes.subarray(0, take), this.#run_head.subarray(this.#fill, this.#fill + take));
      this.#fill += take;
      at = take;
      if (this.#fill < BULK_RUN_HEAD_BYTES) return;
      const first = this.#run_head.readUInt32LE(0);
      const count = this.#run_head.readUInt32LE(4);
      try {
        if (BULK_RUN_HEAD_BYTES + count * WIRE_PAGE_BYTES !== this.#head.readUInt32LE(0)) {
          throw new FerryError("ERR_MIGRATION_PROTOCOL", `a sealed BULK record of ${this.#head.readUInt32LE(0)} bytes holds a run of ${count} pages`);
        }
        checkRun(first, count, this.#next_page_min, this.#memory_bytes_max);
        this.#next_page_min = first + count;
        this.#view = this.#place(first * WIRE_PAGE_BYTES, count * WIRE_PAGE_BYTES);
      } catch (err: unknown) {
        // Not yet authenticated, so maybe not the source's: the tag decides which error it is. Its pages go nowhere meanwhile.
        this.#bad = err instanceof Error ? err : new Error(String(err));
        this.#view = new Uint8Array(0);
      }
      this.#view_at = 0;
    }
    if (this.#bad !== null) {
      for (let piece = at; piece < bytes.length; piece += SCRATCH_BYTES) {
        const end = Math.min(bytes.length, piece + SCRATCH_BYTES);
        this.#opener.update(bytes.subarray(piece, end), this.#scratch.subarray(0, end - piece));
      }
      return;
    }
    if (at < bytes.length) {
      const n = bytes.length - at;
      this.#opener.update(bytes.subarray(at), this.#view.subarray(this.#view_at, this.#view_at + n));
      this.#view_at += n;
    }
  }

  #end(): void {
    if (!this.#opener.finish(this.#tag)) {
      throw new FerryError("ERR_PAGE_RECORD_AUTH", `sealed BULK record ${this.#opened} is not authentic (changed, replayed, reordered, or under another key): the migration fails`);
    }
    // Authentic, and still wrong: the source itself sent a bad run.
    if (this.#bad !== null) throw this.#bad;
    this.#tags.update(this.#tag);
    this.#pages += this.#run_head.readUInt32LE(4);
    this.#opened += 1;
    this.#stage = "head";
    this.#fill = 0;
    this.#settle();
  }
}
