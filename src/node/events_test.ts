import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EVENT_SUBSCRIBERS_MAX, EventHub, RECENT_EVENTS_MAX, type NodeEvent } from "./events.js";

describe("event hub", () => {
  it("stamps events with the node, a number and the time, and hands them to subscribers", () => {
    const hub = new EventHub("n1", () => 42);
    const got: NodeEvent[] = [];
    const off = hub.subscribe((e) => got.push(e));
    hub.publish({ type: "node.stopping" });
    off?.();
    hub.publish({ type: "node.stopping" });
    assert.deepEqual(got, [{ type: "node.stopping", node: "n1", seq: 1, time_unix_ms: 42 }]);
    assert.deepEqual(hub.recent().map((e) => e.seq), [1, 2]);
  });

  it("keeps only the most recent events", () => {
    const hub = new EventHub("n1");
    for (let i = 0; i < RECENT_EVENTS_MAX + 10; i += 1) hub.publish({ type: "node.stopping" });
    const recent = hub.recent();
    assert.equal(recent.length, RECENT_EVENTS_MAX);
    assert.equal(recent[0]?.seq, 11);
  });

  it("gives a live event to the subscribers of the moment only: none kept, none made for nobody", () => {
    const hub = new EventHub("n1", () => 7);
    const progress = { type: "migration.progress", pid: "n1-1", to: "n2", strategy: "pre-copy", phase: "round", round: 1, bytes: 4096, memory_bytes: 65536 } as const;
    hub.live(progress);
    const got: NodeEvent[] = [];
    const off = hub.subscribe((e) => got.push(e));
    hub.live(progress);
    off?.();
    assert.deepEqual(got, [{ ...progress, node: "n1", seq: 1, time_unix_ms: 7 }]);
    assert.deepEqual(hub.recent(), [], "a live event is never among the recent");
  });

  it("refuses subscribers past its limit", () => {
    const hub = new EventHub("n1");
    for (let i = 0; i < EVENT_SUBSCRIBERS_MAX; i += 1) assert.notEqual(hub.subscribe(() => undefined), null);
    assert.equal(hub.subscribe(() => undefined), null);
  });
});
