import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type Binaryen from "binaryen";
import { invokerModule } from "./_invokers.js";
import { loadBinaryenModule } from "./_load.js";

const EXAMPLES = fileURLToPath(new URL("../../../examples/", import.meta.url));

/** `wasm` through passes that throw and catch C++ exceptions as they work (the interpreter behind precompute), as `b` makes it. */
function optimized(b: typeof Binaryen, wasm: Uint8Array): Uint8Array {
  const m = b.readBinary(wasm);
  try {
    m.setFeatures(b.Features.All);
    b.setOptimizeLevel(2);
    m.runPasses(["flatten", "precompute-propagate", "simplify-locals", "coalesce-locals", "vacuum"]);
    m.optimize();
    return m.emitBinary();
  } finally {
    m.dispose();
  }
}

/** What `b` throws on bytes that are not a module: a C++ exception that reaches JavaScript. */
function failure(b: typeof Binaryen): string {
  try {
    b.readBinary(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 5, 0xff]));
  } catch (err: unknown) {
    return typeof err === "object" && err !== null ? (err.constructor?.name ?? "object") : typeof err;
  }
  return "nothing thrown";
}

describe("Binaryen's C++ exceptions caught in wasm", () => {
  it("applies to this binaryen.js, and gives the same modules as Emscripten's JavaScript invokers", async () => {
    const fast = await loadBinaryenModule(null);
    const plain = await loadBinaryenModule(null, { wasm_invokers: false });
    assert.equal(fast.wasm_invokers, true, "the glue of this binaryen.js is not of the shape _invokers.ts knows: its gain is lost");
    assert.equal(plain.wasm_invokers, false);
    for (const name of ["c/compute.wasm", "c/fileproc.wasm", "as/sieve.wasm"]) {
      const wasm = fs.readFileSync(path.join(EXAMPLES, name));
      assert.deepEqual(optimized(fast.binaryen, wasm), optimized(plain.binaryen, wasm), name);
    }
    // An exception that escapes to JavaScript leaves both working, and alike.
    assert.equal(failure(fast.binaryen), failure(plain.binaryen));
    const wasm = fs.readFileSync(path.join(EXAMPLES, "c/compute.wasm"));
    assert.deepEqual(optimized(fast.binaryen, wasm), optimized(plain.binaryen, wasm));
  });

  it("makes valid invokers for every number type", () => {
    const types = [
      { params: [0x7f], results: [] },
      { params: [0x7f, 0x7f, 0x7e], results: [0x7f] },
      { params: [0x7f, 0x7c], results: [0x7e] },
      { params: [0x7f, 0x7d, 0x7d], results: [0x7d] },
      { params: [0x7f], results: [0x7c] },
    ];
    for (const length of [0, 63, 64, 13_867, 1 << 20]) assert.ok(WebAssembly.validate(invokerModule(types, length)), `table of ${length}`);
  });
});
