import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Prng } from "../_prng.js";
import { EventKind, EventQueue } from "./_events.js";

describe("EventQueue", () => {
  it("pops in time order, ties in insertion order, across growth", () => {
    const q = new EventQueue();
    const r = new Prng(7);
    const pushed: [number, number][] = [];
    for (let i = 0; i < 5000; i += 1) {
      const t = r.int(100);
      q.push(t, EventKind.round, i);
      pushed.push([t, i]);
    }
    pushed.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    for (const [t, i] of pushed) {
      assert.ok(q.pop());
      assert.deepEqual([q.time, q.subject], [t, i]);
    }
    assert.equal(q.pop(), false);
  });

  it("pops what a sorted list would when pushes and pops interleave", () => {
    const q = new EventQueue();
    const r = new Prng(11);
    const pending: [number, number][] = [];
    let subject = 0;
    for (let step = 0; step < 20_000; step += 1) {
      if (pending.length === 0 || r.chance(0.55)) {
        // Few distinct times, so ties are common and their order is checked.
        const t = r.int(50) / 4;
        q.push(t, EventKind.complete, subject);
        pending.push([t, subject]);
        subject += 1;
        continue;
      }
      pending.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      const [t, i] = pending.shift() as [number, number];
      assert.ok(q.pop());
      assert.deepEqual([q.time, q.subject], [t, i]);
    }
    assert.equal(q.size, pending.length);
  });
});
