import assert from "node:assert/strict";
import { createHash, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { trustKeys, writeMemory } from "../image/mod.js";
import { rebuildImage, type StoredCheckpoint } from "../migration/mod.js";
import { storedCheckpointOf } from "../migration/_testing.js";
import { FerryError } from "../errors.js";
import { compactInWorker, type CompactJob } from "./_compact.js";

const PAGE = 4096;
const MODULE = createHash("sha256").update("module").digest();

/** A chain as a keeper stores it in `dir` (`.pages`: each payload after its u32 LE length; `.image`), base first. */
function writeChain(dir: string, chain: StoredCheckpoint[], signer: KeyObject): CompactJob["entries"] {
  return chain.map((cp, i) => {
    const file = `c.${i + 1}`;
    fs.writeFileSync(path.join(dir, `${file}.pages`), Buffer.concat([...cp.pages].flatMap((p) => [Buffer.from(Uint32Array.of(p.length).buffer), Buffer.from(p)])));
    fs.writeFileSync(path.join(dir, `${file}.image`), cp.image);
    return { file, signer: createPublicKey(signer).export({ type: "spki", format: "der" }).toString("base64") };
  });
}

describe("a keeper's compaction in a worker thread", () => {
  it("writes a base, signed by the keeper, that holds the memory and state of the chain's newest checkpoint", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-compact-"));
    try {
      const runner = generateKeyPairSync("ed25519").privateKey;
      const keeper = generateKeyPairSync("ed25519").privateKey;
      const memory = new Uint8Array(PAGE * 64);
      for (let i = 0; i < 64; i += 3) memory[i * PAGE + (i % 100)] = 1 + i;
      const sign = { key: runner };
      const chain: StoredCheckpoint[] = [storedCheckpointOf(memory, [...Array(64).keys()].filter((i) => i % 3 === 0), 0, sign, MODULE)];
      for (let k = 1; k <= 4; k += 1) {
        const dirty = [k, 10 + k, 40 + k];
        for (const p of dirty) memory[p * PAGE + 7] = 100 + k;
        memory.fill(0, (k * 3) * PAGE, (k * 3 + 1) * PAGE);
        chain.push(storedCheckpointOf(memory, [...dirty, k * 3].sort((a, b) => a - b), k, sign, MODULE));
      }
      const bytes = await compactInWorker({ dir, entries: writeChain(dir, chain, runner), module_sha256: MODULE.toString("hex"), key_pem: keeper.export({ type: "pkcs8", format: "pem" }).toString(), name: "c.5.base" });
      const image = fs.readFileSync(path.join(dir, "c.5.base.image"));
      assert.equal(image.length, bytes);
      assert.equal(fs.readFileSync(path.join(dir, "c.5.base.pages")).length, 0, "a base's pages are inside its image");
      // Only the keeper's key vouches for it.
      await assert.rejects(rebuildImage([{ pages: [], image }], trustKeys([runner]), MODULE));
      const rebuilt = await rebuildImage([{ pages: [], image }], trustKeys([keeper]), MODULE);
      const out = new Uint8Array(memory.length);
      writeMemory({ memory: { ...rebuilt.memory, page_count: 0 } }, out);
      assert.deepEqual(out, memory, "the memory at the newest checkpoint");
      assert.equal(rebuilt.streams.stdout_bytes, 4, "the newest checkpoint's state");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("fails with the reason on a damaged chain, and leaves no file of the base behind", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-compact-"));
    try {
      const runner = generateKeyPairSync("ed25519").privateKey;
      const memory = new Uint8Array(PAGE * 8).fill(5);
      const entries = writeChain(dir, [storedCheckpointOf(memory, [...Array(8).keys()], 0, { key: runner }, MODULE)], runner);
      const pages = path.join(dir, "c.1.pages");
      fs.truncateSync(pages, fs.statSync(pages).size - 10);
      await assert.rejects(
        compactInWorker({ dir, entries, module_sha256: MODULE.toString("hex"), key_pem: runner.export({ type: "pkcs8", format: "pem" }).toString(), name: "c.1.base" }),
        (err: unknown) => err instanceof FerryError && err.code === "ERR_CHECKPOINT_PROTOCOL" && /cut short/.test(err.message),
      );
      assert.deepEqual(fs.readdirSync(dir).sort(), ["c.1.image", "c.1.pages"]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
