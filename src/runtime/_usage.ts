/**
 * What a guest's worker tells its controller of its CPU use, and the pause
 * the controller can put it in, through one small shared buffer: the node's
 * scheduler (`--cpus`) reads the counters and pauses guests at their next
 * safe point, without a message either way. A paused guest waits on the
 * control block's wake counter, so a suspend or a halt still reaches it.
 *
 * Layout: Float64 0 = milliseconds the guest computed, 1 = milliseconds it
 * wanted to compute but was paused, 2 = 1 while it waits in a blocking call
 * (or is suspended), else 0; Int32 at byte 24 = 1 while it is to pause.
 * One writer per slot; aligned float64 reads never tear on the platforms
 * Node runs on, and a reading a slice late only shifts a sample.
 */

/** Bytes of a usage buffer. */
export const USAGE_BYTES = 32;

const BUSY = 0;
const PAUSED = 1;
const BLOCKED = 2;
/** Int32 index of the pause flag (byte 24). */
const PAUSE = 6;

/** A guest's CPU use as its worker counted it. */
export interface GuestUsage {
  /** Milliseconds it computed (not waiting in a blocking call, not paused). */
  busy_ms: number;
  /** Milliseconds it was held paused by its controller while it wanted to run. */
  paused_ms: number;
  /** Whether it waits in a blocking call (or is suspended) now: it wants no CPU. */
  blocked: boolean;
}

/** The controller's side of a usage buffer. */
export class UsageView {
  readonly #f: Float64Array;
  readonly #i: Int32Array;

  constructor(buffer: SharedArrayBuffer) {
    this.#f = new Float64Array(buffer, 0, 3);
    this.#i = new Int32Array(buffer);
  }

  /** The counters now. */
  read(): GuestUsage {
    return { busy_ms: this.#f[BUSY] as number, paused_ms: this.#f[PAUSED] as number, blocked: this.#f[BLOCKED] === 1 };
  }

  /** Asks the guest to pause (true) at its next safe point, or to go on (false); the caller wakes it after clearing. */
  setPaused(paused: boolean): void {
    Atomics.store(this.#i, PAUSE, paused ? 1 : 0);
  }

  get paused(): boolean {
    return Atomics.load(this.#i, PAUSE) === 1;
  }
}

/** The worker's side: counts time between crossings into the host. */
export class UsageCounter {
  readonly #f: Float64Array;
  readonly #i: Int32Array;
  /** When the guest last started computing (performance.now()), or -1 while it does not. */
  #mark = -1;

  constructor(buffer: SharedArrayBuffer) {
    this.#f = new Float64Array(buffer, 0, 3);
    this.#i = new Int32Array(buffer);
  }

  /** The guest starts (or goes on) computing at `now_ms`. */
  running(now_ms: number): void {
    this.#mark = now_ms;
    this.#f[BLOCKED] = 0;
  }

  /** A crossing at `now_ms`: what it computed since the last one is counted. */
  tick(now_ms: number): void {
    if (this.#mark >= 0) this.#f[BUSY] = (this.#f[BUSY] as number) + Math.max(0, now_ms - this.#mark);
    this.#mark = now_ms;
  }

  /** The guest stops computing at `now_ms` (a blocking wait, a suspend, its end). */
  stopped(now_ms: number): void {
    this.tick(now_ms);
    this.#mark = -1;
    this.#f[BLOCKED] = 1;
  }

  /** Time it spent paused, counted as wanted and not computed. */
  paused(ms: number): void {
    this.#f[PAUSED] = (this.#f[PAUSED] as number) + ms;
  }

  /** Whether the controller asks it to pause. */
  get pause_requested(): boolean {
    return Atomics.load(this.#i, PAUSE) === 1;
  }
}
