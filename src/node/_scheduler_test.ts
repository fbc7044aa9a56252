/** The CPU scheduler of `--cpus`: at most N guests compute, fairly; figures for the load vector. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { GuestProcess, GuestUsage } from "../runtime/mod.js";
import { CpuScheduler } from "./_scheduler.js";

/** A guest as the scheduler sees it: counters that advance as a CPU-bound (or waiting) guest's would. */
class FakeGuest {
  usage_now: GuestUsage = { busy_ms: 0, paused_ms: 0, blocked: false };
  held = false;
  /** Hibernated: no worker; the node leaves it out of the passes. */
  hibernated = false;
  constructor(readonly waits = false) {}
  usage(): GuestUsage {
    return { ...this.usage_now };
  }
  hold(paused: boolean): void {
    this.held = paused;
  }
  /** `ms` pass: it computes unless held or waiting. */
  advance(ms: number): void {
    if (this.waits) this.usage_now = { ...this.usage_now, blocked: true };
    else if (this.held) this.usage_now = { ...this.usage_now, paused_ms: this.usage_now.paused_ms + ms, blocked: true };
    else this.usage_now = { ...this.usage_now, busy_ms: this.usage_now.busy_ms + ms, blocked: false };
  }
}

function asProcs(gs: FakeGuest[]): GuestProcess[] {
  return gs as unknown as GuestProcess[];
}

describe("CpuScheduler", () => {
  it("runs at most cpus guests at once, and shares time fairly among them", () => {
    const s = new CpuScheduler(2);
    const gs = [new FakeGuest(), new FakeGuest(), new FakeGuest(), new FakeGuest(), new FakeGuest()];
    let now = 0;
    for (let i = 0; i < 500; i += 1) {
      s.pass(asProcs(gs), now);
      assert.ok(gs.filter((g) => !g.held).length <= 2, "never more than 2 computing");
      for (const g of gs) g.advance(100);
      now += 100;
    }
    const busy = gs.map((g) => g.usage_now.busy_ms);
    const total = busy.reduce((a, b) => a + b, 0);
    assert.equal(total, 500 * 100 * 2, "both cores always busy");
    for (const b of busy) assert.ok(Math.abs(b - total / 5) <= 200, `each got a fifth (±2 slices): ${busy.join(", ")}`);
    assert.ok(Math.abs(s.sample.runnable - 5) < 0.1, `five guests want a core each (${s.sample.runnable})`);
    assert.ok(Math.abs(s.sample.cpu_used - 2) < 0.01, "two cores used");
    assert.deepEqual([s.sample.computing, s.sample.queued], [2, 3], "two computing, three waiting their turn");
  });

  it("holds no guest that waits, and counts it as wanting no CPU", () => {
    const s = new CpuScheduler(1);
    const gs = [new FakeGuest(true), new FakeGuest(true), new FakeGuest()];
    let now = 0;
    for (let i = 0; i < 50; i += 1) {
      s.pass(asProcs(gs), now);
      for (const g of gs) g.advance(100);
      now += 100;
    }
    assert.ok(gs.every((g) => !g.held), "one computing guest on one core: nobody held");
    assert.ok(Math.abs(s.sample.runnable - 1) < 0.05, `one core wanted (${s.sample.runnable})`);
  });

  it("starts a newcomer at the least virtual time, so it neither starves nor waits behind the others", () => {
    const s = new CpuScheduler(1);
    const old = [new FakeGuest(), new FakeGuest()];
    let now = 0;
    for (let i = 0; i < 100; i += 1) {
      s.pass(asProcs(old), now);
      for (const g of old) g.advance(100);
      now += 100;
    }
    const late = new FakeGuest();
    const all = [...old, late];
    for (let i = 0; i < 30; i += 1) {
      s.pass(asProcs(all), now);
      for (const g of all) g.advance(100);
      now += 100;
    }
    const got = late.usage_now.busy_ms;
    assert.ok(got >= 800 && got <= 1200, `the newcomer had about a third of 30 slices (${got} ms)`);
  });
  it("sets a guest that hibernated aside with its figures, wanting no core, and takes it back as it was when it wakes", () => {
    const s = new CpuScheduler(1);
    const [a, b] = [new FakeGuest(), new FakeGuest()];
    let now = 0;
    for (let i = 0; i < 20; i += 1) {
      s.pass(asProcs([a, b]), now);
      for (const g of [a, b]) g.advance(100);
      now += 100;
    }
    const before = s.slot(asProcs([a])[0] as GuestProcess);
    assert.ok(before !== undefined && before.cpu_ms > 0);
    const { cpu_ms, first_seen_ms } = before;
    // a hibernates: the node passes only the guests that are awake.
    a.hibernated = true;
    for (let i = 0; i < 20; i += 1) {
      s.pass(asProcs([b]), now);
      b.advance(100);
      now += 100;
    }
    const asleep = s.slot(asProcs([a])[0] as GuestProcess);
    assert.ok(asleep !== undefined, "its slot is kept while it sleeps");
    assert.equal(asleep.cpu_share, 0, "a hibernated guest wants no core");
    assert.equal(a.held, false, "nor is it held");
    assert.ok(Math.abs(s.sample.runnable - 1) < 0.05, `one guest wants a core (${s.sample.runnable})`);
    // It wakes in a new worker whose counters moved on meanwhile: none of that is counted as computing here.
    a.hibernated = false;
    a.usage_now = { busy_ms: a.usage_now.busy_ms + 5000, paused_ms: a.usage_now.paused_ms, blocked: false };
    const floor = s.slot(asProcs([b])[0] as GuestProcess)?.vruntime_ms ?? 0;
    assert.ok(floor > asleep.vruntime_ms, "b computed on while a slept");
    s.pass(asProcs([a, b]), now);
    const back = s.slot(asProcs([a])[0] as GuestProcess);
    assert.ok(back !== undefined);
    assert.equal(back.cpu_ms, cpu_ms, "its CPU time is what it was");
    assert.equal(back.first_seen_ms, first_seen_ms, "it is no newcomer (a move's cooldown counts from its arrival)");
    assert.equal(back.vruntime_ms, floor, "it starts no further behind than the guests here: no burst of catching up");
  });

  it("a pass run early, when a guest left, hands its core over at once and leaves the shares as a slice would measure them", () => {
    const s = new CpuScheduler(1);
    const [a, b, c] = [new FakeGuest(), new FakeGuest(), new FakeGuest()];
    let now = 0;
    for (let i = 0; i < 30; i += 1) {
      s.pass(asProcs([a, b, c]), now);
      for (const g of [a, b, c]) g.advance(100);
      now += 100;
    }
    const running = [a, b, c].find((g) => !g.held) as FakeGuest;
    const waiting = [a, b, c].filter((g) => g !== running);
    // The guest computing ends 3 ms into a slice: an early pass gives the core to one that waits.
    now += 3;
    for (const g of waiting) g.advance(3);
    s.pass(asProcs(waiting), now);
    assert.equal(waiting.filter((g) => !g.held).length, 1, "the core went to a waiting guest at once");
    // Another early pass 2 ms later (a second guest left): the one let go has not been counted computing yet.
    now += 2;
    s.pass(asProcs(waiting), now);
    for (const g of waiting) {
      const slot = s.slot(asProcs([g])[0] as GuestProcess);
      assert.ok(slot !== undefined && slot.cpu_share > 0.95, `a CPU-bound guest's share fell after a 3 ms window: ${slot?.cpu_share}`);
    }
    assert.ok(Math.abs(s.sample.runnable - 2) < 0.1, `two guests want a core (${s.sample.runnable})`);
  });
});
