import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { phaseUnderWay, ProgressReporter } from "./_progress.js";
import type { MigrationProgress } from "./source.js";

/** A reporter without its timer: the test takes the samples. */
function reporter(rounds: boolean): { r: ProgressReporter; seen: MigrationProgress[]; move(bytes: number): void } {
  const seen: MigrationProgress[] = [];
  let moved = 0;
  const r = new ProgressReporter((p) => seen.push(p), () => moved, { rounds, timer: false });
  return { r, seen, move: (bytes) => void (moved += bytes) };
}

describe("migration progress", () => {
  it("names the phase under way after each step", () => {
    const at = (phase: MigrationProgress["phase"], round?: number): MigrationProgress => ({ phase, ...(round !== undefined ? { round } : {}), bytes: 0, memory_bytes: 0 });
    assert.deepEqual(phaseUnderWay(at("offered"), true), { phase: "round", round: 1 });
    assert.deepEqual(phaseUnderWay(at("offered"), false), { phase: "offered" });
    assert.deepEqual(phaseUnderWay(at("round", 3), true), { phase: "round", round: 4 });
    assert.deepEqual(phaseUnderWay(at("copying"), false), { phase: "copying" });
    assert.deepEqual(phaseUnderWay(at("post-copy"), true), { phase: "post-copy" });
  });

  it("reports bytes within a phase only when they moved, and never fewer than before", () => {
    const { r, seen, move } = reporter(true);
    r.sample();
    assert.equal(seen.length, 0, "nothing before the first step");
    r.step({ phase: "offered", bytes: 0, memory_bytes: 1 << 20 });
    r.sample();
    assert.equal(seen.length, 1, "a sample with nothing moved is not reported");
    move(4096);
    r.sample();
    move(8192);
    r.sample();
    assert.deepEqual(seen.slice(1), [
      { phase: "round", round: 1, bytes: 4096, memory_bytes: 1 << 20, in_phase: true },
      { phase: "round", round: 1, bytes: 12288, memory_bytes: 1 << 20, in_phase: true },
    ]);
    // The round's own count (frames only) is a little less than what moved on the connection: not a step back.
    r.step({ phase: "round", round: 1, pages: 3, bytes: 12000, memory_bytes: 1 << 20, dirty_bytes_per_s: 5 });
    assert.equal(seen.at(-1)?.bytes, 12288);
    assert.equal(seen.at(-1)?.dirty_bytes_per_s, 5);
    move(100);
    r.sample();
    assert.deepEqual(seen.at(-1), { phase: "round", round: 2, bytes: 12388, memory_bytes: 1 << 20, in_phase: true });
    r.stop();
  });

  it("samples on its own timer until stopped", async () => {
    const seen: MigrationProgress[] = [];
    let moved = 0;
    let sampled!: () => void;
    const twice = new Promise<void>((resolve) => (sampled = resolve));
    const r = new ProgressReporter(
      (p) => {
        seen.push(p);
        moved += 1;
        if (seen.length === 3) sampled();
      },
      () => moved,
      { rounds: false, every_ms: 1 },
    );
    r.step({ phase: "copying", bytes: 0, memory_bytes: 10 });
    // The reporter's timer does not keep the process alive; this test must.
    const alive = setInterval(() => undefined, 60_000);
    await twice.finally(() => clearInterval(alive));
    r.stop();
    assert.ok(seen.slice(1).every((p) => p.in_phase === true && p.phase === "copying"));
  });
});
