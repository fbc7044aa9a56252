import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import type Binaryen from "binaryen";
import { loadBinaryenModule } from "./_load.js";

const TEXT = `(module (memory 1) (func (export "f") (param i32) (result i32) (i32.add (local.get 0) (i32.const 1))))`;

/** The binary of {@link TEXT} made by `b`: each load must give a Binaryen that works. */
function roundTrip(b: typeof Binaryen): Uint8Array {
  const m = b.parseText(TEXT);
  try {
    return m.emitBinary();
  } finally {
    m.dispose();
  }
}

/** Rewrites a kept file with `data` under a digest that matches it, as `_load.ts` writes them. */
function rewrite(file: string, data: Uint8Array): void {
  fs.writeFileSync(file, Buffer.concat([createHash("sha256").update(data).digest(), data]));
}

describe("loading binaryen.js split in two", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-code-cache-"));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("splits it on the first load, uses the parts on the next, and never trusts a damaged one", async () => {
    // What an earlier version kept: removed once the parts are written.
    const obsolete = path.join(dir, "binaryen-0123456789abcdef.v8cache");
    fs.writeFileSync(obsolete, "old");
    const first = await loadBinaryenModule(dir);
    assert.equal(first.how, "cache-written");
    const want = roundTrip(first.binaryen);
    const files = fs.readdirSync(dir).sort();
    assert.equal(files.length, 2, `the glue and the wasm, not ${files.join(", ")}`);
    const [glue, wasm] = files.map((f) => path.join(dir, f)) as [string, string];
    assert.match(glue, /\.js$/);
    assert.match(wasm, /\.wasm$/);
    // Without the literal, the glue is small; the wasm is the module itself.
    assert.ok(fs.statSync(glue).size < 1024 * 1024, `glue of ${fs.statSync(glue).size} bytes`);
    assert.ok(new WebAssembly.Module(fs.readFileSync(wasm).subarray(32)) instanceof WebAssembly.Module);

    const second = await loadBinaryenModule(dir);
    assert.equal(second.how, "cache-hit");
    assert.deepEqual(roundTrip(second.binaryen), want);

    // A flipped byte: the digest no longer matches.
    const bytes = fs.readFileSync(wasm);
    const middle = bytes.length >> 1;
    bytes[middle] = (bytes[middle] ?? 0) ^ 0xff;
    fs.writeFileSync(wasm, bytes);
    const third = await loadBinaryenModule(dir);
    assert.equal(third.how, "cache-written");
    assert.deepEqual(roundTrip(third.binaryen), want);

    // Parts that pass their digests but do not make a Binaryen (another build's, say): split again.
    rewrite(wasm, new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
    const fourth = await loadBinaryenModule(dir);
    assert.equal(fourth.how, "cache-written");
    assert.deepEqual(roundTrip(fourth.binaryen), want);
    assert.equal((await loadBinaryenModule(dir)).how, "cache-hit");
  });

  it("loads without a cache folder", async () => {
    const loaded = await loadBinaryenModule(null);
    assert.equal(loaded.how, "split");
    assert.ok(roundTrip(loaded.binaryen).byteLength > 8);
  });

  it("loads when the cache folder cannot be written", async () => {
    const file = path.join(dir, "a-file");
    fs.writeFileSync(file, "");
    const loaded = await loadBinaryenModule(path.join(file, "code"));
    assert.equal(loaded.how, "split");
    assert.ok(roundTrip(loaded.binaryen).byteLength > 8);
  });
});
