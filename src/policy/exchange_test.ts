import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ageOf, LoadView, type LoadEntry } from "./exchange.js";
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
    assert.deepEqual(v.get("a")?.load, load);
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
      assert.deepEqual(v.get("c")?.load, c);
      assert.equal(v.get("c")?.version, 3);
      assert.equal(ageOf(v.get("c")!, 10), 7);
      assert.deepEqual(v.get("d")?.load, d);
      assert.equal(v.get("b")?.load.runnable, 2);
      assert.deepEqual(v.records().map((r) => r.load.node).sort(), ["b", "c", "d"]);
      assert.equal(v.merge([entry("e", 1, 0)], 10), 1);
      // Full at 3, the view gives the oldest entry's place (b, 10 ms old) to the newcomer.
      assert.deepEqual(v.records().map((r) => r.load.node).sort(), size === 3 ? ["c", "d", "e"] : ["b", "c", "d", "e"]);
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
});
