import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { policyParams } from "./params.js";
import { place, type NewProcess } from "./place.js";
import { nodeLoad, random, viewOf } from "./_testing.js";

const p: NewProcess = { memory_bytes: 1024 ** 2, requires: {}, peer_nodes: [] };
const input = (local = nodeLoad("me", { runnable: 4 }), others = [nodeLoad("a", { runnable: 2 }), nodeLoad("b", { runnable: 1 })], process: NewProcess = p) => ({ process, now_ms: 0, local, view: viewOf(others), random: random() });

describe("placement at start", () => {
  it("balance: where it runs fastest", () => {
    const r = place(input(nodeLoad("me", { runnable: 6 }), [nodeLoad("a", { runnable: 5 }), nodeLoad("b", { runnable: 9 })]), policyParams());
    assert.deepEqual([r.kind, r.kind === "node" && r.node, r.detail], ["node", "a", "fastest for it (slowdown 1.50, 5 runnable on 4 cores)"]);
    assert.deepEqual(JSON.parse(JSON.stringify(r)), { kind: "node", node: "a", detail: r.detail });
  });
  it("prefers its peers' node when that costs nothing", () => {
    const r = place(input(undefined, undefined, { ...p, peer_nodes: ["a"] }), policyParams());
    assert.equal(r.kind === "node" && r.node, "a");
  });
  it("only where its requirements hold, never on a drained node", () => {
    const others = [nodeLoad("a", { labels: { zone: "x" }, draining: true }), nodeLoad("b", { runnable: 3, labels: { zone: "x" } }), nodeLoad("c")];
    const r = place(input(nodeLoad("me"), others, { ...p, requires: { zone: "x" } }), policyParams());
    assert.equal(r.kind === "node" && r.node, "b");
  });
  it("nowhere when no node qualifies", () => {
    assert.equal(place(input(undefined, undefined, { ...p, requires: { gpu: "h100" } }), policyParams()).kind, "nowhere");
  });
  it("pack: the fullest node with a free core", () => {
    const r = place(input(nodeLoad("me", { runnable: 4 }), [nodeLoad("a", { runnable: 3 }), nodeLoad("b", { runnable: 1 })]), policyParams({ mode: "pack" }));
    assert.equal(r.kind === "node" && r.node, "a");
  });
  it("none: where asked", () => {
    const r = place(input(nodeLoad("me", { runnable: 40 })), policyParams({ mode: "none" }));
    assert.equal(r.kind === "node" && r.node, "me");
  });
});
