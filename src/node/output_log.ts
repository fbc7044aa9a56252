/**
 * A process's output as its home node keeps it: one append-only file per
 * stream, addressed by byte offset. Offsets make delivery exactly-once: a
 * client asks for what it has not seen, and a relay that repeats itself (after
 * a migration or a retry) is trimmed to what is new.
 *
 * The files outlive the node: a log is opened where it is, never truncated,
 * so a node that restarts on the same data directory keeps every byte a
 * process wrote, and appends after it. An ended log holds no descriptors.
 */
import { EventEmitter } from "node:events";
import fs from "node:fs";
import path from "node:path";

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
    // The runner flushes all output before it reports the end: nothing new can follow it.
    if (this.#fds === null) throw new Error(`output of an ended process arrived (${chunk.stream} at ${chunk.offset})`);
    fs.writeSync(this.#fds[chunk.stream], fresh, 0, fresh.length, size);
    this.#sizes[chunk.stream] = size + fresh.length;
    this.emit("chunk", { stream: chunk.stream, offset: size, data: fresh } satisfies OutputChunk);
    return true;
  }

  /** Reads up to READ_CHUNK_BYTES of a stream from `offset` (a whole number of bytes: callers check what clients send). */
  read(stream: StreamName, offset: number): Uint8Array {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`output offset ${offset} is not a whole number of bytes`);
    const n = Math.max(0, Math.min(READ_CHUNK_BYTES, this.#sizes[stream] - offset));
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
