/** The module store: streamed in, hashed, never over the limit, no temporary file left behind. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { FerryError } from "../errors.js";
import { ModuleStore } from "./module_store.js";

async function* chunks(total: number, size: number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < total; at += size) yield Buffer.alloc(Math.min(size, total - at), 1);
}

const sha = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex");

describe("module store", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-modules-"));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const leftovers = (): string[] => fs.readdirSync(dir).filter((f) => f.endsWith(".tmp"));

  it("stores a module streamed in, once", async () => {
    const store = new ModuleStore(dir);
    const name = sha(Buffer.alloc(1000, 1));
    assert.equal(await store.putStream(name, chunks(1000, 300), 1000), true);
    assert.equal(await store.putStream(name, chunks(1000, 300), 1000), false);
    assert.ok(Buffer.from(store.get(name)).equals(Buffer.alloc(1000, 1)));
    assert.deepEqual(leftovers(), []);
  });

  it("stops at the limit and at a wrong hash, leaving nothing", async () => {
    const store = new ModuleStore(dir);
    const name = sha(Buffer.alloc(5000, 1));
    await assert.rejects(store.putStream(name, chunks(5000, 512), 4096), (e: unknown) => e instanceof FerryError && e.code === "ERR_MODULE_TOO_LARGE");
    await assert.rejects(store.putStream("f".repeat(64), chunks(10, 5), 4096), (e: unknown) => e instanceof FerryError && e.code === "ERR_MODULE_HASH");
    await assert.rejects(store.putStream("nope", chunks(10, 5), 4096), (e: unknown) => e instanceof FerryError && e.code === "ERR_MODULE_HASH");
    assert.equal(store.has(name), false);
    assert.deepEqual(leftovers(), []);
  });

  it("clears temporary files an earlier run left", () => {
    fs.writeFileSync(path.join(dir, `${"e".repeat(64)}.wasm.1.x.tmp`), "half");
    new ModuleStore(dir);
    assert.deepEqual(leftovers(), []);
  });
});
