/**
 * The guest's clocks.
 *
 * Realtime is the host's wall clock. Monotonic is the host's monotonic clock
 * plus an offset: a restored process continues from the value captured on
 * the source host (whose monotonic epoch is unrelated to ours), so time spent
 * in transit is invisible and the guest never sees its clock go backwards,
 * even if the host clock itself steps back. CPU-time clocks use the monotonic
 * value: the guest cannot tell, and CPU time is not comparable across hosts.
 */

import type { Clock } from "./deps.js";
import { Errno, fail, type ErrnoValue } from "./errno.js";
import { ClockId } from "./_layout.js";
import type { HostContext } from "./_context.js";
import { u32_arg } from "./_memory.js";

/**
 * Resolution reported by clock_res_get, 1 µs for every clock: the injected
 * clocks do not say theirs, and 1 µs is honest for both the system monotonic
 * clock and a microsecond wall clock.
 */
export const CLOCK_RESOLUTION_NS = 1_000n;

/** Guest-visible monotonic time on top of an injected host {@link Clock}. */
export class GuestClock {
  readonly #host: Clock;
  #offset_ns: bigint;
  #high_water_ns: bigint;

  /**
   * `start_ns` is the guest monotonic value to continue from (a captured
   * one), or undefined for a fresh process, which sees the host's own value.
   */
  constructor(host: Clock, start_ns?: bigint) {
    this.#host = host;
    const now_ns = host.monotonic_ns();
    this.#offset_ns = start_ns === undefined ? 0n : start_ns - now_ns;
    this.#high_water_ns = start_ns ?? now_ns;
  }

  /** Guest monotonic now; never less than any value returned before. */
  monotonic_ns(): bigint {
    const now_ns = this.#host.monotonic_ns() + this.#offset_ns;
    if (now_ns > this.#high_water_ns) this.#high_water_ns = now_ns;
    return this.#high_water_ns;
  }

  /** Host wall-clock now (ns since the Unix epoch). */
  realtime_ns(): bigint {
    return this.#host.realtime_ns();
  }

  /** Now on clock `id`, or undefined for an unknown clock. */
  now_ns(id: number): bigint | undefined {
    switch (id) {
      case ClockId.realtime:
        return this.realtime_ns();
      case ClockId.monotonic:
      case ClockId.process_cputime:
      case ClockId.thread_cputime:
        return this.monotonic_ns();
      default:
        return undefined;
    }
  }
}

/** `clock_res_get(id, resolution_ptr)`. */
export function clock_res_get(ctx: HostContext, id: number, resolution_ptr: number): ErrnoValue {
  if (ctx.clock.now_ns(u32_arg(id)) === undefined) fail(Errno.inval, `unknown clock ${id}`);
  ctx.mem.set_u64(u32_arg(resolution_ptr), CLOCK_RESOLUTION_NS);
  return Errno.success;
}

/** `clock_time_get(id, precision, time_ptr)`; precision is ignored (we always give our best). */
export function clock_time_get(ctx: HostContext, id: number, _precision: bigint, time_ptr: number): ErrnoValue {
  const now_ns = ctx.clock.now_ns(u32_arg(id)) ?? fail(Errno.inval, `unknown clock ${id}`);
  ctx.mem.set_u64(u32_arg(time_ptr), now_ns);
  return Errno.success;
}
