/**
 * The memory held by the standbys of incoming migrations: each reserves its
 * offered memory before anything is allocated, grows its reservation as its
 * memory grows, and gives it back when it commits (it is a running process
 * then) or is dropped. Together they stay under the node's quota, so offers
 * (abandoned or not) cannot take a node's memory.
 */
import { FerryError } from "../errors.js";

/** One standby's reservation. */
export interface StandbyTicket {
  /** Bytes it holds now. */
  readonly bytes: number;
  /** Grows it to `bytes` (never shrinks); throws ERR_QUOTA if that does not fit. */
  grow(bytes: number): void;
  /** Gives it back; again is a no-op. */
  release(): void;
}

/** The node's standbys. */
export class StandbyLedger {
  readonly bytes_max: number;
  #bytes = 0;
  #count = 0;

  constructor(bytes_max: number) {
    this.bytes_max = bytes_max;
  }

  /** Bytes held by all standbys now. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Standbys now. */
  get count(): number {
    return this.#count;
  }

  /** Reserves `bytes` for the standby of `pid`; throws ERR_QUOTA if that does not fit. */
  reserve(pid: string, bytes: number): StandbyTicket {
    this.#fit(pid, bytes);
    this.#bytes += bytes;
    this.#count += 1;
    let held = bytes;
    let released = false;
    const ledger = this;
    return {
      get bytes() {
        return held;
      },
      grow(to: number) {
        if (released || to <= held) return;
        ledger.#fit(pid, to - held);
        ledger.#bytes += to - held;
        held = to;
      },
      release() {
        if (released) return;
        released = true;
        ledger.#bytes -= held;
        ledger.#count -= 1;
      },
    };
  }

  #fit(pid: string, more: number): void {
    if (this.#bytes + more > this.bytes_max) {
      throw new FerryError(
        "ERR_QUOTA",
        `taking ${pid} would need ${more} more bytes for incoming migrations; ${this.#bytes} of ${this.bytes_max} are held (--max-standby-bytes)`,
      );
    }
  }
}
