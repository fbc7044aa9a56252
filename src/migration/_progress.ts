/**
 * A migration's progress as its source reports it (`SourceSide.progress`):
 * each step as it happens, and between steps the bytes moved within the
 * phase under way, sampled every PROGRESS_MS_MIN from the count the stall
 * watchdog reads. Without the samples a display's bar of the phase under way
 * sits at its floor, then jumps to full (a first round copies all of memory
 * in one step). A sample is reported only when bytes moved, so an idle or
 * stalled migration reports nothing, and the reports' rate is bounded.
 */
import { PROGRESS_MS_MIN, type MigrationProgress } from "./source.js";

/** The phase that runs after step `last`: rounds follow the offer and each round but the last (which a step to `stopping` ends). */
export function phaseUnderWay(last: MigrationProgress, rounds: boolean): Pick<MigrationProgress, "phase" | "round"> {
  if (rounds && last.phase === "offered") return { phase: "round", round: 1 };
  if (last.phase === "round") return { phase: "round", round: (last.round ?? 0) + 1 };
  return last.round === undefined ? { phase: last.phase } : { phase: last.phase, round: last.round };
}

/** Reports steps, and samples of bytes moved between them; {@link ProgressReporter.stop} once the migration ended. */
export class ProgressReporter {
  readonly #report: (p: MigrationProgress) => void;
  readonly #moved: () => number;
  readonly #rounds: boolean;
  #last: MigrationProgress | null = null;
  /** The moved count at the last step, and the bytes last reported. */
  #moved_at_step = 0;
  #reported_bytes = 0;
  #timer: ReturnType<typeof setInterval> | null = null;

  /**
   * `moved`: bytes moved so far on the migration's connections (it only
   * grows); `rounds`: whether pre-copy rounds follow the offer.
   */
  constructor(report: (p: MigrationProgress) => void, moved: () => number, options: { rounds: boolean; every_ms?: number; timer?: boolean }) {
    this.#report = report;
    this.#moved = moved;
    this.#rounds = options.rounds;
    if (options.timer === false) return;
    this.#timer = setInterval(() => this.sample(), options.every_ms ?? PROGRESS_MS_MIN);
    // Reporting alone must not keep a process alive.
    this.#timer.unref();
  }

  /** A step: reported at once (its bytes never below what was reported before). */
  step(p: MigrationProgress): void {
    const bytes = Math.max(p.bytes, this.#reported_bytes);
    this.#last = { ...p, bytes };
    this.#moved_at_step = this.#moved();
    this.#reported_bytes = bytes;
    this.#report(this.#last);
  }

  /** Reports the bytes moved since the last step, if any moved since the last report. */
  sample(): void {
    const last = this.#last;
    if (last === null) return;
    const bytes = last.bytes + Math.max(0, this.#moved() - this.#moved_at_step);
    if (bytes <= this.#reported_bytes) return;
    this.#reported_bytes = bytes;
    this.#report({ ...phaseUnderWay(last, this.#rounds), bytes, memory_bytes: last.memory_bytes, in_phase: true });
  }

  /** No more samples. */
  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }
}
