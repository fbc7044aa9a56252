import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { acceptMove, avoidAfter_ms, moveOffer, REFUSED_AVOID_MS, REFUSED_ON_LOAD_AVOID_MS, retarget, type Acceptance, type MoveOffer } from "./accept.js";
import { decide } from "./decide.js";
import { policyParams } from "./params.js";
import { nodeLoad, proc, random, viewOf } from "./_testing.js";

const MIB = 1024 * 1024;

function offer(changes: Partial<MoveOffer> = {}): MoveOffer {
  return { pid: "h-1", reason: "balance", cpu_share: 1, memory_bytes: 8 * MIB, requires: {}, source: { cpus: 1, speed: 1, runnable: 4 }, ...changes };
}

const kind = (local: Parameters<typeof acceptMove>[0]["local"], o: MoveOffer): string => acceptMove({ local, offer: o }, policyParams()).kind;

describe("a target's second look at an automatic move", () => {
  it("balance: takes a move unless the process would run slower here than at its source", () => {
    // 1 core; the source has 3 more on its 1 core.
    assert.equal(kind(nodeLoad("t", { cpus: 1, runnable: 0 }), offer({ source: { cpus: 1, speed: 1, runnable: 3 } })), "accept");
    assert.equal(kind(nodeLoad("t", { cpus: 1, runnable: 3 }), offer({ source: { cpus: 1, speed: 1, runnable: 3 } })), "accept", "4 here vs 4 there: no worse");
    const r = acceptMove({ local: nodeLoad("t", { cpus: 1, runnable: 4 }), offer: offer({ source: { cpus: 1, speed: 1, runnable: 3 } }) }, policyParams());
    assert.equal(r.kind, "refuse", "5 here vs 4 there: the view that chose it was stale");
    assert.match(r.kind === "refuse" ? r.detail : "", /^slowdown 5\.00 on t now with it, over 4\.00 at the source$/);
  });

  it("balance: a burst from stale views stops at what the target can take, each acceptance counted", () => {
    const taken: string[] = [];
    let runnable = 0;
    for (let i = 0; i < 8; i += 1) {
      const k = kind(nodeLoad("t", { cpus: 2, runnable }), offer({ source: { cpus: 2, speed: 1, runnable: 4 } }));
      taken.push(k);
      if (k === "accept") runnable += 1;
    }
    assert.deepEqual(taken, ["accept", "accept", "accept", "accept", "accept", "refuse", "refuse", "refuse"]);
  });

  it("co-location judges as balance; pack fills to the cores", () => {
    assert.equal(kind(nodeLoad("t", { cpus: 1, runnable: 3 }), offer({ reason: "colocate", source: { cpus: 1, speed: 1, runnable: 3 } })), "accept");
    assert.equal(kind(nodeLoad("t", { cpus: 1, runnable: 4 }), offer({ reason: "colocate", source: { cpus: 1, speed: 1, runnable: 3 } })), "refuse");
    assert.equal(kind(nodeLoad("t", { cpus: 4, runnable: 3 }), offer({ reason: "pack" })), "accept");
    assert.equal(kind(nodeLoad("t", { cpus: 4, runnable: 3.5 }), offer({ reason: "pack" })), "refuse");
  });

  it("evacuations are taken however busy it is, but never drained, short of memory or without the required labels", () => {
    const busy = nodeLoad("t", { cpus: 1, runnable: 40 });
    assert.equal(kind(busy, offer({ reason: "drain" })), "accept");
    assert.equal(kind(busy, offer({ reason: "memory" })), "accept");
    assert.equal(kind(nodeLoad("t", { draining: true }), offer({ reason: "drain" })), "refuse");
    assert.equal(kind(nodeLoad("t", { memory_free_bytes: 300 * MIB }), offer({ reason: "drain", memory_bytes: 100 * MIB })), "refuse", "under the 256 MiB floor");
    assert.equal(kind(nodeLoad("t", { labels: { gpu: "no" } }), offer({ requires: { gpu: "yes" } })), "refuse");
    assert.equal(kind(nodeLoad("t", { labels: { gpu: "yes" } }), offer({ requires: { gpu: "yes" } })), "accept");
  });

  it("a refusal on load leaves the target out for the rest of the round only; one the view cannot show, for 2 s", () => {
    const on = (local: Parameters<typeof acceptMove>[0]["local"], o: MoveOffer): number => {
      const r = acceptMove({ local, offer: o }, policyParams());
      assert.equal(r.kind, "refuse");
      return avoidAfter_ms(r as Acceptance & { kind: "refuse" });
    };
    assert.equal(on(nodeLoad("t", { cpus: 1, runnable: 4 }), offer({ source: { cpus: 1, speed: 1, runnable: 3 } })), REFUSED_ON_LOAD_AVOID_MS, "balance, on load");
    assert.equal(on(nodeLoad("t", { cpus: 4, runnable: 4 }), offer({ reason: "pack" })), REFUSED_ON_LOAD_AVOID_MS, "pack, on load");
    assert.equal(on(nodeLoad("t", { memory_free_bytes: 300 * MIB }), offer({ memory_bytes: 100 * MIB })), REFUSED_AVOID_MS, "its own memory floor");
    assert.equal(on(nodeLoad("t", { draining: true }), offer()), REFUSED_AVOID_MS, "drained");
    assert.equal(on(nodeLoad("t", { labels: { gpu: "no" } }), offer({ requires: { gpu: "yes" } })), REFUSED_AVOID_MS, "labels");
    assert.ok(REFUSED_ON_LOAD_AVOID_MS < REFUSED_AVOID_MS);
  });

  it("a refused move is decided again by the same policy, without the nodes that refused it", () => {
    const local = nodeLoad("hot", { cpus: 1, runnable: 6 });
    const p = proc("h-1");
    const view = viewOf([nodeLoad("a", { cpus: 1 }), nodeLoad("b", { cpus: 1, runnable: 1 })], 0);
    const first = decide({ now_ms: 0, local, processes: [p], view, random: random() }, policyParams())[0];
    assert.equal(first?.to, "a", "the idle node first");
    const offer = moveOffer(first as NonNullable<typeof first>, { proc: p, source: { cpus: 1, speed: 1, runnable: 5 } });
    assert.deepEqual(offer, { pid: "h-1", reason: "balance", cpu_share: 1, memory_bytes: p.memory_bytes, requires: {}, source: { cpus: 1, speed: 1, runnable: 5 } });
    const again = retarget({ now_ms: 0, local, proc: p, view, refused: new Set(["a"]), random: random() }, policyParams());
    assert.equal(again?.to, "b");
    assert.equal(again?.reason, "balance");
    assert.equal(retarget({ now_ms: 0, local, proc: p, view, refused: new Set(["a", "b"]), random: random() }, policyParams()), undefined, "nowhere left: it stays");
  });
});
