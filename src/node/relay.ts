/**
 * Output of a running process on its way to its home node. Each chunk
 * carries its stream offset, so the home appends exactly once and in order
 * however the chunks travel (locally, or by HTTP from wherever the process
 * runs now).
 */
import { FerryError } from "../errors.js";
import type { OutputChunk, OutputLog, StreamName } from "./output_log.js";
import { requestJson } from "./_http.js";
import { nodeNamed, type Dialer } from "./_dialer.js";

/** Most bytes sent to a remote home in one request. */
const RELAY_BATCH_BYTES_MAX = 256 * 1024;
/** Pause before retrying a home that refused or did not answer. */
const RELAY_RETRY_MS = 50;
/** Give up on a home that keeps failing one batch for this long (the home node is gone). */
const RELAY_GIVE_UP_MS = 30_000;

/** Where output goes. */
export interface OutputRelay {
  /** Takes the next bytes of a stream. */
  write(stream: StreamName, data: Uint8Array): void;
  /** Resolves once everything written so far has reached the home. */
  flush(): Promise<void>;
  /** Next offset of each stream. */
  readonly offsets: Record<StreamName, number>;
}

/** The home is this node: append straight to the log. */
export class LocalRelay implements OutputRelay {
  readonly offsets: Record<StreamName, number>;
  readonly #log: OutputLog;

  constructor(log: OutputLog, offsets: Record<StreamName, number>) {
    this.#log = log;
    this.offsets = { ...offsets };
  }

  write(stream: StreamName, data: Uint8Array): void {
    this.#log.append({ stream, offset: this.offsets[stream], data });
    this.offsets[stream] += data.length;
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }
}

/** How a relay reaches a remote home: its name, its address, and how to dial it. */
export interface RelayHome {
  dialer: Dialer;
  name: string;
  address: () => Promise<string>;
}

/** A {@link RemoteRelay.flush} waiting for the home to hold output up to `target`. */
interface FlushWaiter {
  target: Record<StreamName, number>;
  resolve(): void;
  reject(err: unknown): void;
}

/**
 * The home is another node: send batches in order, one request at a time.
 *
 * A flush waits for the output written before it, not for the queue to run
 * dry: a process that writes faster than a request's round trip (any busy
 * writer on a loaded machine) keeps the queue from ever emptying, and a flush
 * that waited for that held up a checkpoint until its keeper gave up on it
 * (30 s) after every move away from the home.
 */
export class RemoteRelay implements OutputRelay {
  readonly offsets: Record<StreamName, number>;
  readonly #pid: string;
  readonly #home: RelayHome;
  #queue: OutputChunk[] = [];
  #sending: Promise<void> | null = null;
  #error: unknown = null;
  /** Offsets up to which the home has taken each stream. */
  readonly #delivered: Record<StreamName, number>;
  #waiters: FlushWaiter[] = [];

  /** `home` names the home node and resolves its address (it may be looked up lazily). */
  constructor(pid: string, home: RelayHome, offsets: Record<StreamName, number>) {
    this.#pid = pid;
    this.#home = home;
    this.offsets = { ...offsets };
    this.#delivered = { ...offsets };
  }

  write(stream: StreamName, data: Uint8Array): void {
    this.#queue.push({ stream, offset: this.offsets[stream], data: data.slice() });
    this.offsets[stream] += data.length;
    this.#sending ??= this.#drain()
      .catch((err: unknown) => {
        this.#error = err;
        this.#queue = [];
        for (const w of this.#waiters) w.reject(err);
        this.#waiters = [];
      })
      .finally(() => {
        this.#sending = null;
      });
  }

  /** Resolves once the output written before this call has reached the home (what is written meanwhile is not waited for). */
  flush(): Promise<void> {
    if (this.#error !== null) return Promise.reject(this.#error);
    const target = { ...this.offsets };
    if (reached(this.#delivered, target)) return Promise.resolve();
    return new Promise((resolve, reject) => this.#waiters.push({ target, resolve, reject }));
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const { body, ends } = this.#take();
      // From this batch's first try: a drain lasts as long as the process keeps writing, and a home that answered until now is not given up on at its first failure.
      const started = Date.now();
      for (;;) {
        try {
          const home = this.#home;
          await requestJson(home.dialer, await home.address(), "POST", `/v1/internal/output/${this.#pid}`, { body, expect: nodeNamed(home.name) });
          break;
        } catch (err: unknown) {
          if (Date.now() - started > RELAY_GIVE_UP_MS) {
            throw new FerryError("ERR_RELAY_FAILED", `output of ${this.#pid} could not reach its home: ${(err as Error).message}`, { cause: err });
          }
          await new Promise((r) => setTimeout(r, RELAY_RETRY_MS));
        }
      }
      for (const stream of ["stdout", "stderr"] as const) this.#delivered[stream] = Math.max(this.#delivered[stream], ends[stream]);
      this.#settle();
    }
  }

  /** Resolves the flushes whose output the home now holds. */
  #settle(): void {
    const waiting: FlushWaiter[] = [];
    for (const w of this.#waiters) {
      if (reached(this.#delivered, w.target)) w.resolve();
      else waiting.push(w);
    }
    this.#waiters = waiting;
  }

  /** Up to a batch of queued chunks, as JSON the home's endpoint reads, and where each stream ends with it. */
  #take(): { body: { stream: StreamName; offset: number; data: string }[]; ends: Record<StreamName, number> } {
    const body: { stream: StreamName; offset: number; data: string }[] = [];
    const ends = { ...this.#delivered };
    let bytes = 0;
    while (this.#queue.length > 0 && bytes < RELAY_BATCH_BYTES_MAX) {
      const c = this.#queue.shift() as OutputChunk;
      bytes += c.data.length;
      ends[c.stream] = Math.max(ends[c.stream], c.offset + c.data.length);
      body.push({ stream: c.stream, offset: c.offset, data: Buffer.from(c.data).toString("base64") });
    }
    return { body, ends };
  }
}

/** Whether `have` reaches `target` on both streams. */
function reached(have: Record<StreamName, number>, target: Record<StreamName, number>): boolean {
  return have.stdout >= target.stdout && have.stderr >= target.stderr;
}
