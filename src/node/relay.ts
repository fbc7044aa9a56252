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
/** Give up on a home that keeps failing for this long (the home node is gone). */
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

/** The home is another node: send batches in order, one request at a time. */
export class RemoteRelay implements OutputRelay {
  readonly offsets: Record<StreamName, number>;
  readonly #pid: string;
  readonly #home: RelayHome;
  #queue: OutputChunk[] = [];
  #sending: Promise<void> | null = null;
  #error: unknown = null;

  /** `home` names the home node and resolves its address (it may be looked up lazily). */
  constructor(pid: string, home: RelayHome, offsets: Record<StreamName, number>) {
    this.#pid = pid;
    this.#home = home;
    this.offsets = { ...offsets };
  }

  write(stream: StreamName, data: Uint8Array): void {
    this.#queue.push({ stream, offset: this.offsets[stream], data: data.slice() });
    this.offsets[stream] += data.length;
    this.#sending ??= this.#drain()
      .catch((err: unknown) => {
        this.#error = err;
        this.#queue = [];
      })
      .finally(() => {
        this.#sending = null;
      });
  }

  async flush(): Promise<void> {
    while (this.#sending !== null) await this.#sending;
    if (this.#error !== null) throw this.#error;
  }

  async #drain(): Promise<void> {
    const started = Date.now();
    while (this.#queue.length > 0) {
      const batch = this.#take();
      for (;;) {
        try {
          const home = this.#home;
          await requestJson(home.dialer, await home.address(), "POST", `/v1/internal/output/${this.#pid}`, { body: batch, expect: nodeNamed(home.name) });
          break;
        } catch (err: unknown) {
          if (Date.now() - started > RELAY_GIVE_UP_MS) {
            throw new FerryError("ERR_RELAY_FAILED", `output of ${this.#pid} could not reach its home: ${(err as Error).message}`, { cause: err });
          }
          await new Promise((r) => setTimeout(r, RELAY_RETRY_MS));
        }
      }
    }
  }

  /** Up to a batch of queued chunks, as JSON the home's endpoint reads. */
  #take(): { stream: StreamName; offset: number; data: string }[] {
    const out: { stream: StreamName; offset: number; data: string }[] = [];
    let bytes = 0;
    while (this.#queue.length > 0 && bytes < RELAY_BATCH_BYTES_MAX) {
      const c = this.#queue.shift() as OutputChunk;
      bytes += c.data.length;
      out.push({ stream: c.stream, offset: c.offset, data: Buffer.from(c.data).toString("base64") });
    }
    return out;
  }
}
