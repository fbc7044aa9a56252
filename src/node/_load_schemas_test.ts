/** The load gossip's schema: a peer's window is checked figure by figure before a decision reads it. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as v from "valibot";
import { LoadWindowSchema } from "./_load_schemas.js";

const load = {
  node: "n1",
  cpus: 2,
  speed: 1,
  processes: 3,
  movable: 2,
  runnable: 2.5,
  cpu_used: 1.9,
  memory_used_bytes: 1e6,
  memory_free_bytes: 1e9,
  remote_bytes_per_s: 0,
  transfer_bytes_per_s: 2.5e8,
  labels: { gpu: "yes" },
  draining: false,
};

describe("load window schema", () => {
  it("takes a well-formed window", () => {
    assert.ok(v.safeParse(LoadWindowSchema, { window: [{ load, version: 7, age_ms: 12.5 }] }).success);
  });

  it("refuses bad figures, names and labels, and windows past their bound", () => {
    const bad = [
      { ...load, runnable: -1 },
      { ...load, cpu_used: Number.NaN },
      { ...load, memory_free_bytes: Infinity },
      { ...load, cpus: 0 },
      { ...load, speed: 0 },
      { ...load, node: "no such/name" },
      { ...load, labels: { "bad key": "x" } },
      { ...load, labels: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, "v"])) },
      { ...load, draining: "yes" },
    ];
    for (const l of bad) assert.equal(v.safeParse(LoadWindowSchema, { window: [{ load: l, version: 1, age_ms: 0 }] }).success, false, JSON.stringify(l).slice(0, 120));
    assert.equal(v.safeParse(LoadWindowSchema, { window: [{ load, version: -1, age_ms: 0 }] }).success, false);
    assert.equal(v.safeParse(LoadWindowSchema, { window: Array.from({ length: 65 }, () => ({ load, version: 1, age_ms: 0 })) }).success, false);
  });
});
