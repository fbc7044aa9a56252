import { describe, test } from "node:test";
import assert from "node:assert/strict";

import { Errno, WasiHost, type WasiState } from "./mod.js";
import { GuestClock, CLOCK_RESOLUTION_NS } from "./clocks.js";
import { FakeClock, Guest, fake_deps } from "./_testing.js";
import { ClockId } from "./_layout.js";

function time(guest: Guest, id: number): [number, bigint] {
  const out = guest.alloc(8);
  const errno = guest.call("clock_time_get", id, 1n, out);
  return [errno, guest.u64(out)];
}

describe("clocks", () => {
  test("clock_time_get reads the injected clocks; unknown clocks are inval", () => {
    const { guest, clock } = Guest.start();
    assert.deepEqual(time(guest, ClockId.realtime), [Errno.success, clock.real_ns]);
    assert.deepEqual(time(guest, ClockId.monotonic), [Errno.success, clock.mono_ns]);
    assert.deepEqual(time(guest, ClockId.process_cputime), [Errno.success, clock.mono_ns]);
    assert.deepEqual(time(guest, ClockId.thread_cputime), [Errno.success, clock.mono_ns]);
    assert.equal(time(guest, 4)[0], Errno.inval);
    const res = guest.alloc(8);
    assert.equal(guest.call("clock_res_get", ClockId.monotonic, res), Errno.success);
    assert.equal(guest.u64(res), CLOCK_RESOLUTION_NS);
    assert.equal(guest.call("clock_res_get", 9, res), Errno.inval);
  });

  test("guest monotonic never goes backwards when the host clock does", () => {
    const host = new FakeClock();
    const clock = new GuestClock(host);
    const a = clock.monotonic_ns();
    host.mono_ns -= 1_000_000n;
    assert.equal(clock.monotonic_ns(), a);
    host.mono_ns += 3_000_000n;
    assert.equal(clock.monotonic_ns(), a + 2_000_000n);
  });

  test("a restored clock continues from the captured value, on a host whose clock reads lower", () => {
    const { guest, clock } = Guest.start();
    clock.advance(123n);
    const before = time(guest, ClockId.monotonic)[1];
    const state = JSON.parse(JSON.stringify(guest.host.capture())) as WasiState;
    assert.equal(state.monotonic_ns, before.toString());

    const fresh = fake_deps();
    fresh.clock.mono_ns = 10n; // another machine, booted recently
    const restored = new Guest(WasiHost.restore(state, fresh.deps, { preopens: state.preopens }));
    assert.equal(time(restored, ClockId.monotonic)[1], before);
    fresh.clock.mono_ns -= 5n;
    assert.equal(time(restored, ClockId.monotonic)[1], before);
    fresh.clock.mono_ns += 1_005n;
    assert.equal(time(restored, ClockId.monotonic)[1], before + 1_000n);
    assert.equal(restored.host.monotonic_ns(), before + 1_000n);
  });

  test("a restored clock never goes below the capture even on a host whose clock reads higher", () => {
    const { guest } = Guest.start();
    const state = guest.host.capture();
    const fresh = fake_deps();
    fresh.clock.mono_ns = 10n ** 18n;
    const restored = new Guest(WasiHost.restore(state, fresh.deps, { preopens: state.preopens }));
    assert.equal(time(restored, ClockId.monotonic)[1], BigInt(state.monotonic_ns));
  });
});
