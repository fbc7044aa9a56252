/**
 * SHA-256 off the calling thread. An image is hashed whole for its signature
 * (docs/image-format.md, SIGNATURE), and SHA-256 runs at about 1.5 GB/s: on
 * the thread that also writes (and encrypts) or reads the socket, it alone
 * caps a migration's stop-copy well below the link. Here the bytes go to a
 * hashing thread as they pass and the digest comes back when asked for:
 * hashing overlaps the transfer, and the result is the same SHA-256.
 *
 * Bytes in a SharedArrayBuffer (a guest's memory) are handed over as views,
 * not copied: the caller must not change them until the digest is taken (a
 * suspended guest's memory does not change). Other bytes are copied as they
 * are given, so the caller may reuse them at once (socket buffers).
 */
import { Worker } from "node:worker_threads";

/** Bytes at `offset` of the shared buffer the stream registered as `buffer`. */
export interface SharedSpan {
  buffer: number;
  offset: number;
  length: number;
}

/**
 * What a stream's owner sends the hashing thread. A shared buffer is posted
 * once per stream ("share") and named by number after: posting a view of a
 * guest's memory clones a handle to it each time, which costs far more
 * (about half a millisecond here) than hashing a small run.
 */
export type ToHashWorker =
  | { op: "share"; id: number; buffer: number; shared: SharedArrayBuffer }
  | { op: "update"; id: number; pieces: (Uint8Array | SharedSpan)[] }
  | { op: "digest" | "drop"; id: number };

/** What the hashing thread answers to a digest. */
export interface FromHashWorker {
  id: number;
  digest: Uint8Array;
}

/** An incremental SHA-256 whose digest is computed elsewhere and arrives asynchronously. */
export interface AsyncHash {
  /** Adds bytes, in order. */
  update(bytes: Uint8Array): void;
  /** The SHA-256 of everything added; the hash takes no more bytes afterwards. */
  digest(): Promise<Uint8Array>;
  /** Forgets the hash (its digest will not be asked for). */
  drop(): void;
}

// Two threads: the source and the destination of a move between two nodes of
// one process (tests, the benchmark) each get one.
const THREADS = 2;
// Copied pieces (section headers, CRCs, socket chunks) are gathered in buffers of this many bytes.
const BATCH_BYTES = 256 * 1024;
// A message goes once it covers this many bytes: each wakes the hashing
// thread, which on a busy machine costs more than hashing a small piece.
const MESSAGE_BYTES = 4 * 1024 * 1024;
const WORKER_URL = new URL("./_hash_worker.js", import.meta.url);

interface Pending {
  resolve: (digest: Uint8Array) => void;
  reject: (err: Error) => void;
}

/** One hashing thread and the digests it owes. */
class HashThread {
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  #failed: Error | null = null;

  constructor() {
    this.#worker = new Worker(WORKER_URL, { stdout: false, stderr: false });
    this.#worker.on("message", (reply: FromHashWorker) => {
      const pending = this.#pending.get(reply.id);
      this.#pending.delete(reply.id);
      if (this.#pending.size === 0) this.#worker.unref();
      pending?.resolve(reply.digest);
    });
    const fail = (err: Error): void => {
      this.#failed = err;
      for (const pending of this.#pending.values()) pending.reject(err);
      this.#pending.clear();
    };
    this.#worker.on("error", fail);
    this.#worker.on("exit", (code) => fail(new Error(`the hashing thread exited (code ${code})`)));
    // After the listeners: adding a "message" listener refs the worker's port again, and an idle
    // thread (one started ahead by warmHashThreads) must not keep its process alive.
    this.#worker.unref();
  }

  /** Whether the thread is gone (a new one is started in its place). */
  get failed(): boolean {
    return this.#failed !== null;
  }

  post(message: ToHashWorker): void {
    if (this.#failed !== null) return; // the digest will say so
    // Copied pieces share their batch buffers: each buffer is transferred once.
    const transfer = message.op === "update" ? [...new Set(message.pieces.flatMap((p) => (p instanceof Uint8Array ? [p.buffer as ArrayBuffer] : [])))] : [];
    this.#worker.postMessage(message, transfer);
  }

  digest(id: number): Promise<Uint8Array> {
    if (this.#failed !== null) return Promise.reject(this.#failed);
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      // While a digest is owed, the thread keeps the process alive.
      this.#worker.ref();
      this.post({ op: "digest", id });
    });
  }
}

const threads: (HashThread | null)[] = new Array<HashThread | null>(THREADS).fill(null);
let next_id = 1;

function thread(id: number): HashThread {
  const slot = id % THREADS;
  let t = threads[slot] ?? null;
  if (t === null || t.failed) {
    t = new HashThread();
    threads[slot] = t;
  }
  return t;
}

/**
 * Starts the hashing threads now, if they are not running: a thread's start
 * takes tens of milliseconds (more on a busy machine), which the first
 * migration that hashes on it would otherwise wait for, partly as downtime.
 * A node calls this when it starts. The threads never keep the process alive.
 */
export function warmHashThreads(): void {
  for (let slot = 0; slot < THREADS; slot += 1) thread(slot);
}

/** A SHA-256 computed on a hashing thread (see the file's comment). */
export function offThreadSha256(): AsyncHash {
  const id = next_id++;
  const owner = thread(id);
  // What the next message carries, in order, and how many bytes that is.
  let pieces: (Uint8Array | SharedSpan)[] = [];
  let pending_bytes = 0;
  // Copied bytes gather in one buffer, so a 4-byte CRC is not a buffer of its own; [start, fill) is not in `pieces` yet.
  let batch: Uint8Array | null = null;
  let start = 0;
  let fill = 0;
  // Shared bytes that follow each other in one buffer (a run arriving in socket-sized pieces) go as one span.
  let span: Uint8Array | null = null;
  // The shared buffers this stream has registered with the thread, by their number there.
  const shared = new Map<SharedArrayBuffer, number>();
  let done = false;
  const closeCopied = (): void => {
    if (batch !== null && fill > start) pieces.push(batch.subarray(start, fill));
    start = fill;
  };
  const closeSpan = (): void => {
    if (span === null) return;
    const buffer = span.buffer as SharedArrayBuffer;
    let number = shared.get(buffer);
    if (number === undefined) {
      number = shared.size;
      shared.set(buffer, number);
      owner.post({ op: "share", id, buffer: number, shared: buffer }); // before any message that names it
    }
    pieces.push({ buffer: number, offset: span.byteOffset, length: span.length });
    span = null;
  };
  const flush = (): void => {
    closeCopied();
    closeSpan();
    if (pieces.length > 0) owner.post({ op: "update", id, pieces });
    pieces = [];
    pending_bytes = 0;
    batch = null; // transferred with the message
    start = 0;
    fill = 0;
  };
  return {
    update(bytes) {
      if (done) throw new Error("AsyncHash.update() after digest() or drop()");
      if (bytes.length === 0) return;
      if (bytes.buffer instanceof SharedArrayBuffer) {
        closeCopied();
        if (span !== null && span.buffer === bytes.buffer && span.byteOffset + span.length === bytes.byteOffset) {
          span = new Uint8Array(bytes.buffer, span.byteOffset, span.length + bytes.length);
        } else {
          closeSpan();
          span = bytes;
        }
      } else {
        closeSpan();
        for (let at = 0; at < bytes.length; ) {
          if (batch === null || fill === BATCH_BYTES) {
            closeCopied();
            // Not zero-filled: every byte of it that is sent is written first.
            batch = new Uint8Array(Buffer.allocUnsafeSlow(BATCH_BYTES).buffer, 0, BATCH_BYTES);
            start = 0;
            fill = 0;
          }
          const n = Math.min(BATCH_BYTES - fill, bytes.length - at);
          batch.set(bytes.subarray(at, at + n), fill);
          fill += n;
          at += n;
        }
      }
      pending_bytes += bytes.length;
      if (pending_bytes >= MESSAGE_BYTES) flush();
    },
    digest() {
      if (done) return Promise.reject(new Error("AsyncHash.digest() called twice"));
      done = true;
      flush();
      return owner.digest(id);
    },
    drop() {
      if (done) return;
      done = true;
      pieces = [];
      batch = null;
      span = null;
      shared.clear();
      owner.post({ op: "drop", id });
    },
  };
}
