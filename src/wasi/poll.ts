/**
 * poll_oneoff: wait for clock deadlines and fd readiness.
 *
 * Regular files are always ready, stdout/stderr are always writable, stdin is
 * readable when the InputSource says so, sockets when their relay has a
 * connection, data, room or an end for them. When nothing is ready the call
 * blocks through the Blocker until the earliest deadline, stdin activity or
 * a socket's change.
 *
 * Suspension: if the Blocker answers "suspend", the call records the absolute
 * guest-monotonic deadline of every relative clock subscription, writes
 * nothing and returns 0; the runtime unwinds and later repeats the same call
 * (same arguments), possibly after capture/restore on another host, and the
 * repeat reuses the saved deadlines. A 1 s sleep suspended after 0.3 s thus
 * sleeps 0.7 s more (guest-monotonic time does not pass while suspended).
 * Absolute deadlines need no saving; realtime ones are re-read against the
 * new host's wall clock, which is what an absolute wall-clock time means.
 */

import { fstatSync } from "node:fs";

import { Errno, fail, type ErrnoValue } from "./errno.js";
import { Event, EventType, Rights, SUBSCRIPTION_CLOCK_ABSTIME, ClockId, Subscription } from "./_layout.js";
import type { HostContext, PendingClock, PendingPoll } from "./_context.js";
import type { FdEntry } from "./fd_table.js";
import { u32_arg } from "./_memory.js";
import { socket_readiness } from "./sockets.js";

/** Most subscriptions one poll_oneoff may carry; bounds the host work a single call can demand. */
export const SUBSCRIPTIONS_MAX = 4096;

type ClockSub = { kind: "clock"; userdata: bigint; error: ErrnoValue; deadline_ns: bigint };
type FdSub = { kind: "fd"; userdata: bigint; type: number; fd: number };
type Sub = ClockSub | FdSub;
type Ready = { userdata: bigint; error: ErrnoValue; type: number; nbytes: bigint };

/** `poll_oneoff(in, out, nsubscriptions, nevents_ptr)`. May block. */
export function poll_oneoff(ctx: HostContext, in_ptr: number, out_ptr: number, nsubscriptions: number, nevents_ptr: number): ErrnoValue {
  const args = [u32_arg(in_ptr), u32_arg(out_ptr), u32_arg(nsubscriptions), u32_arg(nevents_ptr)] as const;
  const [subs_at, events_at, count, nevents_at] = args;
  if (count === 0) fail(Errno.inval, "no subscriptions");
  if (count > SUBSCRIPTIONS_MAX) fail(Errno.inval, `${count} subscriptions exceed ${SUBSCRIPTIONS_MAX}`);
  ctx.mem.check(subs_at, count * Subscription.size);
  ctx.mem.check(events_at, count * Event.size);
  ctx.mem.check(nevents_at, 4);

  const pending = ctx.pending_poll !== null && same_args(ctx.pending_poll, args) ? ctx.pending_poll : null;
  ctx.pending_poll = null;
  const saved: PendingClock[] = [];
  const subs = read_subscriptions(ctx, subs_at, count, pending, saved);

  for (;;) {
    const now_ns = ctx.clock.monotonic_ns();
    const ready: Ready[] = [];
    let deadline_ns: bigint | undefined;
    let wants_stdin = false;
    const sockets: (() => boolean)[] = [];
    for (const sub of subs) {
      if (sub.kind === "clock") {
        if (sub.error !== Errno.success || sub.deadline_ns <= now_ns) {
          ready.push({ userdata: sub.userdata, error: sub.error, type: EventType.clock, nbytes: 0n });
        } else if (deadline_ns === undefined || sub.deadline_ns < deadline_ns) {
          deadline_ns = sub.deadline_ns;
        }
        continue;
      }
      const state = fd_readiness(ctx, sub);
      if (state === "stdin") wants_stdin = true;
      else if (typeof state === "function") sockets.push(state);
      else ready.push(state);
    }
    if (ready.length > 0) {
      write_events(ctx, events_at, ready);
      ctx.mem.set_u32(nevents_at, ready.length);
      return Errno.success;
    }
    const until = sockets.length === 0 ? undefined : () => sockets.some((ready_now) => ready_now());
    const woke = ctx.deps.blocker.wait({ stdin: wants_stdin, ...(deadline_ns === undefined ? {} : { deadline_ns }), ...(until === undefined ? {} : { until }) });
    if (woke === "suspend") {
      ctx.pending_poll = { args, clocks: saved };
      return Errno.success;
    }
  }
}

function read_subscriptions(
  ctx: HostContext,
  at: number,
  count: number,
  pending: PendingPoll | null,
  saved: PendingClock[],
): Sub[] {
  const subs: Sub[] = [];
  const mono_now_ns = ctx.clock.monotonic_ns();
  for (let index = 0; index < count; index++) {
    const base = at + index * Subscription.size;
    const userdata = ctx.mem.u64(base + Subscription.userdata);
    const tag = ctx.mem.u8(base + Subscription.tag);
    if (tag === EventType.fd_read || tag === EventType.fd_write) {
      subs.push({ kind: "fd", userdata, type: tag, fd: ctx.mem.u32(base + Subscription.fd) });
      continue;
    }
    if (tag !== EventType.clock) fail(Errno.inval, `subscription tag ${tag}`);
    const id = ctx.mem.u32(base + Subscription.clock_id);
    const timeout_ns = ctx.mem.u64(base + Subscription.clock_timeout);
    const absolute = (ctx.mem.u16(base + Subscription.clock_flags) & SUBSCRIPTION_CLOCK_ABSTIME) !== 0;
    const clock_now_ns = ctx.clock.now_ns(id);
    if (clock_now_ns === undefined) {
      subs.push({ kind: "clock", userdata, error: Errno.inval, deadline_ns: 0n });
      continue;
    }
    let deadline_ns: bigint;
    if (absolute) {
      // Every clock is mapped onto guest-monotonic time, the one Blocker waits on.
      deadline_ns = id === ClockId.realtime ? mono_now_ns + (timeout_ns - clock_now_ns) : timeout_ns;
    } else {
      const earlier = pending?.clocks.find((c) => c.index === index && c.timeout_ns === timeout_ns);
      deadline_ns = earlier?.deadline_ns ?? mono_now_ns + timeout_ns;
      saved.push({ index, timeout_ns, deadline_ns });
    }
    subs.push({ kind: "clock", userdata, error: Errno.success, deadline_ns });
  }
  return subs;
}

/** An event for an fd subscription, "stdin" when it waits for stdin, or what a socket waits for. */
function fd_readiness(ctx: HostContext, sub: FdSub): Ready | "stdin" | (() => boolean) {
  const event = (error: ErrnoValue, nbytes = 0n): Ready => ({ userdata: sub.userdata, error, type: sub.type, nbytes });
  let entry: FdEntry;
  try {
    entry = ctx.fds.get(sub.fd);
  } catch {
    // Not an open fd: the guest learns so from the event's errno, as WASI says.
    return event(Errno.badf);
  }
  const wanted = sub.type === EventType.fd_read ? Rights.fd_read : Rights.fd_write;
  if ((entry.rights_base & (wanted | Rights.poll_fd_readwrite)) !== (wanted | Rights.poll_fd_readwrite)) {
    return event(entry.kind === "dir" ? Errno.badf : Errno.notcapable);
  }
  if (entry.kind === "stdio") {
    const is_stdin = entry.stream === 0;
    if (is_stdin !== (sub.type === EventType.fd_read)) return event(Errno.badf);
    if (!is_stdin) return event(Errno.success);
    // Nothing is known about how much is buffered; nbytes 0 means "some".
    return ctx.deps.stdin.readable() ? event(Errno.success) : "stdin";
  }
  if (entry.kind === "listener" || entry.kind === "conn") {
    const state = socket_readiness(ctx, entry, sub.type === EventType.fd_read);
    if (typeof state === "function") return state;
    return "error" in state ? event(state.error) : event(Errno.success, state.nbytes);
  }
  if (entry.kind !== "file") return event(Errno.badf);
  if (sub.type === EventType.fd_write) return event(Errno.success);
  const size = fstatSync(entry.host_fd, { bigint: true }).size;
  return event(Errno.success, size > entry.offset ? size - entry.offset : 0n);
}

function write_events(ctx: HostContext, at: number, ready: readonly Ready[]): void {
  ready.forEach((e, i) => {
    const base = at + i * Event.size;
    ctx.mem.zero(base, Event.size);
    ctx.mem.set_u64(base + Event.userdata, e.userdata);
    ctx.mem.set_u16(base + Event.error, e.error);
    ctx.mem.set_u8(base + Event.type, e.type);
    ctx.mem.set_u64(base + Event.nbytes, e.nbytes);
  });
}

function same_args(pending: PendingPoll, args: readonly number[]): boolean {
  return pending.args.length === args.length && pending.args.every((a, i) => a === args[i]);
}
