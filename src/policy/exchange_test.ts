import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as fc from "fast-check";
import { ageOf, loadCopy, LoadView, type LoadEntry } from "./exchange.js";
import { nodeLoad } from "./_testing.js";

function entry(node: string, version: number, age_ms: number, runnable = 0): LoadEntry {
  return { load: nodeLoad(node, { runnable }), version, age_ms };
}

describe("LoadView", () => {
  it("keeps the entry with the higher version, whatever its age", () => {
    const v = new LoadView("me");
    v.merge([entry("a", 5, 100, 1)], 0);
    assert.equal(v.merge([entry("a", 4, 0, 2)], 10), 0);
    assert.equal(v.get("a")?.load.runnable, 1);
    assert.equal(v.merge([entry("a", 6, 900, 3)], 20), 1);
    assert.equal(v.get("a")?.load.runnable, 3);
  });

  it("on equal versions keeps the younger copy", () => {
    const v = new LoadView("me");
    v.merge([entry("a", 5, 300, 1)], 0);
    assert.equal(v.merge([entry("a", 5, 100, 2)], 0), 1);
    assert.equal(v.get("a")?.load.runnable, 2);
    assert.equal(v.merge([entry("a", 5, 400, 3)], 0), 0);
  });

  it("never holds an entry about itself", () => {
    const v = new LoadView("me");
    assert.equal(v.merge([entry("me", 9, 0)], 0), 0);
    assert.equal(v.records().length, 0);
  });

  it("ages entries on its own clock from the age they arrived with", () => {
    const v = new LoadView("me");
    v.merge([entry("a", 1, 250)], 1000);
    assert.equal(ageOf(v.get("a")!, 1500), 750);
  });

  it("when full, a younger newcomer replaces the oldest entry and an older one is dropped", () => {
    const v = new LoadView("me", 2);
    v.merge([entry("a", 1, 100), entry("b", 1, 900)], 0);
    assert.equal(v.merge([entry("c", 1, 1000)], 0), 0);
    assert.equal(v.merge([entry("c", 1, 50)], 0), 1);
    assert.deepEqual(v.records().map((r) => r.load.node).sort(), ["a", "c"]);
  });

  it("sends its own entry first, then the freshest it holds, aged to now", () => {
    const v = new LoadView("me");
    v.merge([entry("a", 1, 400), entry("b", 1, 100), entry("c", 1, 300), entry("d", 1, 200)], 0);
    const w = v.window(entry("me", 7, 0), { size: 3, now_ms: 50 });
    assert.deepEqual(w.map((e) => [e.load.node, e.age_ms]), [["me", 0], ["b", 150], ["d", 250]]);
  });

  it("expires entries past the age limit and forgets nodes", () => {
    const v = new LoadView("me");
    v.merge([entry("a", 1, 100), entry("b", 1, 5000), entry("c", 1, 0)], 0);
    assert.equal(v.expire(1000, 0), 1);
    assert.equal(v.get("b"), undefined);
    assert.equal(v.forget("a"), true);
    assert.deepEqual(v.records().map((r) => r.load.node), ["c"]);
  });

  it("keeps its own copy of every figure of a merged load", () => {
    const v = new LoadView("me");
    const load = { ...nodeLoad("a", { cpus: 8, speed: 1.5, processes: 3, movable: 2, runnable: 3, cpu_used: 2.5, memory_used_bytes: 7, remote_bytes_per_s: 9, labels: { gpu: "yes" }, draining: true }) };
    v.merge([{ load, version: 1, age_ms: 0 }], 0);
    assert.deepEqual(loadCopy(v.get("a")!.load), load);
    assert.deepEqual(JSON.parse(JSON.stringify(v.get("a"))), { load, version: 1, age_ms: 0, received_ms: 0 }, "a record serialises as plain data");
    assert.notEqual(v.get("a")?.load, load);
    v.account("a", { processes: 1, runnable: 1, memory_bytes: 5 });
    assert.equal(load.runnable, 3, "the sender's vector is not touched");
    assert.equal(v.get("a")?.load.memory_used_bytes, 12);
  });

  it("fills a place freed by forgetting or expiry with every figure of the next newcomer, in a small view or a large one", () => {
    for (const size of [3, 64]) {
      const v = new LoadView("me", size);
      v.merge([entry("a", 1, 0, 1), entry("b", 1, 0, 2), entry("x", 1, 9000, 5)], 0);
      assert.equal(v.forget("a"), true);
      assert.equal(v.expire(1000, 0), 1);
      const c = { ...nodeLoad("c", { cpus: 4, speed: 0.5, processes: 6, movable: 1, runnable: 5.5, cpu_used: 3.5, memory_used_bytes: 11, remote_bytes_per_s: 13, labels: { gpu: "yes" }, draining: true }) };
      const d = { ...nodeLoad("d", { runnable: 7 }) };
      assert.equal(v.merge([{ load: c, version: 3, age_ms: 7 }, { load: d, version: 4, age_ms: 1 }], 10), 2);
      assert.deepEqual(loadCopy(v.get("c")!.load), c);
      assert.equal(v.get("c")?.version, 3);
      assert.equal(ageOf(v.get("c")!, 10), 7);
      assert.deepEqual(loadCopy(v.get("d")!.load), d);
      assert.equal(v.get("b")?.load.runnable, 2);
      assert.deepEqual(v.records().map((r) => r.load.node).sort(), ["b", "c", "d"]);
      assert.equal(v.merge([entry("e", 1, 0)], 10), 1);
      // Full at 3, the view gives the oldest entry's place (b, 10 ms old) to the newcomer.
      assert.deepEqual(v.records().map((r) => r.load.node).sort(), size === 3 ? ["c", "d", "e"] : ["b", "c", "d", "e"]);
      assert.deepEqual(loadCopy(v.get("c")!.load), c, "the places that moved keep their figures");
      assert.deepEqual(loadCopy(v.get("d")!.load), d);
    }
  });

  it("accounts a placement in the held entry until fresher news", () => {
    const v = new LoadView("me");
    v.merge([entry("a", 1, 0, 2)], 0);
    v.account("a", { processes: 1, runnable: 1, memory_bytes: 1024 });
    assert.equal(v.get("a")?.load.runnable, 3);
    v.merge([entry("a", 2, 0, 2)], 0);
    assert.equal(v.get("a")?.load.runnable, 2);
  });

  it("holds, sends and forgets what a plain map of entries would, whatever the sequence of news (property)", () => {
    // The model: the rules of a view, written the obvious way. Times are whole milliseconds and each age sent gets its own fraction (a multiple of 1/1024), so sums are exact and no two held ages are ever equal: "the oldest" and "the freshest" have one answer.
    type Model = Map<string, { version: number; age_ms: number; received_ms: number; runnable: number }>;
    const node = fc.constantFrom("a", "b", "c", "d", "e", "f", "g", "me");
    const op = fc.oneof(
      fc.record({ kind: fc.constant("merge" as const), window: fc.array(fc.record({ node, version: fc.integer({ min: 0, max: 4 }), age_ms: fc.integer({ min: 0, max: 5000 }), runnable: fc.integer({ min: 0, max: 9 }) }), { maxLength: 5 }) }),
      fc.record({ kind: fc.constant("expire" as const), age_max_ms: fc.integer({ min: 0, max: 6000 }) }),
      fc.record({ kind: fc.constant("forget" as const), node }),
      fc.record({ kind: fc.constant("account" as const), node, runnable: fc.integer({ min: -1, max: 2 }) }),
      fc.record({ kind: fc.constant("window" as const), size: fc.integer({ min: 1, max: 5 }) }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.array(fc.tuple(op, fc.integer({ min: 0, max: 300 })), { maxLength: 60 }), (max, ops) => {
        const entries_max = max > 8 ? 40 : max; // small views scan, the large one hashes
        const v = new LoadView("me", entries_max);
        const model: Model = new Map();
        const age = (e: { age_ms: number; received_ms: number }, now: number): number => e.age_ms + (now - e.received_ms);
        let now = 0;
        let sent_n = 0;
        for (const [o, dt] of ops) {
          now += dt;
          if (o.kind === "merge") {
            const window = o.window.map((w) => ({ ...w, age_ms: w.age_ms + (sent_n += 1) / 1024 }));
            let taken = 0;
            for (const w of window) {
              if (w.node === "me") continue;
              const held = model.get(w.node);
              const fresh = { version: w.version, age_ms: w.age_ms, received_ms: now, runnable: w.runnable };
              if (held !== undefined) {
                if (w.version > held.version || (w.version === held.version && w.age_ms < age(held, now))) {
                  model.set(w.node, fresh);
                  taken += 1;
                }
                continue;
              }
              if (model.size < entries_max) {
                model.set(w.node, fresh);
                taken += 1;
                continue;
              }
              const [oldest, e] = [...model].reduce((a, b) => (age(b[1], now) > age(a[1], now) ? b : a));
              if (age(e, now) <= w.age_ms) continue;
              model.delete(oldest);
              model.set(w.node, fresh);
              taken += 1;
            }
            const sent = window.map((w) => ({ load: nodeLoad(w.node, { runnable: w.runnable }), version: w.version, age_ms: w.age_ms }));
            assert.equal(v.merge(sent, now), taken);
          } else if (o.kind === "expire") {
            let dropped = 0;
            for (const [n, e] of model) if (age(e, now) > o.age_max_ms) (model.delete(n), (dropped += 1));
            assert.equal(v.expire(o.age_max_ms, now), dropped);
          } else if (o.kind === "forget") {
            assert.equal(v.forget(o.node), model.delete(o.node));
          } else if (o.kind === "account") {
            const e = model.get(o.node);
            if (e !== undefined) e.runnable += o.runnable;
            assert.equal(v.account(o.node, { processes: 0, runnable: o.runnable, memory_bytes: 0 }), e !== undefined);
          } else {
            const own = { load: nodeLoad("me"), version: 9, age_ms: 0 };
            const freshest = [...model].sort((a, b) => age(a[1], now) - age(b[1], now)).slice(0, o.size - 1);
            const sent = v.window(own, { size: o.size, now_ms: now });
            assert.equal(sent[0], own);
            assert.deepEqual(
              sent.slice(1).map((e) => [e.load.node, e.version, e.load.runnable]),
              freshest.map(([n, e]) => [n, e.version, e.runnable]),
            );
            sent.slice(1).forEach((e, i) => assert.equal(e.age_ms, age((freshest[i] as [string, { age_ms: number; received_ms: number }])[1], now)));
          }
          const held = v.records().map((r) => [r.load.node, r.version, r.load.runnable, r.age_ms, r.received_ms] as const);
          assert.deepEqual(
            held.map(([n]) => n).sort(),
            [...model.keys()].sort(),
          );
          for (const [n, version, runnable] of held) {
            const e = model.get(n)!;
            assert.deepEqual([version, runnable], [e.version, e.runnable], `entry ${n}`);
            assert.equal(ageOf(v.get(n)!, now), age(e, now));
          }
        }
      }),
      { numRuns: 300, seed: 7 },
    );
  });
});
