/**
 * Output of a running process on its way to its home node. Each chunk
 * carries its stream offset, so the home appends exactly once and in order
 * however the chunks travel (locally, or by HTTP from wherever the process
 * runs now).
 */
import { FerryError } from "../errors.js";
import { errorField, logger } from "../log/mod.js";
import type { OutputChunk, OutputLog, StreamName } from "./output_log.js";
import { requestJson } from "./_http.js";
import { nodeNamed, type Dialer } from "./_dialer.js";

/** Most bytes sent to a remote home in one request. */
const RELAY_BATCH_BYTES_MAX = 256 * 1024;
/** Pause before retrying a home that refused or did not answer, doubled at each failure of a batch up to {@link RELAY_RETRY_MAX_MS}. */
const RELAY_RETRY_MS = 50;
const RELAY_RETRY_MAX_MS = 1000;
/** How long a flush waits by default for the home to take what was written before it. */
export const RELAY_FLUSH_MS = 30_000;
/**
 * Most bytes a relay keeps for a home that does not take them (its node is
 * down, or restarting): past it, the output of the process is given up on.
 * Below it nothing is dropped, however long the home takes to come back.
 */
export const RELAY_QUEUE_BYTES_MAX = 64 * 1024 * 1024;

/** Where output goes. */
export interface OutputRelay {
  /** Takes the next bytes of a stream. */
  write(stream: StreamName, data: Uint8Array): void;
  /**
   * Resolves once everything written so far has reached the home; rejects
   * if it has not within `give_up_ms` (the output is kept, and still sent).
   */
  flush(give_up_ms?: number): Promise<void>;
  /** Stops sending what the home has not taken (the process ended, and its home did not come back in time). Returns the bytes left. */
  abandon(): number;
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

  abandon(): number {
    return 0;
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
  timer: NodeJS.Timeout;
}

/**
 * The home is another node: send batches in order, one request at a time.
 *
 * A flush waits for the output written before it, not for the queue to run
 * dry: a process that writes faster than a request's round trip (any busy
 * writer on a loaded machine) keeps the queue from ever emptying, and a flush
 * that waited for that held up a checkpoint until its keeper gave up on it
 * (30 s) after every move away from the home.
 *
 * A home that does not answer (its node restarts, or is cut off) is tried
 * again and again, with nothing dropped, up to {@link RELAY_QUEUE_BYTES_MAX}
 * held: a relay that gave up on a batch after 30 s lost the rest of the
 * output of a process whose home took longer to restart, and every batch
 * after it (the home then refused them as past a gap).
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
  /** Bytes written and not yet taken by the home. */
  #held = 0;
  #abandoned = false;

  /** `home` names the home node and resolves its address (it may be looked up lazily). */
  constructor(pid: string, home: RelayHome, offsets: Record<StreamName, number>) {
    this.#pid = pid;
    this.#home = home;
    this.offsets = { ...offsets };
    this.#delivered = { ...offsets };
  }

  write(stream: StreamName, data: Uint8Array): void {
    if (this.#error !== null || this.#abandoned) return;
    this.#queue.push({ stream, offset: this.offsets[stream], data: data.slice() });
    this.offsets[stream] += data.length;
    this.#held += data.length;
    if (this.#held > RELAY_QUEUE_BYTES_MAX) {
      this.#fail(new FerryError("ERR_RELAY_FAILED", `output of ${this.#pid} could not reach its home, which has not taken the last ${this.#held} bytes (the most kept is ${RELAY_QUEUE_BYTES_MAX})`));
      return;
    }
    this.#sending ??= this.#drain()
      .catch((err: unknown) => this.#fail(err))
      .finally(() => {
        this.#sending = null;
      });
  }

  /** Resolves once the output written before this call has reached the home (what is written meanwhile is not waited for). */
  flush(give_up_ms = RELAY_FLUSH_MS): Promise<void> {
    if (this.#error !== null) return Promise.reject(this.#error);
    const target = { ...this.offsets };
    if (reached(this.#delivered, target)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter: FlushWaiter = {
        target,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          reject(new FerryError("ERR_RELAY_FAILED", `output of ${this.#pid} has not reached its home within ${give_up_ms} ms (it is kept, and still sent)`));
        }, give_up_ms),
      };
      this.#waiters.push(waiter);
    });
  }

  abandon(): number {
    this.#abandoned = true;
    const left = this.#held;
    this.#queue = [];
    this.#held = 0;
    this.#rejectAll(new FerryError("ERR_RELAY_FAILED", `output of ${this.#pid} was given up on before it reached its home`));
    return left;
  }

  /** Gives up on the home: what is held is dropped, as is all the process writes from now on, and every flush fails with `err`. */
  #fail(err: unknown): void {
    logger().warn({ pid: this.#pid, home: this.#home.name, bytes: this.#held, err: errorField(err) }, `output of ${this.#pid} is given up on: what its home has not taken, and all it writes from now on, is dropped`);
    this.#error = err;
    this.#queue = [];
    this.#held = 0;
    this.#rejectAll(err);
  }

  #rejectAll(err: unknown): void {
    for (const w of this.#waiters) {
      clearTimeout(w.timer);
      w.reject(err);
    }
    this.#waiters = [];
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0 && !this.#abandoned && this.#error === null) {
      const { body, ends, bytes } = this.#take();
      // Tried until the home takes it: its node may be restarting, and what it has not taken is all there is of this output.
      for (let pause = RELAY_RETRY_MS; ; pause = Math.min(RELAY_RETRY_MAX_MS, pause * 2)) {
        if (this.#abandoned || this.#error !== null) return;
        try {
          const home = this.#home;
          await requestJson(home.dialer, await home.address(), "POST", `/v1/internal/output/${this.#pid}`, { body, expect: nodeNamed(home.name) });
          break;
        } catch {
          // Expected while the home is down or restarting (a flush says how long it waited): tried again.
          await new Promise((r) => setTimeout(r, pause));
        }
      }
      this.#held -= bytes;
      for (const stream of ["stdout", "stderr"] as const) this.#delivered[stream] = Math.max(this.#delivered[stream], ends[stream]);
      this.#settle();
    }
  }

  /** Resolves the flushes whose output the home now holds. */
  #settle(): void {
    const waiting: FlushWaiter[] = [];
    for (const w of this.#waiters) {
      if (reached(this.#delivered, w.target)) {
        clearTimeout(w.timer);
        w.resolve();
      } else waiting.push(w);
    }
    this.#waiters = waiting;
  }

  /** Up to a batch of queued chunks, as JSON the home's endpoint reads, and where each stream ends with it. */
  #take(): { body: { stream: StreamName; offset: number; data: string }[]; ends: Record<StreamName, number>; bytes: number } {
    const body: { stream: StreamName; offset: number; data: string }[] = [];
    const ends = { ...this.#delivered };
    let bytes = 0;
    while (this.#queue.length > 0 && bytes < RELAY_BATCH_BYTES_MAX) {
      const c = this.#queue.shift() as OutputChunk;
      bytes += c.data.length;
      ends[c.stream] = Math.max(ends[c.stream], c.offset + c.data.length);
      body.push({ stream: c.stream, offset: c.offset, data: Buffer.from(c.data).toString("base64") });
    }
    return { body, ends, bytes };
  }
}

/** Whether `have` reaches `target` on both streams. */
function reached(have: Record<StreamName, number>, target: Record<StreamName, number>): boolean {
  return have.stdout >= target.stdout && have.stderr >= target.stderr;
}
