/**
 * The guest's wall clock, to the microsecond. `Date.now()` counts whole
 * milliseconds, while WASI's `clock_time_get` gives nanoseconds and Ferry
 * says 1 µs in `clock_res_get`: a program timing a short step by the wall
 * clock saw 0 or 1 ms (node:wasi reads the system's clock, to the
 * nanosecond). The sub-millisecond part comes from the monotonic clock,
 * counted from an anchor: first the process's start time, which Node keeps
 * to the microsecond (`performance.timeOrigin`), plus the monotonic time
 * since. Each reading checks the result against `Date.now()`, which
 * truncates: the true time lies in [now, now + 1 ms). A result below that
 * is late and one above it is early (the wall clock was set, or the two
 * clocks drifted apart): either way the anchor moves to the nearest end of
 * that millisecond at this reading. So a reading is never a millisecond or
 * more from the system's wall clock, follows it when it is set, and steps
 * back only by what drift gained, not a millisecond at a time; a late
 * anchor's lag shrinks as readings land just after a millisecond's start.
 */

/** Where a wall clock reads the time (the process's clocks, or a test's). */
export interface WallClockSources {
  /** Milliseconds since the Unix epoch, truncated (`Date.now()`). */
  wall_ms(): number;
  /** A monotonic clock in nanoseconds (`process.hrtime.bigint()`). */
  monotonic_ns(): bigint;
  /** The wall clock to the microsecond, read once for the first anchor (`performance.timeOrigin + performance.now()`). */
  start_ns(): bigint;
}

const NS_PER_MS = 1_000_000n;

const SYSTEM: WallClockSources = {
  wall_ms: () => Date.now(),
  monotonic_ns: () => process.hrtime.bigint(),
  start_ns: () => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6)),
};

/** A function reading the wall clock in nanoseconds since the Unix epoch, to the microsecond. */
export function wallClock(sources: WallClockSources = SYSTEM): () => bigint {
  let anchor_monotonic_ns = sources.monotonic_ns();
  let anchor_wall_ns = sources.start_ns();
  return () => {
    const monotonic_ns = sources.monotonic_ns();
    const floor_ns = BigInt(sources.wall_ms()) * NS_PER_MS;
    const ns = anchor_wall_ns + (monotonic_ns - anchor_monotonic_ns);
    if (ns >= floor_ns && ns < floor_ns + NS_PER_MS) return ns;
    // Moved into the millisecond by as little as it takes: a monotonic clock a little faster than the wall clock
    // then steps back by what it gained since the last move, not by a millisecond.
    const into_ns = ns < floor_ns ? floor_ns : floor_ns + NS_PER_MS - 1n;
    anchor_wall_ns = into_ns;
    anchor_monotonic_ns = monotonic_ns;
    return into_ns;
  };
}
