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
});
