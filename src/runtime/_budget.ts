/**
 * How many countdown units a guest runs between two crossings into the host
 * (where it sees a suspend request), tuned by time.
 *
 * A unit is a function entry or a loop visit of the instrumenter's countdown
 * (`_polls.ts`), and what a unit costs varies a thousandfold between guests:
 * a tight loop charges one per back-edge, but a loop that exits before its
 * slice ends charges only its entry, so a recursion doing a few short loops
 * per level ran 20,000 units in 5–11 ms, the whole of a suspend's latency.
 * Each crossing therefore measures the time since the last one and scales
 * the next budget toward {@link POLL_INTERVAL_MS}: a guest answers a request
 * within about that, whatever its shape, and crosses no more often than it
 * must (a `performance.now()` per crossing is noise at that rate).
 */

/** Aimed-for time between two host crossings of a running guest. */
export const POLL_INTERVAL_MS = 0.25;

/** The first budget: ~10-100 µs of a tight loop. */
export const POLL_BUDGET_START = 20_000;

/** Never fewer units than this between crossings: a crossing costs about as much as 100 units. */
export const POLL_BUDGET_MIN = 256;

/** Never more: keeps a guest whose clock reads were disturbed (a sleep, a suspend) from going long without a crossing. */
export const POLL_BUDGET_MAX = 4_000_000;

/** The most a budget changes in one step, either way: one odd interval (a blocking call, a GC) cannot swing it. */
const STEP_FACTOR_MAX = 4;

/** The budget of one guest; `next(now_ms)` at each crossing gives the budget until the next one. */
export class PollBudget {
  #budget = POLL_BUDGET_START;
  #last_ms: number;

  constructor(now_ms: number) {
    this.#last_ms = now_ms;
  }

  /** Called at a crossing, with the current time: the units to run until the next. */
  next(now_ms: number): number {
    const elapsed_ms = now_ms - this.#last_ms;
    this.#last_ms = now_ms;
    const factor = elapsed_ms <= 0 ? STEP_FACTOR_MAX : Math.min(STEP_FACTOR_MAX, Math.max(1 / STEP_FACTOR_MAX, POLL_INTERVAL_MS / elapsed_ms));
    this.#budget = Math.round(Math.min(POLL_BUDGET_MAX, Math.max(POLL_BUDGET_MIN, this.#budget * factor)));
    return this.#budget;
  }
}
