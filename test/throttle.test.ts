/**
 * Auto-converge's throttle (issue 15): a guest held for most of its time at
 * its safe points writes exactly what it writes unthrottled, and still
 * answers a suspend (a hold ends when the controller wakes it). A guest that
 * paces its writes by the monotonic clock is slowed too, since held time is
 * taken off the clock it sees.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { GuestProcess, type ProcessIo } from "../src/runtime/mod.js";
import { EXAMPLES } from "./_helpers.js";

const COMPUTE = fs.readFileSync(path.join(EXAMPLES, "c", "compute.wasm"));
const MEMHOG = fs.readFileSync(path.join(EXAMPLES, "c", "memhog.wasm"));

function io(): { io: ProcessIo; out: () => string } {
  const out: Uint8Array[] = [];
  return { io: { stdout: { kind: "callback", write: (b) => out.push(b) }, stderr: { kind: "callback", write: () => undefined } }, out: () => Buffer.concat(out).toString() };
}

async function run(throttle_pct: number, suspend_midway: boolean): Promise<string> {
  const o = io();
  const proc = await GuestProcess.start({ wasm: COMPUTE, module_path: "compute.wasm", args: ["compute", "6"], env: [], preopens: [] }, o.io);
  proc.throttle(throttle_pct);
  if (suspend_midway) {
    // Held at its safe points or not, it stops at the next one when asked, and goes on from there.
    const s = await proc.suspend();
    if (s !== null) await proc.resume();
  }
  assert.deepEqual(await proc.exited, { kind: "exit", code: 0 });
  return o.out();
}

describe("throttled guests", () => {
  it("a guest throttled to 95% writes what it writes unthrottled, and can be suspended and resumed meanwhile", async () => {
    const plain = await run(0, false);
    assert.match(plain, /^done rounds=6 /m);
    assert.equal(await run(95, true), plain);
    assert.equal(await run(50, false), plain);
  });

  it("a guest that paces its writes by the clock writes slower when throttled, and the same bytes", async () => {
    // memhog rewrites 16 MiB/s of its 4 MiB for one second of its clock, catching up after any stall.
    const spec = { wasm: MEMHOG, module_path: "memhog.wasm", args: ["memhog", "4", "16", "1"], env: [], preopens: [] };
    const plain = io();
    const free = await GuestProcess.start(spec, plain.io);
    assert.deepEqual(await free.exited, { kind: "exit", code: 0 });
    const held = io();
    const started_ms = performance.now();
    const proc = await GuestProcess.start(spec, held.io);
    proc.throttle(50);
    assert.deepEqual(await proc.exited, { kind: "exit", code: 0 });
    // Held half its time and not seeing it, its one second takes about two: never less than 1.6, however loaded the machine.
    assert.ok(performance.now() - started_ms >= 1600, `throttled to 50%, memhog's second took ${(performance.now() - started_ms).toFixed(0)} ms`);
    assert.equal(held.out(), plain.out());
    assert.match(plain.out(), /^verify OK /m);
  });

  it("a throttle out of range is refused", async () => {
    const o = io();
    const proc = await GuestProcess.start({ wasm: COMPUTE, module_path: "compute.wasm", args: ["compute", "1"], env: [], preopens: [] }, o.io);
    assert.throws(() => proc.throttle(96), RangeError);
    assert.throws(() => proc.throttle(-1), RangeError);
    assert.throws(() => proc.throttle(12.5), RangeError);
    await proc.exited;
  });
});
