import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

import { Errno, WasiHost, type WasiState } from "./mod.js";
import { Guest, fake_deps, remove_temp_dirs, temp_dir } from "./_testing.js";
import { ClockId, Event, EventType, SUBSCRIPTION_CLOCK_ABSTIME, Subscription } from "./_layout.js";

after(remove_temp_dirs);

const SECOND = 1_000_000_000n;

type Sub =
  | { userdata: bigint; clock: number; timeout: bigint; absolute?: boolean }
  | { userdata: bigint; type: "read" | "write"; fd: number };

type Polled = { errno: number; events: Array<{ userdata: bigint; error: number; type: number; nbytes: bigint }> };

/** Lays out subscriptions and an event buffer; `poll()` calls poll_oneoff with the same arguments each time. */
function prepare(guest: Guest, subs: Sub[]): { args: [number, number, number, number]; poll: () => Polled } {
  const in_ptr = guest.alloc(subs.length * Subscription.size);
  subs.forEach((s, i) => {
    const base = in_ptr + i * Subscription.size;
    guest.set_u64(base, s.userdata);
    const view = new DataView(guest.memory.buffer);
    if ("clock" in s) {
      view.setUint8(base + Subscription.tag, EventType.clock);
      guest.set_u32(base + Subscription.clock_id, s.clock);
      guest.set_u64(base + Subscription.clock_timeout, s.timeout);
      view.setUint16(base + Subscription.clock_flags, s.absolute ? SUBSCRIPTION_CLOCK_ABSTIME : 0, true);
    } else {
      view.setUint8(base + Subscription.tag, s.type === "read" ? EventType.fd_read : EventType.fd_write);
      guest.set_u32(base + Subscription.fd, s.fd);
    }
  });
  const out_ptr = guest.alloc(subs.length * Event.size);
  const nevents = guest.alloc(4, 4);
  const args: [number, number, number, number] = [in_ptr, out_ptr, subs.length, nevents];
  const poll = (): Polled => {
    new Uint8Array(guest.memory.buffer).fill(0xaa, out_ptr, out_ptr + subs.length * Event.size);
    guest.set_u32(nevents, 0xffffffff);
    const errno = guest.call("poll_oneoff", ...args);
    const count = guest.u32(nevents);
    const events = count === 0xffffffff ? [] : Array.from({ length: count }, (_, i) => {
      const base = out_ptr + i * Event.size;
      return { userdata: guest.u64(base), error: guest.u16(base + Event.error), type: guest.u8(base + Event.type), nbytes: guest.u64(base + Event.nbytes) };
    });
    return { errno, events };
  };
  return { args, poll };
}

describe("poll_oneoff", () => {
  test("no subscriptions is inval; an unknown tag is inval", () => {
    const { guest } = Guest.start();
    assert.equal(guest.call("poll_oneoff", guest.alloc(48), guest.alloc(32), 0, guest.alloc(4)), Errno.inval);
    const sub = guest.alloc(48);
    new DataView(guest.memory.buffer).setUint8(sub + Subscription.tag, 9);
    assert.equal(guest.call("poll_oneoff", sub, guest.alloc(32), 1, guest.alloc(4)), Errno.inval);
  });

  test("a relative monotonic timeout sleeps through the Blocker until its deadline", () => {
    const { guest, clock, blocker } = Guest.start();
    const start = clock.mono_ns;
    const { poll } = prepare(guest, [{ userdata: 42n, clock: ClockId.monotonic, timeout: SECOND }]);
    const r = poll();
    assert.equal(r.errno, Errno.success);
    assert.deepEqual(r.events, [{ userdata: 42n, error: 0, type: EventType.clock, nbytes: 0n }]);
    assert.deepEqual(blocker.calls, [{ deadline_ns: start + SECOND, stdin: false }]);
    assert.equal(clock.mono_ns, start + SECOND);
  });

  test("an absolute deadline in the past fires without waiting; absolute realtime maps onto monotonic", () => {
    const { guest, clock, blocker } = Guest.start();
    const past = prepare(guest, [{ userdata: 1n, clock: ClockId.monotonic, timeout: clock.mono_ns - 1n, absolute: true }]);
    assert.equal(past.poll().events.length, 1);
    assert.equal(blocker.calls.length, 0);
    const start = clock.mono_ns;
    const wall = prepare(guest, [{ userdata: 2n, clock: ClockId.realtime, timeout: clock.real_ns + 2n * SECOND, absolute: true }]);
    assert.deepEqual(wall.poll().events.map((e) => e.userdata), [2n]);
    assert.deepEqual(blocker.calls, [{ deadline_ns: start + 2n * SECOND, stdin: false }]);
  });

  test("the earliest of several clocks fires alone", () => {
    const { guest } = Guest.start();
    const { poll } = prepare(guest, [
      { userdata: 1n, clock: ClockId.monotonic, timeout: 3n * SECOND },
      { userdata: 2n, clock: ClockId.monotonic, timeout: SECOND },
      { userdata: 3n, clock: 99, timeout: SECOND },
    ]);
    // The unknown clock is reported at once as an event with an error.
    assert.deepEqual(poll().events.map((e) => [e.userdata, e.error]), [[3n, Errno.inval]]);
  });

  test("files are always ready; stdout is writable; bad fds report badf", () => {
    const dir = temp_dir();
    writeFileSync(join(dir, "f"), "0123456789");
    const { guest, blocker } = Guest.start({ preopens: [{ host_path: dir, guest_path: "/d" }] });
    const [, fd] = guest.open(3, "f");
    guest.read(fd, 4);
    const { poll } = prepare(guest, [
      { userdata: 1n, type: "read", fd },
      { userdata: 2n, type: "write", fd: 1 },
      { userdata: 3n, type: "read", fd: 77 },
      { userdata: 4n, clock: ClockId.monotonic, timeout: SECOND },
    ]);
    const r = poll();
    assert.deepEqual(
      r.events.map((e) => [e.userdata, e.error, e.type, e.nbytes]),
      [
        [1n, 0, EventType.fd_read, 6n],
        [2n, 0, EventType.fd_write, 0n],
        [3n, Errno.badf, EventType.fd_read, 0n],
      ],
    );
    assert.equal(blocker.calls.length, 0);
    guest.host.close();
  });

  test("stdin readiness waits with stdin: true and wakes on data", () => {
    const { guest, stdin, blocker } = Guest.start();
    blocker.script.push("ready", () => {
      stdin.push("x");
      return "ready";
    });
    const { poll } = prepare(guest, [
      { userdata: 7n, type: "read", fd: 0 },
      { userdata: 8n, clock: ClockId.monotonic, timeout: 10n * SECOND },
    ]);
    const r = poll();
    assert.deepEqual(r.events.map((e) => e.userdata), [7n]);
    assert.equal(blocker.calls.length, 2, "a spurious ready is re-checked");
    assert.equal(blocker.calls[0]?.stdin, true);
  });
});

describe("poll_oneoff suspension protocol", () => {
  test("suspend: no side effect, saved deadline; after restore the repeat sleeps only the rest", () => {
    const { guest, clock, blocker } = Guest.start();
    const start = clock.mono_ns;
    blocker.script.push(() => {
      clock.advance(300_000_000n);
      return "suspend";
    });
    const { args, poll } = prepare(guest, [{ userdata: 5n, clock: ClockId.monotonic, timeout: SECOND }]);
    const first = poll();
    assert.equal(first.errno, Errno.success);
    assert.deepEqual(first.events, [], "nevents untouched");
    assert.equal(guest.u8(args[1]), 0xaa, "event buffer untouched");

    const state = JSON.parse(JSON.stringify(guest.host.capture())) as WasiState;
    assert.deepEqual(state.pending, {
      import: "poll_oneoff",
      args: [...args],
      clocks: [{ index: 0, timeout_ns: SECOND.toString(), deadline_ns: (start + SECOND).toString() }],
    });
    assert.equal(BigInt(state.monotonic_ns), start + 300_000_000n);

    // Another host whose monotonic clock reads far lower.
    const fresh = fake_deps();
    fresh.clock.mono_ns = 17n;
    const restored = WasiHost.restore(state, fresh.deps, { preopens: state.preopens });
    fresh.blocker.host = restored;
    const again = new Guest(restored, guest.memory);
    again.set_u32(args[3], 0xffffffff);
    assert.equal(again.call("poll_oneoff", ...args), Errno.success);
    assert.equal(again.u32(args[3]), 1);
    assert.equal(again.u64(args[1]), 5n);
    assert.equal(fresh.clock.mono_ns - 17n, 700_000_000n, "slept the remaining 0.7 s");
    assert.equal(restored.capture().pending, null);
  });

  test("on the same host the repeat also continues from the saved deadline", () => {
    const { guest, clock, blocker } = Guest.start();
    const start = clock.mono_ns;
    blocker.script.push(() => {
      clock.advance(SECOND / 4n);
      return "suspend";
    });
    const { poll } = prepare(guest, [{ userdata: 1n, clock: ClockId.monotonic, timeout: SECOND }]);
    assert.deepEqual(poll().events, []);
    clock.advance(5n * SECOND); // the guest clock would not move while suspended in a real runtime; here it does
    assert.deepEqual(poll().events.map((e) => e.userdata), [1n]);
    assert.equal(blocker.calls.length, 1, "deadline already passed: no second wait");
    assert.equal(clock.mono_ns, start + SECOND / 4n + 5n * SECOND);
  });

  test("a different call after a suspension does not reuse its deadline", () => {
    const { guest, clock, blocker } = Guest.start();
    blocker.script.push("suspend");
    const a = prepare(guest, [{ userdata: 1n, clock: ClockId.monotonic, timeout: SECOND }]);
    a.poll();
    clock.advance(SECOND);
    const b = prepare(guest, [{ userdata: 2n, clock: ClockId.monotonic, timeout: SECOND }]);
    const now = clock.mono_ns;
    assert.deepEqual(b.poll().events.map((e) => e.userdata), [2n]);
    assert.equal(blocker.calls.at(-1)?.deadline_ns, now + SECOND);
    assert.equal(guest.host.capture().pending, null);
  });
});
