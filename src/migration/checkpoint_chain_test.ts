import assert from "node:assert/strict";
import { createHash, generateKeyPairSync } from "node:crypto";
import { describe, it } from "node:test";
import { Prng } from "../_prng.js";
import { FerryError, ImageError } from "../errors.js";
import { encodeImage, sparsePages, trustKeys, writeMemory, type ImageSigner, type ProcessImage } from "../image/mod.js";
import { CHECKPOINT_INCREMENTS_MAX, checkCheckpoint, needsCompaction, PagesDigest, rebuildImage, type StoredCheckpoint } from "./checkpoint_chain.js";
import { storedCheckpointOf } from "./_testing.js";

const PAGE = 4096;
const SIGNER: ImageSigner = { key: generateKeyPairSync("ed25519").privateKey };
const TRUST = trustKeys([SIGNER.key]);
const MODULE = createHash("sha256").update("module").digest();

/** A checkpoint of `memory` sending `indexes`, signed by SIGNER, of MODULE. */
function checkpointOf(memory: Uint8Array, indexes: number[], streams_at: number): StoredCheckpoint {
  return storedCheckpointOf(memory, indexes, streams_at, SIGNER, MODULE);
}

describe("checkpoint chains", () => {
  it("rebuild the memory and state of the newest checkpoint from a base and increments, zeroed and grown pages included, over random seeds", async () => {
    for (let seed = 1; seed <= 25; seed += 1) {
      const rng = new Prng(seed);
      let memory: Uint8Array = new Uint8Array(PAGE * (8 + rng.int(24)));
      for (let i = 0; i < memory.length / PAGE; i += 1) if (rng.chance(0.5)) memory[i * PAGE + rng.int(PAGE)] = 1 + rng.int(255);
      const nonzero = (m: Uint8Array): number[] => [...Array(m.length / PAGE).keys()].filter((i) => m.subarray(i * PAGE, (i + 1) * PAGE).some((b) => b !== 0));
      const chain: StoredCheckpoint[] = [checkpointOf(memory, nonzero(memory), 0)];
      const increments = 1 + rng.int(5);
      for (let k = 1; k <= increments; k += 1) {
        if (rng.chance(0.3)) {
          const grown = new Uint8Array(memory.length + PAGE * (1 + rng.int(4)));
          grown.set(memory);
          memory = grown;
        }
        const dirty = new Set<number>();
        for (let w = rng.int(10); w > 0; w -= 1) {
          const page = rng.int(memory.length / PAGE);
          dirty.add(page);
          if (rng.chance(0.3)) memory.fill(0, page * PAGE, (page + 1) * PAGE);
          else memory[page * PAGE + rng.int(PAGE)] = rng.int(256);
        }
        chain.push(checkpointOf(memory, [...dirty].sort((a, b) => a - b), k));
      }
      const image = await rebuildImage(chain, TRUST, MODULE);
      assert.equal(image.memory.size_bytes, memory.length, `seed ${seed}`);
      const out = new Uint8Array(memory.length);
      writeMemory({ memory: { ...image.memory, page_count: 0 } }, out);
      assert.deepEqual(out, memory, `seed ${seed}: memory`);
      assert.equal(image.streams.stdout_bytes, increments, `seed ${seed}: the newest state`);
      assert.equal(image.meta["precopy_sha256"], undefined, "a rebuilt image vouches for no pre-copied pages");
    }
  });

  it("a compacted base (its pages inside its image) rebuilds in one pass over its memory", { timeout: 120_000 }, async () => {
    // Every other page of 64 MiB: 8192 runs, each streamed on its own. Grown run by run, the memory was copied 8192 times
    // (about 256 GB of copying: this never finished); sized once from the image's MEMORY section, it is one pass.
    const memory = new Uint8Array(64 << 20);
    for (let i = 0; i < memory.length / PAGE; i += 2) memory[i * PAGE + (i % PAGE)] = 1 + (i % 255);
    const base: ProcessImage = {
      module_sha256: MODULE,
      instrumenter: "test/1",
      memory: sparsePages(memory),
      globals: [],
      stack: { entry: "_start", asyncify: Uint8Array.of(1) },
      wasi: {},
      streams: { stdout_bytes: 0, stderr_bytes: 0, stdin_pending: new Uint8Array(0), stdin_eof: true },
      meta: { module_path: "m.wasm", created_unix_ms: 1 },
    };
    const compacted: StoredCheckpoint = { pages: [], image: Buffer.concat([...encodeImage(base, { signer: SIGNER })]) };
    memory.fill(9, 3 * PAGE, 4 * PAGE);
    const image = await rebuildImage([compacted, checkpointOf(memory, [3], 1)], TRUST, MODULE);
    const out = new Uint8Array(memory.length);
    writeMemory({ memory: { ...image.memory, page_count: 0 } }, out);
    assert.ok(Buffer.from(out).equals(memory), "the rebuilt memory");
    assert.equal(image.streams.stdout_bytes, 1);
  });

  it("a checkpoint is taken only with the pages its signed image vouches for, signed by a trusted key", () => {
    const memory = new Uint8Array(PAGE * 4).fill(7);
    const cp = checkpointOf(memory, [0, 1, 2, 3], 5);
    const seen = (frames: Iterable<Uint8Array>): ReturnType<PagesDigest["seen"]> => {
      const d = new PagesDigest();
      for (const f of frames) d.update(f);
      return d.seen();
    };
    assert.equal(checkCheckpoint(cp.image, seen(cp.pages), TRUST, MODULE).streams.stdout_bytes, 5);
    const tampered = [...cp.pages].map((f) => Uint8Array.from(f));
    const first = tampered[0] as Uint8Array;
    first[100] = (first[100] as number) ^ 1;
    assert.throws(() => checkCheckpoint(cp.image, seen(tampered), TRUST, MODULE), (e: unknown) => e instanceof ImageError && e.code === "ERR_IMAGE_SIGNATURE");
    assert.throws(() => checkCheckpoint(cp.image, seen([]), TRUST, MODULE), (e: unknown) => e instanceof ImageError && e.code === "ERR_IMAGE_SIGNATURE");
    const stranger = trustKeys([generateKeyPairSync("ed25519").privateKey]);
    assert.throws(() => checkCheckpoint(cp.image, seen(cp.pages), stranger, MODULE), (e: unknown) => e instanceof ImageError && e.code === "ERR_IMAGE_SIGNATURE");
    assert.throws(() => new PagesDigest().update(Uint8Array.of(1, 2, 3)), (e: unknown) => e instanceof FerryError && e.code === "ERR_MIGRATION_PROTOCOL");
  });

  it("retention: increments are merged once they outweigh the base or reach the most kept", () => {
    const m = 8 << 20;
    const e = (bytes: number): { bytes: number; memory_bytes: number } => ({ bytes, memory_bytes: m });
    assert.equal(needsCompaction([e(1000)]), false);
    assert.equal(needsCompaction([e(1000), e(600)]), false);
    assert.equal(needsCompaction([e(1000), e(600), e(401)]), true);
    const small = Array.from({ length: CHECKPOINT_INCREMENTS_MAX - 1 }, () => e(1));
    assert.equal(needsCompaction([e(1000), ...small]), false);
    assert.equal(needsCompaction([e(1000), ...small, e(1)]), true);
    // A base whose rounds sent pages twice is rewritten on its own; one of its memory's size is not.
    assert.equal(needsCompaction([e(m + 100)]), false);
    assert.equal(needsCompaction([e(2 * m)]), true);
    // So is one that increments followed before it was rewritten: they must not pile up to its size.
    assert.equal(needsCompaction([e(2 * m), e(1000)]), true);
  });
});
