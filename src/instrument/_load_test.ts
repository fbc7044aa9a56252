import assert from "node:assert/strict";
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

describe("loading binaryen.js with a code cache", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-code-cache-"));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("writes the cache on the first load, uses it on the next, and never trusts a damaged one", async () => {
    const first = await loadBinaryenModule(dir);
    assert.equal(first.how, "cache-written");
    const want = roundTrip(first.binaryen);
    const [file, ...others] = fs.readdirSync(dir);
    assert.ok(file !== undefined && others.length === 0, `one cache file, not ${String(file)} and ${others.join(", ")}`);

    const second = await loadBinaryenModule(dir);
    assert.equal(second.how, "cache-hit");
    assert.deepEqual(roundTrip(second.binaryen), want);

    const bytes = fs.readFileSync(path.join(dir, file));
    const middle = bytes.length >> 1;
    bytes[middle] = (bytes[middle] ?? 0) ^ 0xff;
    fs.writeFileSync(path.join(dir, file), bytes);
    const third = await loadBinaryenModule(dir);
    assert.equal(third.how, "cache-written");
    assert.deepEqual(roundTrip(third.binaryen), want);
  });

  it("loads without a cache folder", async () => {
    const loaded = await loadBinaryenModule(null);
    assert.equal(loaded.how, "script");
    assert.ok(roundTrip(loaded.binaryen).byteLength > 8);
  });
});
