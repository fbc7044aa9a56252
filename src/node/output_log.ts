/**
 * A process's output as its home node keeps it: one append-only file per
 * stream, addressed by byte offset. Offsets make delivery exactly-once: a
 * client asks for what it has not seen, and a relay that repeats itself (after
 * a migration or a retry) is trimmed to what is new.
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

/** Output of one process. Emits "chunk" (OutputChunk) and "end". */
export class OutputLog extends EventEmitter {
  readonly #fds: Record<StreamName, number>;
  readonly #sizes: Record<StreamName, number> = { stdout: 0, stderr: 0 };
  #ended = false;

  constructor(dir: string, pid: string) {
    super();
    fs.mkdirSync(dir, { recursive: true });
    this.setMaxListeners(0);
    this.#fds = {
      stdout: fs.openSync(path.join(dir, `${pid}.stdout`), "w+"),
      stderr: fs.openSync(path.join(dir, `${pid}.stderr`), "w+"),
    };
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
    if (n > 0) fs.readSync(this.#fds[stream], buf, 0, n, offset);
    return buf;
  }

  /** Marks the end of output. */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.emit("end");
  }

  /** Closes the files. */
  close(): void {
    this.end();
    fs.closeSync(this.#fds.stdout);
    fs.closeSync(this.#fds.stderr);
  }
}
