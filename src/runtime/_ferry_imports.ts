/**
 * The `ferry` import module (issue 5): what a guest can ask of Ferry beyond
 * WASI — its pid, messages to other processes by pid, and moving itself.
 * Runs in the process's worker. `send`, `recv` and `migrate` may block, and
 * so are safe points: they either complete with their effect or, when a
 * suspend comes, return having done nothing (Asyncify calls them again after
 * the rewind). Errors are WASI errno values (docs/links.md).
 *
 *   pid(buf, cap) -> length of the pid (written up to cap)
 *   send(pid, pid_len, data, len) -> errno
 *   recv(from, from_cap, from_len_out, data, cap, len_out, timeout_ms: i64) -> errno
 *       (timeout_ms < 0: wait forever; 0: do not wait)
 *   migrate(node, node_len) -> errno (returns on the node asked for, or with the reason it could not go)
 */
import { Errno, type Blocker } from "../wasi/mod.js";
import type { LaneWriter } from "./_lane_writer.js";
import { MigrateSlot, OUTBOX_MAX, SLOT_INBOX_BACKLOG, SLOT_MIGRATE, SLOT_OUT_PENDING, SLOT_OUTBOX_SIGNALLED, SLOT_OUTBOX_WAITING } from "./_control.js";
import { MESSAGE_BYTES_MAX, PID_BYTES_MAX, type MessageRing } from "./_inbox.js";
import type { FromWorker } from "./_protocol.js";

/** Names of the `ferry` imports that can block (the instrumenter makes them unwindable). */
export const FERRY_BLOCKING = ["send", "recv", "migrate"] as const;

/** What the imports need from their worker. */
export interface FerryContext {
  memory(): WebAssembly.Memory;
  control: Int32Array;
  inbox: MessageRing;
  /** Where `send` puts messages for the controller to drain (a record's peer is the receiver). */
  outbox: MessageRing;
  /** Writes messages to a leased pid on a lane (absent: no pid, or no lanes). */
  lane?: LaneWriter | null;
  /** The process's pid, or null outside a cluster (`ferry exec`): the imports then answer ENOSYS. */
  pid: string | null;
  blocker: Blocker;
  monotonic_ns(): bigint;
  post(msg: FromWorker): void;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The import functions, by name. */
export function ferryImports(ctx: FerryContext): Record<string, (...args: never[]) => unknown> {
  // Views of the guest's memory, made again only when a call reaches past them (the memory grew) or the memory is
  // another one. The memory is shared, so a view made before it grew stays valid for the bytes it covers. Made
  // for every call, they were about a fifth of a guest's time exchanging small messages (a CPU profile of two
  // nodes at 1,024 messages in flight): for a shared memory, each read of `buffer` also freezes it again.
  let memory: WebAssembly.Memory | null = null;
  let view: Uint8Array<ArrayBufferLike> = new Uint8Array(0);
  let words: DataView<ArrayBufferLike> = new DataView(view.buffer);
  const viewTo = (end: number): Uint8Array => {
    const now = ctx.memory();
    if (now !== memory || end > view.length) {
      memory = now;
      view = new Uint8Array(now.buffer);
      words = new DataView(view.buffer);
    }
    return view;
  };
  /** Whether [ptr, ptr + len) lies inside the memory. */
  const within = (ptr: number, len: number): boolean => ptr >>> 0 === ptr && len >>> 0 === len && ptr + len <= viewTo(ptr + len).length;
  const bytes = (ptr: number, len: number): Uint8Array | null => (within(ptr, len) ? view.subarray(ptr, ptr + len) : null);
  const u32 = (ptr: number, value: number): boolean => {
    if (ptr >>> 0 !== ptr || ptr + 4 > viewTo(ptr + 4).length) return false;
    words.setUint32(ptr, value, true);
    return true;
  };
  const pid = ctx.pid === null ? null : encoder.encode(ctx.pid);
  return {
    pid: ((buf: number, cap: number): number => {
      if (pid === null) return 0;
      const out = bytes(buf, Math.min(cap, pid.length));
      out?.set(pid.subarray(0, out.length));
      return pid.length;
    }) as (...args: never[]) => unknown,

    send: ((to_ptr: number, to_len: number, data_ptr: number, len: number): number => {
      if (pid === null) return Errno.nosys;
      if (!within(to_ptr, to_len) || !within(data_ptr, len)) return Errno.fault;
      if (to_len === 0 || to_len > PID_BYTES_MAX) return Errno.inval;
      if (len > MESSAGE_BYTES_MAX) return Errno.msgsize;
      // A bounded outbox: a fast sender waits for its messages to be delivered.
      while (Atomics.load(ctx.control, SLOT_OUT_PENDING) >= OUTBOX_MAX) {
        if (ctx.blocker.wait({ until: () => Atomics.load(ctx.control, SLOT_OUT_PENDING) < OUTBOX_MAX }) === "suspend") return Errno.success;
      }
      // Room in the ring (for a numbered record: a lane's message may be one): the controller drains it whenever told, and wakes a send that waits.
      if (!ctx.outbox.fits(to_len, len, true)) {
        Atomics.store(ctx.control, SLOT_OUTBOX_WAITING, 1);
        const waited = ctx.blocker.wait({ until: () => ctx.outbox.fits(to_len, len, true) });
        Atomics.store(ctx.control, SLOT_OUTBOX_WAITING, 0);
        if (waited === "suspend") return Errno.success;
      }
      Atomics.add(ctx.control, SLOT_OUT_PENDING, 1);
      // Straight from the guest's memory: a view covering both parts (it only grows).
      const m = viewTo(Math.max(to_ptr + to_len, data_ptr + len));
      // On a lane (`_lane_writer.ts`): to the receiver's node directly, and its node learns of it from the answer.
      const laned = ctx.lane?.send(m, to_ptr, to_len, data_ptr, len, ctx.outbox) ?? null;
      if (laned === "lane") return Errno.success;
      if (laned === null) ctx.outbox.writeFrom(m, to_ptr, to_len, m, data_ptr, len);
      // One message between threads per burst: the controller clears the flag before it drains.
      if (Atomics.exchange(ctx.control, SLOT_OUTBOX_SIGNALLED, 1) === 0) ctx.post({ type: "sent" });
      return Errno.success;
    }) as (...args: never[]) => unknown,

    recv: ((from_ptr: number, from_cap: number, from_len_ptr: number, data_ptr: number, cap: number, len_ptr: number, timeout_ms: bigint): number => {
      if (pid === null) return Errno.nosys;
      const deadline_ns = timeout_ms < 0n ? undefined : ctx.monotonic_ns() + timeout_ms * 1_000_000n;
      for (;;) {
        const next = ctx.inbox.peek();
        if (next !== null) {
          if (!u32(from_len_ptr, next.from_len) || !u32(len_ptr, next.data_len)) return Errno.fault;
          if (next.from_len > from_cap || next.data_len > cap) return Errno.msgsize;
          if (!within(from_ptr, next.from_len) || !within(data_ptr, next.data_len)) return Errno.fault;
          const m = viewTo(Math.max(from_ptr + next.from_len, data_ptr + next.data_len));
          ctx.inbox.takeInto(m, from_ptr, m, data_ptr);
          if (Atomics.load(ctx.control, SLOT_INBOX_BACKLOG) !== 0) ctx.post({ type: "inbox-read" });
          return Errno.success;
        }
        const options = deadline_ns === undefined ? { until: () => !ctx.inbox.empty } : { until: () => !ctx.inbox.empty, deadline_ns };
        const waited = ctx.blocker.wait(options);
        if (waited === "suspend") return Errno.success;
        if (waited === "timeout") return Errno.timedout;
      }
    }) as (...args: never[]) => unknown,

    migrate: ((node_ptr: number, node_len: number): number => {
      if (pid === null) return Errno.nosys;
      const node = bytes(node_ptr, node_len);
      if (node === null) return Errno.fault;
      if (node_len === 0) return Errno.inval;
      if (Atomics.load(ctx.control, SLOT_MIGRATE) === MigrateSlot.idle) {
        Atomics.store(ctx.control, SLOT_MIGRATE, MigrateSlot.requested);
        ctx.post({ type: "migrate", node: decoder.decode(node) });
      }
      for (;;) {
        const state = Atomics.load(ctx.control, SLOT_MIGRATE);
        if (state === MigrateSlot.done || state < 0) {
          Atomics.store(ctx.control, SLOT_MIGRATE, MigrateSlot.idle);
          return state < 0 ? -state : Errno.success;
        }
        // The migration itself suspends the guest right here; it returns after the rewind, on the new node.
        if (ctx.blocker.wait({ until: () => Atomics.load(ctx.control, SLOT_MIGRATE) !== MigrateSlot.requested }) === "suspend") return Errno.success;
      }
    }) as (...args: never[]) => unknown,
  };
}
