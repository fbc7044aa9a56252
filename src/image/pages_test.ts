/** sparsePages and writeMemory. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { encodeToBytes, Prng, randomImage, randomMemory } from "./_fixtures.js";
import { RunMemory } from "./pages.js";
import { PAGE_BYTES, sparsePages, writeMemory } from "./mod.js";

test("sparsePages yields exactly the non-zero pages, in order, as views", () => {
  for (let seed = 1; seed <= 100; seed++) {
    const memory = randomMemory(new Prng(seed), 64);
    const source = sparsePages(memory);
    assert.equal(source.size_bytes, memory.length);
    const pages = [...source.pages()];
    const expected: number[] = [];
    for (let p = 0; p < memory.length / PAGE_BYTES; p++) {
      if (memory.subarray(p * PAGE_BYTES, (p + 1) * PAGE_BYTES).some((b) => b !== 0)) expected.push(p);
    }
    assert.deepEqual(pages.map((p) => p.index), expected, `seed ${seed}`);
    for (const { index, data } of pages) {
      assert.equal(data.buffer, memory.buffer, "a view, not a copy");
      assert.equal(data.byteOffset, memory.byteOffset + index * PAGE_BYTES);
      assert.equal(data.length, PAGE_BYTES);
    }
  }
});

test("sparsePages sees a single non-zero byte at either edge of a page", () => {
  const memory = new Uint8Array(4 * PAGE_BYTES);
  memory[PAGE_BYTES] = 1; // first byte of page 1
  memory[3 * PAGE_BYTES - 1] = 1; // last byte of page 2
  assert.deepEqual([...sparsePages(memory).pages()].map((p) => p.index), [1, 2]);
});

test("sparsePages works on a shared memory and on a view at an offset", () => {
  const shared = new Uint8Array(new SharedArrayBuffer(6 * PAGE_BYTES));
  shared[5 * PAGE_BYTES + 9] = 7;
  shared[PAGE_BYTES] = 1; // outside the view below
  const view = shared.subarray(2 * PAGE_BYTES);
  const pages = [...sparsePages(view).pages()];
  assert.deepEqual(pages.map((p) => p.index), [3]);
  assert.equal(pages[0]?.data[9], 7);
  shared[5 * PAGE_BYTES + 9] = 8; // live view: sees later writes
  assert.equal(pages[0]?.data[9], 8);
});

test("sparsePages rejects a memory that is not whole pages", () => {
  assert.throws(() => sparsePages(new Uint8Array(PAGE_BYTES + 1)), RangeError);
});

test("writeMemory copies runs to their offsets and leaves other bytes alone", () => {
  const run_a = new Uint8Array(PAGE_BYTES).fill(1);
  const run_b = new Uint8Array(2 * PAGE_BYTES).fill(2);
  const memory = new RunMemory(8 * PAGE_BYTES, [{ first: 1, data: run_a }, { first: 5, data: run_b }]);
  assert.equal(memory.page_count, 3);
  assert.deepEqual([...memory.pages()].map((p) => p.index), [1, 5, 6]);
  const target = new Uint8Array(8 * PAGE_BYTES).fill(9);
  writeMemory({ memory }, target);
  const expected = new Uint8Array(8 * PAGE_BYTES).fill(9);
  expected.fill(1, PAGE_BYTES, 2 * PAGE_BYTES);
  expected.fill(2, 5 * PAGE_BYTES, 7 * PAGE_BYTES);
  assert.deepEqual(target, expected);
  assert.throws(() => writeMemory({ memory }, new Uint8Array(7 * PAGE_BYTES)), RangeError);
});

test("writeMemory falls back to pages() for a hand-made DecodedMemory", () => {
  const source = new Uint8Array(3 * PAGE_BYTES);
  source[2 * PAGE_BYTES + 1] = 5;
  const memory = { ...sparsePages(source), page_count: 1 };
  const target = new Uint8Array(3 * PAGE_BYTES);
  writeMemory({ memory }, target);
  assert.deepEqual(target, source);
});

test("sparsePages' runs are its pages, grouped: encoding by runs gives the same bytes as page by page, runs of 256 pages at most", () => {
  for (let seed = 1; seed <= 40; seed++) {
    const { image, memory } = randomImage(seed, 700);
    const source = sparsePages(memory);
    const runs = [...(source.pageRuns?.() ?? [])];
    assert.ok(runs.every((r) => r.data.buffer === memory.buffer && r.data.length > 0 && r.data.length <= 256 * PAGE_BYTES && r.data.length % PAGE_BYTES === 0));
    assert.deepEqual(
      runs.flatMap((r) => Array.from({ length: r.data.length / PAGE_BYTES }, (_, i) => r.first + i)),
      [...source.pages()].map((p) => p.index),
      `seed ${seed}`,
    );
    const by_pages = encodeToBytes({ ...image, memory: { size_bytes: source.size_bytes, pages: () => source.pages() } });
    assert.deepEqual(Buffer.from(encodeToBytes(image)), Buffer.from(by_pages), `seed ${seed}`);
  }
});
