/**
 * The worker kept for small modules (`instrumentInKeptWorker`): a node's
 * default. It must give what instrumenting in this thread gives, serve jobs
 * sent together, report errors with their codes and go on serving, and
 * leave this thread's event loop free while Binaryen works.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { FerryError } from "../errors.js";
import { wat } from "./_wat.js";
import { stopKeptWorker } from "./_thread.js";
import { instrumentModule, loadInstrumented } from "./mod.js";

const SPIN = wat(`(module (memory 1) (global $n (mut i32) (i32.const 0))
  (func (export "_start") (loop $l (global.set $n (i32.add (global.get $n) (i32.const 1))) (br_if $l (i32.lt_u (global.get $n) (i32.const 1000))))))`);
const COMPUTE = fs.readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), "../../../examples/c/compute.wasm"));

describe("the instrumenting worker kept for small modules", () => {
  after(() => stopKeptWorker());

  it("gives what instrumenting in this thread gives, for jobs sent together, with every step of each reported", async () => {
    const stages: string[][] = [[], []];
    const [a, b] = await Promise.all([
      loadInstrumented(SPIN, { cache_dir: null, on_stage: (s) => stages[0]?.push(s) }),
      loadInstrumented(COMPUTE, { cache_dir: null, on_stage: (s) => stages[1]?.push(s) }),
    ]);
    for (const [there, wasm] of [[a, SPIN], [b, COMPUTE]] as const) {
      const here = await instrumentModule(wasm);
      assert.equal(there.cached, false);
      assert.deepEqual(there.wasm, here.wasm);
      assert.deepEqual({ ...there.info, instrument_ms: 0 }, { ...here.info, instrument_ms: 0 });
    }
    for (const s of stages) assert.deepEqual(s, ["read", "call-graph", "polls", "asyncify", "write"]);
  });

  it("reports an instrumenter's error with its code and the module's name, and serves the next job", async () => {
    await assert.rejects(loadInstrumented(new TextEncoder().encode("nope"), { cache_dir: null, name: "nope.wasm" }), (err: unknown) => {
      assert.ok(err instanceof FerryError);
      assert.equal(err.code, "ERR_INSTRUMENT_INVALID");
      assert.match(err.message, /nope\.wasm/);
      return true;
    });
    const next = await loadInstrumented(SPIN, { cache_dir: null });
    assert.deepEqual(next.wasm, (await instrumentModule(SPIN)).wasm);
  });

  it("leaves this thread's event loop free while Binaryen works", async () => {
    // Inline, Asyncify runs between the two steps with this thread taken; in the worker, timers fire meanwhile.
    let ticks = 0;
    let during: number | undefined;
    const timer = setInterval(() => (ticks += 1), 1);
    try {
      await loadInstrumented(COMPUTE, {
        cache_dir: null,
        on_stage: (s) => {
          if (s === "asyncify") during = ticks;
          if (s === "write" && during !== undefined) during = ticks - during;
        },
      });
    } finally {
      clearInterval(timer);
    }
    assert.ok(during !== undefined && during > 0, `no timer fired while Asyncify ran (${String(during)})`);
  });
});
