/** Round-trip and determinism tests of the image codec over random seeds. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Prng, TEST_SIGNER, TEST_TRUST, catchImageError, encodeToBytes, randomChunks, randomImage } from "./_fixtures.js";
import { ImageLimits, PAGE_BYTES } from "./format.js";
import { ImageDecoder, decodeImage, encodeImage, sparsePages, writeMemory } from "./mod.js";
import type { DecodedImage, ProcessImage } from "./mod.js";

const SEEDS = 300;

function assertSameImage(decoded: DecodedImage, image: ProcessImage, memory: Uint8Array, seed: number): void {
  const msg = `seed ${seed}`;
  assert.deepEqual(decoded.module_sha256, image.module_sha256, msg);
  assert.equal(decoded.instrumenter, image.instrumenter, msg);
  assert.deepEqual(decoded.globals, image.globals, msg);
  assert.equal(decoded.stack.entry, image.stack.entry, msg);
  assert.deepEqual(decoded.stack.asyncify, image.stack.asyncify, msg);
  assert.deepEqual(decoded.wasi, image.wasi, msg);
  assert.deepEqual(decoded.streams, image.streams, msg);
  assert.deepEqual(decoded.meta, image.meta, msg);
  assert.equal(decoded.memory.size_bytes, memory.length, msg);

  const expected = [...sparsePages(memory).pages()];
  const got = [...decoded.memory.pages()];
  assert.equal(decoded.memory.page_count, expected.length, msg);
  assert.deepEqual(got.map((p) => p.index), expected.map((p) => p.index), msg);

  // Restore into a memory that is not zero, to prove writeMemory touches exactly the stored pages.
  const target = new Uint8Array(memory.length + PAGE_BYTES).fill(0xee);
  writeMemory(decoded, target);
  const restored = Buffer.from(target.buffer);
  const stored = new Set(expected.map((p) => p.index));
  const untouched = new Uint8Array(PAGE_BYTES).fill(0xee);
  for (let p = 0; p < target.length / PAGE_BYTES; p++) {
    const want = stored.has(p) ? memory.subarray(p * PAGE_BYTES, (p + 1) * PAGE_BYTES) : untouched;
    assert.ok(restored.subarray(p * PAGE_BYTES, (p + 1) * PAGE_BYTES).equals(want), `${msg}: page ${p}`);
  }
}

test("round trip over random seeds through decodeImage", () => {
  for (let seed = 1; seed <= SEEDS; seed++) {
    const { image, memory } = randomImage(seed);
    const bytes = encodeToBytes(image);
    assertSameImage(decodeImage(bytes, { trust: TEST_TRUST }), image, memory, seed);
  }
});

test("round trip over random seeds through ImageDecoder with random chunk splits", () => {
  for (let seed = 1; seed <= SEEDS; seed++) {
    const { image, memory } = randomImage(seed);
    const bytes = encodeToBytes(image);
    const rng = new Prng(seed * 7919);
    const decoder = new ImageDecoder({ trust: TEST_TRUST, module_sha256: image.module_sha256, copy_pages: rng.chance(0.5) });
    for (const chunk of randomChunks(rng, bytes)) decoder.push(chunk);
    assertSameImage(decoder.end(), image, memory, seed);
  }
});

test("round trip with 1-byte chunks", () => {
  for (let seed = 1; seed <= 5; seed++) {
    const { image, memory } = randomImage(seed, 6);
    const bytes = encodeToBytes(image);
    const decoder = new ImageDecoder({ trust: TEST_TRUST });
    for (let i = 0; i < bytes.length; i++) decoder.push(bytes.subarray(i, i + 1));
    assertSameImage(decoder.end(), image, memory, seed);
  }
});

test("runs longer than page_run_pages_max split into several PAGES sections", () => {
  const pages = ImageLimits.page_run_pages_max * 2 + 3;
  const memory = new Uint8Array(pages * PAGE_BYTES).fill(1);
  memory.fill(0, 10 * PAGE_BYTES, 11 * PAGE_BYTES); // one hole
  const { image } = randomImage(1, 0);
  image.memory = sparsePages(memory);
  const decoded = decodeImage(encodeToBytes(image), { trust: TEST_TRUST });
  assert.equal(decoded.memory.page_count, pages - 1);
  const target = new Uint8Array(memory.length);
  writeMemory(decoded, target);
  assert.ok(Buffer.from(target).equals(memory));
});

test("two encodings of the same image are byte-identical", () => {
  for (let seed = 1; seed <= 50; seed++) {
    const { image } = randomImage(seed);
    assert.ok(Buffer.from(encodeToBytes(image)).equals(encodeToBytes(image)), `seed ${seed}`);
  }
});

test("encodeImage yields page data as views of the memory, not copies", () => {
  const memory = new Uint8Array(8 * PAGE_BYTES);
  memory[0] = 1;
  memory[3 * PAGE_BYTES + 5] = 2;
  memory[4 * PAGE_BYTES + 5] = 3;
  const { image } = randomImage(3, 0);
  image.memory = sparsePages(memory);
  const views = [...encodeImage(image, { signer: TEST_SIGNER })].filter((chunk) => chunk.buffer === memory.buffer);
  // Page 0 alone, then pages 3-4 merged into one 8 KiB view.
  assert.deepEqual(views.map((v) => [v.byteOffset, v.length]), [[0, PAGE_BYTES], [3 * PAGE_BYTES, 2 * PAGE_BYTES]]);
});

test("decodeImage keeps page data as views into its input", () => {
  const { image } = randomImage(11);
  const bytes = encodeToBytes(image);
  const decoded = decodeImage(bytes, { trust: TEST_TRUST });
  for (const page of decoded.memory.pages()) assert.equal(page.data.buffer, bytes.buffer);
});

test("ImageDecoder copies page data by default, so callers may reuse chunks", () => {
  const memory = new Uint8Array(2 * PAGE_BYTES).fill(9);
  const { image } = randomImage(5, 0);
  image.memory = sparsePages(memory);
  const bytes = encodeToBytes(image);
  const decoder = new ImageDecoder({ trust: TEST_TRUST });
  const scratch = new Uint8Array(bytes);
  decoder.push(scratch);
  scratch.fill(0); // reused by the caller
  const target = new Uint8Array(memory.length);
  writeMemory(decoder.end(), target);
  assert.ok(Buffer.from(target).equals(memory));
});

test("an empty memory and empty collections round-trip", () => {
  const image: ProcessImage = {
    module_sha256: new Uint8Array(32),
    instrumenter: "",
    memory: sparsePages(new Uint8Array(0)),
    globals: [],
    stack: { entry: "", asyncify: new Uint8Array(0) },
    wasi: null,
    streams: { stdout_bytes: 0, stderr_bytes: 0, stdin_pending: new Uint8Array(0), stdin_eof: false },
    meta: { module_path: "", created_unix_ms: 0 },
  };
  const decoded = decodeImage(encodeToBytes(image), { trust: TEST_TRUST });
  assert.equal(decoded.memory.page_count, 0);
  assert.equal(decoded.wasi, null);
  assert.deepEqual(decoded.meta, image.meta);
});

test("encodeImage rejects bad input before yielding any byte", () => {
  const bad: Array<[string, (image: ProcessImage) => void]> = [
    ["short hash", (i) => (i.module_sha256 = new Uint8Array(31))],
    ["negative i64 bits", (i) => (i.globals = [{ name: "g", type: "i64", bits: -1n }])],
    ["i32 bits over 32", (i) => (i.globals = [{ name: "g", type: "i32", bits: 1n << 32n }])],
    ["duplicate global", (i) => (i.globals = [{ name: "g", type: "i32", bits: 0n }, { name: "g", type: "f32", bits: 0n }])],
    ["lone surrogate", (i) => (i.stack = { entry: "\ud800", asyncify: new Uint8Array(0) })],
    ["unserialisable wasi", (i) => (i.wasi = { n: 1n })],
    ["undefined wasi", (i) => (i.wasi = undefined)],
    ["odd memory size", (i) => (i.memory = { size_bytes: 100, pages: () => [] })],
    ["fractional stdout", (i) => (i.streams = { ...i.streams, stdout_bytes: 1.5 })],
  ];
  for (const [what, mutate] of bad) {
    const { image } = randomImage(2);
    mutate(image);
    const chunks = encodeImage(image, { signer: TEST_SIGNER });
    assert.throws(() => chunks.next(), (e: unknown) => e instanceof TypeError || e instanceof RangeError, what);
  }
});

test("encodeImage rejects pages out of order, outside memory or of the wrong size", () => {
  const page = new Uint8Array(PAGE_BYTES).fill(1);
  const sources = [
    { size_bytes: 4 * PAGE_BYTES, pages: () => [{ index: 2, data: page }, { index: 1, data: page }] },
    { size_bytes: 4 * PAGE_BYTES, pages: () => [{ index: 1, data: page }, { index: 1, data: page }] },
    { size_bytes: 4 * PAGE_BYTES, pages: () => [{ index: 4, data: page }] },
    { size_bytes: 4 * PAGE_BYTES, pages: () => [{ index: 0, data: page.subarray(1) }] },
  ];
  for (const memory of sources) {
    const { image } = randomImage(2);
    image.memory = memory;
    assert.throws(() => [...encodeImage(image, { signer: TEST_SIGNER })], RangeError);
  }
});

test("encodeImage enforces the decoder's limits", () => {
  const { image } = randomImage(4);
  image.stack = { entry: "_start", asyncify: new Uint8Array(ImageLimits.stack_bytes_max + 1) };
  const error = catchImageError(() => encodeImage(image, { signer: TEST_SIGNER }).next());
  assert.equal(error.code, "ERR_IMAGE_LIMIT");
});
