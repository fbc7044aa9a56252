/**
 * The off-thread hashing paths: encodeImageAsync writes exactly encodeImage's
 * bytes (pages in a SharedArrayBuffer included), and a decoder whose SHA-256
 * runs on the hashing thread returns an image only from finish(), after the
 * signature verified, and refuses a changed or foreign one there.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import { FOREIGN_SIGNER, Prng, TEST_SIGNER, TEST_TRUST, buildImage, encodeToBytes, randomChunks, randomImage, splitSections } from "./_fixtures.js";
import { SectionKind } from "./format.js";
import { ImageDecoder, encodeImageAsync, offThreadSha256, sparsePages, writeMemory } from "./mod.js";
import type { ProcessImage } from "./mod.js";

async function encodeAsyncToBytes(image: ProcessImage, signer = TEST_SIGNER): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of encodeImageAsync(image, { signer })) chunks.push(Buffer.from(chunk)); // copies: views of memory
  return Buffer.concat(chunks);
}

async function decodeOffThread(bytes: Uint8Array, rng: Prng): Promise<ReturnType<ImageDecoder["end"]>> {
  const decoder = new ImageDecoder({ trust: TEST_TRUST, sha256: offThreadSha256() });
  for (const chunk of randomChunks(rng, bytes)) decoder.push(chunk);
  return decoder.finish();
}

test("offThreadSha256 gives the SHA-256 of what it was given, copied or shared, in order", async () => {
  const rng = new Prng(5);
  const shared = new Uint8Array(new SharedArrayBuffer(3 * 1024 * 1024));
  for (let i = 0; i < shared.length; i += 4096) shared[i] = rng.int(256);
  const pieces = [Buffer.from("head"), shared.subarray(0, 1 << 20), new Uint8Array(600 * 1024).fill(7), shared.subarray(1 << 20), Buffer.from("tail")];
  const hash = offThreadSha256();
  const reference = createHash("sha256");
  for (const piece of pieces) {
    hash.update(piece);
    reference.update(piece);
  }
  const reused = pieces[2] as Uint8Array;
  reused.fill(9); // copied bytes are taken as given: changing them after does not count
  assert.deepEqual(Buffer.from(await hash.digest()), reference.digest());
  assert.throws(() => hash.update(new Uint8Array(1)), /after digest/);
});

test("encodeImageAsync writes encodeImage's bytes, from plain and shared memory", async () => {
  for (let seed = 1; seed <= 40; seed++) {
    const { image, memory } = randomImage(seed);
    const expected = encodeToBytes(image);
    assert.ok(Buffer.from(expected).equals(await encodeAsyncToBytes(image)), `seed ${seed}, plain memory`);
    const shared = new Uint8Array(new SharedArrayBuffer(memory.length));
    shared.set(memory);
    assert.ok(Buffer.from(expected).equals(await encodeAsyncToBytes({ ...image, memory: sparsePages(shared) })), `seed ${seed}, shared memory`);
  }
});

test("a decoder hashing off-thread round-trips, and only finish() returns the image", async () => {
  for (let seed = 1; seed <= 40; seed++) {
    const { image, memory } = randomImage(seed);
    const bytes = encodeToBytes(image);
    const decoded = await decodeOffThread(bytes, new Prng(seed));
    const target = new Uint8Array(memory.length);
    writeMemory(decoded, target);
    assert.deepEqual(target, memory, `seed ${seed}`);
    assert.deepEqual(decoded.globals, image.globals, `seed ${seed}`);
  }
  const decoder = new ImageDecoder({ trust: TEST_TRUST, sha256: offThreadSha256() });
  decoder.push(encodeToBytes(randomImage(1).image));
  assert.throws(() => decoder.end(), /call finish\(\)/);
});

test("a decoder hashing off-thread refuses a foreign image and a page changed with its CRCs redone", async () => {
  // The first seed whose memory is not all zero.
  let seed = 1;
  while (randomImage(seed).memory.every((b) => b === 0)) seed++;
  const { image } = randomImage(seed);
  const foreign = encodeToBytes(image, FOREIGN_SIGNER);
  await assert.rejects(decodeOffThread(foreign, new Prng(1)), { code: "ERR_IMAGE_SIGNATURE" });

  // Flip a byte of the first PAGES run, keep the signature and recompute every CRC: only the signature can tell.
  const sections = splitSections(encodeToBytes(image));
  const pages = sections.find((s) => s.kind === SectionKind.pages);
  assert.ok(pages !== undefined, "the image has pages");
  const payload = Buffer.from(pages.payload);
  payload[8] = (payload[8] as number) ^ 0xff;
  pages.payload = payload;
  const tampered = buildImage(sections, { keep_signatures: true });
  await assert.rejects(decodeOffThread(tampered, new Prng(2)), { code: "ERR_IMAGE_SIGNATURE" });
});

test("pages hashed where write_pages says they landed: the same bytes pass, other bytes are refused", async () => {
  let seed = 1;
  while (randomImage(seed).memory.every((b) => b === 0)) seed++;
  const { image, memory } = randomImage(seed);
  const bytes = encodeToBytes(image);
  const land = async (wrong: boolean): Promise<Uint8Array> => {
    const target = new Uint8Array(new SharedArrayBuffer(memory.length + 4096));
    const decoder = new ImageDecoder({
      trust: TEST_TRUST,
      sha256: offThreadSha256(),
      write_pages: (offset, piece) => {
        target.set(piece, offset);
        // A view one page off holds other bytes: the digest then differs from the one signed.
        const at = wrong ? offset + 4096 : offset;
        return target.subarray(at, at + piece.length);
      },
    });
    for (const chunk of randomChunks(new Prng(seed), bytes)) decoder.push(chunk);
    await decoder.finish();
    return target.subarray(0, memory.length);
  };
  assert.deepEqual(new Uint8Array(await land(false)), memory);
  await assert.rejects(land(true), { code: "ERR_IMAGE_SIGNATURE" });
});
