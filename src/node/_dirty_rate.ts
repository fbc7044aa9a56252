/**
 * Each large process's dirty rate, measured on its runner for the load
 * module (docs/load.md, "What a node measures"): the policy chooses a move's
 * strategy from it (`chooseStrategy`: pre-copy while writes are slow against
 * the link, post-copy when they are nearly as fast, hybrid between).
 *
 * Cheap by design. Only processes larger than the model's stop-and-copy
 * limit are measured (smaller ones stop and copy whatever they write). A
 * measurement arms the kernel's write tracking (userfaultfd asynchronous
 * write-protect, the pre-copy tracker's native code) for one window, then
 * reads the pages written with one PAGEMAP_SCAN and disarms: the guest pays
 * about a microsecond on its first write to a page during the window, and
 * nothing between windows. Without the kernel tracker no rate is measured
 * (the strategy then follows size alone), rather than keeping a shadow copy
 * of every large memory.
 *
 * A memory can hold one write-tracking registration at a time: a migration
 * or a checkpoint calls {@link DirtyMeter.release} before it arms its own.
 */
import { nativeAddon, REGISTERED_BYTES, type NativeAddon } from "../native.js";
import { errorField, type Logger } from "../log/mod.js";

/** Bytes of one tracked page (the image's page). */
const PAGE_BYTES = 4096;

/** How long one measurement tracks writes: one load interval, about a pre-copy round of a large process. */
export const DIRTY_WINDOW_MS = 500;

/** A process is measured again this long after its last window ended: a duty cycle of a fifth. */
export const DIRTY_PERIOD_MS = 2_000;

/** Weight of a new window in the smoothed rate: writes come in bursts, moves are decided on a trend. */
const DIRTY_SMOOTHING = 0.5;

/** One process's measurement. */
interface Sample {
  /** The memory the tracking is armed on (a restore may replace it). */
  memory: WebAssembly.Memory;
  /** The native tracker while a window is open. */
  handle: unknown;
  armed_ms: number;
  /** When its last window ended (-Infinity before the first). */
  ended_ms: number;
  /** Smoothed rate; null until a window ended. */
  rate: number | null;
  /** Seen in the last tick (others are forgotten). */
  seen: boolean;
}

/** A process the meter may measure now. */
export interface DirtyCandidate {
  readonly pid: string;
  readonly memory: WebAssembly.Memory;
}

/** Measures the dirty rate of a node's large processes, a window at a time. */
export class DirtyMeter {
  readonly #native: NativeAddon | null;
  readonly #log: Logger;
  readonly #samples = new Map<string, Sample>();
  /** Windows that could not be armed or read (for `ferry policy`). */
  failures = 0;

  /** `enabled` false (the node tracks pages without the kernel) measures nothing. */
  constructor(options: { enabled: boolean; log: Logger }) {
    const n = options.enabled ? nativeAddon() : null;
    this.#native = n !== null && "addon" in n ? n.addon : null;
    this.#log = options.log;
  }

  /** Whether rates are measured here at all. */
  get measuring(): boolean {
    return this.#native !== null;
  }

  /**
   * One step, each load round: closes the windows that have lasted
   * {@link DIRTY_WINDOW_MS}, opens one for each candidate due, and forgets
   * processes no longer among the candidates.
   */
  tick(candidates: Iterable<DirtyCandidate>, now_ms: number): void {
    const native = this.#native;
    if (native === null) return;
    for (const s of this.#samples.values()) s.seen = false;
    for (const c of candidates) {
      let s = this.#samples.get(c.pid);
      if (s !== undefined && s.memory !== c.memory) {
        this.#close(s);
        s.memory = c.memory;
        s.ended_ms = -Infinity;
      }
      if (s === undefined) {
        s = { memory: c.memory, handle: null, armed_ms: 0, ended_ms: -Infinity, rate: null, seen: true };
        this.#samples.set(c.pid, s);
      }
      s.seen = true;
      if (s.handle !== null) {
        if (now_ms - s.armed_ms >= DIRTY_WINDOW_MS) this.#read(c.pid, s, now_ms);
      } else if (now_ms - s.ended_ms >= DIRTY_PERIOD_MS) {
        this.#arm(c.pid, s, now_ms);
      }
    }
    for (const [pid, s] of this.#samples) {
      if (s.seen) continue;
      this.#close(s);
      this.#samples.delete(pid);
    }
  }

  /** The smoothed dirty rate of `pid` in bytes per second, if one was measured. */
  rate(pid: string): number | undefined {
    return this.#samples.get(pid)?.rate ?? undefined;
  }

  /** Every measured rate, by pid. */
  rates(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [pid, s] of this.#samples) if (s.rate !== null) out[pid] = Math.round(s.rate);
    return out;
  }

  /** Disarms `pid`'s window now (a migration or checkpoint is about to track its writes); its rate is kept. */
  release(pid: string): void {
    const s = this.#samples.get(pid);
    if (s === undefined || s.handle === null) return;
    this.#close(s);
    s.ended_ms = performance.now();
  }

  /** Disarms every window. */
  close(): void {
    for (const s of this.#samples.values()) this.#close(s);
    this.#samples.clear();
  }

  #arm(pid: string, s: Sample, now_ms: number): void {
    try {
      s.handle = (this.#native as NativeAddon).create(new Uint8Array(s.memory.buffer), REGISTERED_BYTES);
      s.armed_ms = now_ms;
    } catch (err: unknown) {
      // Another tracker holds this memory (a migration or checkpoint the meter was not told of), or the kernel refused: try again next period.
      s.handle = null;
      s.ended_ms = now_ms;
      this.failures += 1;
      this.#log.debug({ pid, err: errorField(err) }, `could not arm the dirty-rate window of ${pid}`);
    }
  }

  #read(pid: string, s: Sample, now_ms: number): void {
    const native = this.#native as NativeAddon;
    try {
      const ranges = native.scan(s.handle, s.memory.buffer.byteLength);
      let pages = 0;
      for (let i = 0; i + 1 < ranges.length; i += 2) pages += (ranges[i + 1] as number) - (ranges[i] as number);
      const rate = (pages * PAGE_BYTES * 1000) / Math.max(1, now_ms - s.armed_ms);
      s.rate = s.rate === null ? rate : s.rate + DIRTY_SMOOTHING * (rate - s.rate);
    } catch (err: unknown) {
      // The memory grew past the registration or the process went away mid-window: this window tells nothing.
      this.failures += 1;
      this.#log.debug({ pid, err: errorField(err) }, `could not read the dirty-rate window of ${pid}`);
    }
    this.#close(s);
    s.ended_ms = now_ms;
  }

  #close(s: Sample): void {
    if (s.handle === null) return;
    const handle = s.handle;
    s.handle = null;
    (this.#native as NativeAddon).close(handle);
  }
}
