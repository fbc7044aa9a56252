/**
 * The stall watchdog of a migration (issue 13: "a migration that makes no
 * progress for a configurable time is aborted"). Progress is a number that
 * grows while the migration moves — bytes that moved on its data connection
 * plus the steps it took — sampled on a timer; when it has not grown for
 * `stall_ms`, the migration is stalled. The judgement is pure (`StallWatch`:
 * samples and times in, a verdict out) and tested with a fake clock.
 */

/** Default time without progress after which a migration is aborted: long enough for a slow module fetch or restore to show movement. */
export const STALL_MS_DEFAULT = 30_000;
/** Longest stall time an operator may set (an hour): past it, the watchdog guards nothing. */
export const STALL_MS_MAX = 3_600_000;
/** Most time between two samples: a stall is noticed within this much past `stall_ms`. */
const SAMPLE_MS_MAX = 1000;

/** Judges samples of a progress measure against a stall time. */
export class StallWatch {
  readonly stall_ms: number;
  #last = -1;
  #since: number;

  constructor(stall_ms: number, now_ms: number) {
    this.stall_ms = stall_ms;
    this.#since = now_ms;
  }

  /** Takes a sample at `now_ms`; true when it has not grown for `stall_ms` or more. */
  sample(progress: number, now_ms: number): boolean {
    if (progress !== this.#last) {
      this.#last = progress;
      this.#since = now_ms;
      return false;
    }
    return now_ms - this.#since >= this.stall_ms;
  }

  /** How long the measure has not grown, as of `now_ms`. */
  idle_ms(now_ms: number): number {
    return now_ms - this.#since;
  }
}

/** A running watchdog: stop it once the migration has passed the point where it can be aborted. */
export interface StallTimer {
  stop(): void;
}

/** Samples `progress` on a timer and calls `stalled` once, when it has not grown for `stall_ms`. */
export function watchStall(stall_ms: number, progress: () => number, stalled: (idle_ms: number) => void): StallTimer {
  const watch = new StallWatch(stall_ms, performance.now());
  watch.sample(progress(), performance.now());
  const timer = setInterval(() => {
    const now = performance.now();
    if (!watch.sample(progress(), now)) return;
    clearInterval(timer);
    stalled(watch.idle_ms(now));
  }, Math.max(1, Math.min(SAMPLE_MS_MAX, Math.floor(stall_ms / 4))));
  // The watchdog alone must not keep a process alive.
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
