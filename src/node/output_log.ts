/**
 * A process's output as its home node keeps it: one append-only file per
 * stream, addressed by byte offset. Offsets make delivery exactly-once: a
 * client asks for what it has not seen, and a relay that repeats itself (after
 * a migration or a retry) is trimmed to what is new.
 *
 * The files outlive the node: a log is opened where it is, never truncated,
 * so a node that restarts on the same data directory keeps every byte a
 * process wrote, and appends after it. An ended log holds no descriptors.
 *
 * Output commit (docs/checkpoints.md): the log of a process with periodic
 * checkpoints is *held*: readers see a stream only up to what its last stored
 * checkpoint covers, so a restart from that checkpoint never shows output
 * that is then written again, perhaps differently. What lies past it is kept
 * unreleased until a checkpoint covers it, or cut off (`rewind`) when the
 * process restarts from the checkpoint; never anything released.
 */
import { EventEmitter } from "node:events";
import fs from "node:fs";
import path from "node:path";
import { logger } from "../log/mod.js";

/** The two output streams. */
export type StreamName = "stdout" | "stderr";

/** A piece of output with its place in the stream. */
export interface OutputChunk {
  stream: StreamName;
  offset: number;
  data: Uint8Array;
}

/** Largest piece handed to a reader at once. */
const READ_CHUNK_BYTES = 64 * 1024;

/** Read and write, created if missing, never truncated. */
const OPEN_FLAGS = fs.constants.O_RDWR | fs.constants.O_CREAT;

/** Output of one process. Emits "chunk" (OutputChunk) and "end". */
export class OutputLog extends EventEmitter {
  readonly #paths: Record<StreamName, string>;
  /** Open while output may still come; null once ended (reads open the file for themselves). */
  #fds: Record<StreamName, number> | null;
  readonly #sizes: Record<StreamName, number>;
  #ended = false;
  /** Held (output commit): the offsets readers may see up to; null: they see everything written. */
  #released: Record<StreamName, number> | null = null;

  /** The log of `pid` in `dir`, with what it already holds; `ended`: no more output will come (a restored record of an ended process). */
  constructor(dir: string, pid: string, options: { ended?: boolean } = {}) {
    super();
    fs.mkdirSync(dir, { recursive: true });
    this.setMaxListeners(0);
    this.#paths = { stdout: path.join(dir, `${pid}.stdout`), stderr: path.join(dir, `${pid}.stderr`) };
    if (options.ended === true) {
      this.#fds = null;
      this.#ended = true;
      this.#sizes = { stdout: sizeOf(this.#paths.stdout), stderr: sizeOf(this.#paths.stderr) };
      return;
    }
    const stdout = fs.openSync(this.#paths.stdout, OPEN_FLAGS, 0o600);
    let stderr: number;
    try {
      stderr = fs.openSync(this.#paths.stderr, OPEN_FLAGS, 0o600);
    } catch (err: unknown) {
      fs.closeSync(stdout);
      throw err;
    }
    this.#fds = { stdout, stderr };
    this.#sizes = { stdout: fs.fstatSync(stdout).size, stderr: fs.fstatSync(stderr).size };
  }

  /** Bytes in a stream so far. */
  size(stream: StreamName): number {
    return this.#sizes[stream];
  }

  /** Whether the process has ended (no more output will come). */
  get ended(): boolean {
    return this.#ended;
  }

  /**
   * Appends what of `chunk` is new. Returns false if the chunk starts past the
   * end (a gap: an earlier piece is still missing) and nothing was taken.
   */
  append(chunk: OutputChunk): boolean {
    if (!Number.isSafeInteger(chunk.offset) || chunk.offset < 0) throw new RangeError(`output offset ${chunk.offset} is not a whole number of bytes`);
    const size = this.#sizes[chunk.stream];
    if (chunk.offset > size) return false;
    const fresh = chunk.data.subarray(size - chunk.offset);
    if (fresh.length === 0) return true;
    if (this.#fds === null) {
      // The runner flushes all output before it reports an end, but a killed
      // process's worker may deliver its last write after the kill has ended
      // the log (or the node is stopping): those bytes raced the kill and are
      // dropped. Throwing here took the whole node down.
      logger().warn({ stream: chunk.stream, offset: chunk.offset, bytes: fresh.length }, "output arrived after its log was closed; dropped");
      return true;
    }
    fs.writeSync(this.#fds[chunk.stream], fresh, 0, fresh.length, size);
    this.#sizes[chunk.stream] = size + fresh.length;
    // Held: only what a stored checkpoint covers already goes to readers now (commit releases the rest).
    const visible = this.#released === null ? fresh : fresh.subarray(0, Math.max(0, this.#released[chunk.stream] - size));
    if (visible.length > 0) this.emit("chunk", { stream: chunk.stream, offset: size, data: visible } satisfies OutputChunk);
    return true;
  }

  /** Bytes of a stream readers may see: all of it, or, held, what the last stored checkpoint covers. */
  released(stream: StreamName): number {
    return this.#released === null ? this.#sizes[stream] : Math.min(this.#sizes[stream], this.#released[stream]);
  }

  /** Whether the log is held (output commit), and up to which offsets readers see it. */
  get held(): Readonly<Record<StreamName, number>> | null {
    return this.#released;
  }

  /** Holds the log (output commit): readers see it only up to `released` from now on, and as {@link commit} moves on. */
  hold(released: Record<StreamName, number>): void {
    if (this.#ended) return;
    this.#released = { stdout: Math.min(released.stdout, this.#sizes.stdout), stderr: Math.min(released.stderr, this.#sizes.stderr) };
  }

  /**
   * A checkpoint covering the output up to `offsets` is stored: readers see
   * it now (what has arrived of it; the rest as it arrives). Offsets only go
   * forward; a log that is not held ignores this.
   */
  commit(offsets: Record<StreamName, number>): void {
    const held = this.#released;
    if (held === null) return;
    for (const stream of ["stdout", "stderr"] as const) {
      const from = Math.min(held[stream], this.#sizes[stream]);
      if (offsets[stream] <= held[stream]) continue;
      held[stream] = offsets[stream];
      this.#emitStored(stream, from, Math.min(offsets[stream], this.#sizes[stream]));
    }
  }

  /**
   * Cuts each stream back to `offsets` (the process restarts from a
   * checkpoint that covers that much): what lay past them was never released
   * and is written again by the restarted process. Throws a RangeError for an
   * offset before what readers have seen or past what was written: released
   * output is never taken back.
   */
  rewind(offsets: Record<StreamName, number>): void {
    if (this.#fds === null) throw new RangeError("the log has ended (or is closed); it cannot be rewound");
    for (const stream of ["stdout", "stderr"] as const) {
      const to = offsets[stream];
      if (!Number.isSafeInteger(to) || to < this.released(stream) || to > this.#sizes[stream]) {
        throw new RangeError(`cannot rewind ${stream} to ${to}: readers have seen ${this.released(stream)} bytes, ${this.#sizes[stream]} are written`);
      }
    }
    for (const stream of ["stdout", "stderr"] as const) {
      fs.ftruncateSync(this.#fds[stream], offsets[stream]);
      this.#sizes[stream] = offsets[stream];
    }
  }

  /** Emits what the file holds of `stream` from `from` to `to` as chunks (bytes just released). */
  #emitStored(stream: StreamName, from: number, to: number): void {
    for (let at = from; at < to; ) {
      const data = this.#readRaw(stream, at, Math.min(READ_CHUNK_BYTES, to - at));
      if (data.length === 0) return;
      this.emit("chunk", { stream, offset: at, data } satisfies OutputChunk);
      at += data.length;
    }
  }

  /** Reads up to READ_CHUNK_BYTES of a stream from `offset` (a whole number of bytes: callers check what clients send), never past what is released. */
  read(stream: StreamName, offset: number): Uint8Array {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`output offset ${offset} is not a whole number of bytes`);
    return this.#readRaw(stream, offset, READ_CHUNK_BYTES);
  }

  #readRaw(stream: StreamName, offset: number, max: number): Uint8Array {
    const n = Math.max(0, Math.min(max, this.released(stream) - offset));
    const buf = Buffer.alloc(n);
    if (n === 0) return buf;
    if (this.#fds !== null) {
      fs.readSync(this.#fds[stream], buf, 0, n, offset);
      return buf;
    }
    const fd = fs.openSync(this.#paths[stream], "r");
    try {
      fs.readSync(fd, buf, 0, n, offset);
    } finally {
      fs.closeSync(fd);
    }
    return buf;
  }

  /** Marks the end of output and lets go of the files (an ended log is read by opening them). */
  end(): void {
    if (this.#ended) return;
    // Its end is final: no restart can write any of it again, so all of it is released.
    if (this.#released !== null) this.commit({ ...this.#sizes });
    this.#released = null;
    this.#ended = true;
    this.#release();
    this.emit("end");
  }

  /** Lets go of the files without marking the end (the node is stopping: the process may still be running elsewhere). */
  close(): void {
    this.#release();
  }

  #release(): void {
    if (this.#fds === null) return;
    fs.closeSync(this.#fds.stdout);
    fs.closeSync(this.#fds.stderr);
    this.#fds = null;
  }
}

/** Bytes in a log file; a file that is not there holds none. */
function sizeOf(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch (err: unknown) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return 0;
    throw err;
  }
}
