/** The decoder's checks: truncation, corruption, versions, modules, limits, structure. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { ImageError } from "../errors.js";
import { frameSection, sectionHeader } from "./_frame.js";
import { Prng, TEST_TRUST, buildImage, catchImageError, encodeToBytes, randomChunks, randomImage, splitSections, type RawSection } from "./_fixtures.js";
import { HEADER_BYTES, ImageLimits, PAGE_BYTES, SECTION_CRC_BYTES, SECTION_HEADER_BYTES, SectionFlags, SectionKind } from "./format.js";
import { ImageDecoder, decodeImage, sparsePages, type DecodedImage } from "./mod.js";

/** A small image (a few pages, some globals) whose every byte the exhaustive tests can visit. */
function smallImage(): Uint8Array {
  const { image } = randomImage(42, 0);
  const memory = new Uint8Array(5 * PAGE_BYTES);
  memory[7] = 1;
  memory[2 * PAGE_BYTES + 100] = 2;
  memory[3 * PAGE_BYTES] = 3;
  image.memory = sparsePages(memory);
  image.stack.asyncify = image.stack.asyncify.subarray(0, 64);
  return encodeToBytes(image);
}

function code(fn: () => unknown): string {
  return catchImageError(fn).code;
}

function streamDecode(bytes: Uint8Array, rng: Prng): unknown {
  const decoder = new ImageDecoder({ trust: TEST_TRUST, copy_pages: rng.chance(0.5) });
  for (const chunk of randomChunks(rng, bytes)) decoder.push(chunk);
  return decoder.end();
}

/**
 * The code single-byte corruption at `offset` of `bad` must give: the header
 * fields are checked by value (a version turned into 1 reads as an unsigned
 * image), the rest by CRC.
 */
function expectedCorruptionCode(offset: number, bad: Uint8Array): string {
  if (offset < 8) return "ERR_IMAGE_MAGIC";
  if (offset < 12) return new DataView(bad.buffer, bad.byteOffset).getUint32(8, true) === 1 ? "ERR_IMAGE_SIGNATURE" : "ERR_IMAGE_VERSION";
  if (offset < HEADER_BYTES) return "ERR_IMAGE_MALFORMED";
  return "ERR_IMAGE_CHECKSUM";
}

function withSection(bytes: Uint8Array, kind: number, change: (s: RawSection) => RawSection | RawSection[]): Uint8Array {
  return buildImage(splitSections(bytes).flatMap((s) => (s.kind === kind ? change(s) : [s])));
}

function u32le(...values: number[]): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  values.forEach((v, i) => new DataView(out.buffer).setUint32(i * 4, v, true));
  return out;
}

test("every truncation point gives ERR_IMAGE_TRUNCATED", () => {
  const bytes = smallImage();
  const rng = new Prng(1);
  for (let n = 0; n < bytes.length; n++) {
    assert.equal(code(() => decodeImage(bytes.subarray(0, n), { trust: TEST_TRUST })), "ERR_IMAGE_TRUNCATED", `cut at ${n}`);
    if (n % 97 === 0) assert.equal(code(() => streamDecode(bytes.subarray(0, n), rng)), "ERR_IMAGE_TRUNCATED", `stream cut at ${n}`);
  }
  decodeImage(bytes, { trust: TEST_TRUST }); // and the whole image is fine
});

test("single-byte corruption at every offset of a small image gives the right typed error", () => {
  const bytes = smallImage();
  const rng = new Prng(2);
  for (let offset = 0; offset < bytes.length; offset++) {
    const bad = new Uint8Array(bytes);
    bad[offset] = (bad[offset] as number) ^ (1 + rng.int(255));
    assert.equal(code(() => decodeImage(bad, { trust: TEST_TRUST })), expectedCorruptionCode(offset, bad), `offset ${offset}`);
  }
});

test("single-byte corruption at random offsets of random images, streamed in random chunks", () => {
  for (let seed = 1; seed <= 60; seed++) {
    const bytes = encodeToBytes(randomImage(seed, 12).image); // small: some splits are 1-byte chunks
    const rng = new Prng(seed);
    for (let i = 0; i < 20; i++) {
      const offset = rng.int(bytes.length);
      const bad = new Uint8Array(bytes);
      bad[offset] = (bad[offset] as number) ^ (1 + rng.int(255));
      assert.equal(code(() => streamDecode(bad, rng)), expectedCorruptionCode(offset, bad), `seed ${seed} offset ${offset}`);
    }
  }
});

test("bad magic fails on the first wrong byte", () => {
  const decoder = new ImageDecoder({ trust: TEST_TRUST });
  decoder.push(Uint8Array.of(0x89, 0x46));
  assert.equal(code(() => decoder.push(Uint8Array.of(0x00))), "ERR_IMAGE_MAGIC");
  assert.equal(code(() => decoder.end()), "ERR_IMAGE_MAGIC"); // the failure sticks
  assert.equal(code(() => decodeImage(new TextEncoder().encode("{\"not\": \"an image\"}"), { trust: TEST_TRUST })), "ERR_IMAGE_MAGIC");
});

test("a foreign format version gives ERR_IMAGE_VERSION", () => {
  for (const version of [0, 3, 0xffff_ffff]) {
    const bytes = smallImage();
    new DataView(bytes.buffer, bytes.byteOffset).setUint32(8, version, true);
    assert.equal(code(() => decodeImage(bytes, { trust: TEST_TRUST })), "ERR_IMAGE_VERSION", `version ${version}`);
  }
});

test("an image of another module gives ERR_IMAGE_MODULE_MISMATCH, before any page arrives", () => {
  const { image } = randomImage(7);
  const bytes = encodeToBytes(image);
  const other = new Uint8Array(image.module_sha256);
  other[31] = (other[31] as number) ^ 1;
  assert.equal(code(() => decodeImage(bytes, { trust: TEST_TRUST, module_sha256: other })), "ERR_IMAGE_MODULE_MISMATCH");
  decodeImage(bytes, { trust: TEST_TRUST, module_sha256: image.module_sha256 });

  const module_end = HEADER_BYTES + 16 + (splitSections(bytes)[0] as RawSection).payload.length + 4;
  const decoder = new ImageDecoder({ trust: TEST_TRUST, module_sha256: other });
  assert.equal(code(() => decoder.push(bytes.subarray(0, module_end))), "ERR_IMAGE_MODULE_MISMATCH");
});

test("a section length over its limit gives ERR_IMAGE_LIMIT from the header alone", () => {
  const bytes = smallImage();
  const sections = splitSections(bytes);
  // [sections before the bad header, kind, claimed length]
  for (const [before, kind, length] of [
    [4, SectionKind.wasi, 2 ** 40],
    [1, SectionKind.meta, ImageLimits.json_section_bytes_max + 1],
    [4, SectionKind.wasi, 2 ** 63],
    [2, 0x1234, ImageLimits.optional_section_bytes_max + 1],
  ] as const) {
    const prefix = buildImage(sections.slice(0, before), { signer: null });
    const flags = kind === 0x1234 ? SectionFlags.optional : 0;
    const decoder = new ImageDecoder({ trust: TEST_TRUST });
    decoder.push(prefix.subarray(0, prefix.length - (16 + 20 + 4))); // without its END
    // Only the 16 header bytes: the decoder must refuse without waiting for (or allocating) the payload.
    assert.equal(code(() => decoder.push(sectionHeader({ kind, flags, length_bytes: length }))), "ERR_IMAGE_LIMIT", `kind ${kind} length ${length}`);
  }
});

test("field values over their limits give ERR_IMAGE_LIMIT", () => {
  const bytes = smallImage();
  const memory = new Uint8Array(12);
  new DataView(memory.buffer).setBigUint64(0, 2n ** 32n + 4096n, true);
  new DataView(memory.buffer).setUint32(8, PAGE_BYTES, true);
  const cases: Array<[string, number, Uint8Array]> = [
    ["memory over 4 GiB", SectionKind.memory, memory],
    ["global count", SectionKind.globals, u32le(ImageLimits.global_count_max + 1)],
    ["instrumenter", SectionKind.module, Buffer.concat([new Uint8Array(32), u32le(ImageLimits.instrumenter_bytes_max + 1), new Uint8Array(300)])],
    ["asyncify", SectionKind.stack, Buffer.concat([u32le(0), u32le(ImageLimits.stack_bytes_max + 1)])],
    ["stdin", SectionKind.streams, Buffer.concat([new Uint8Array(20), u32le(ImageLimits.stdin_pending_bytes_max + 1)])],
  ];
  for (const [what, kind, payload] of cases) {
    const bad = withSection(bytes, kind, (s) => ({ ...s, payload }));
    assert.equal(code(() => decodeImage(bad, { trust: TEST_TRUST })), "ERR_IMAGE_LIMIT", what);
  }
  const big_run = new Uint8Array(8 + (ImageLimits.page_run_pages_max + 1) * PAGE_BYTES);
  const decoder = new ImageDecoder({ trust: TEST_TRUST });
  const upto_memory = buildImage(splitSections(bytes).filter((s) => s.kind !== SectionKind.pages), { signer: null });
  decoder.push(upto_memory.subarray(0, upto_memory.length - 40));
  assert.equal(code(() => decoder.push(frameSection({ kind: SectionKind.pages, flags: 0, payload: big_run }).bytes)), "ERR_IMAGE_LIMIT");

  const optional = { kind: 0x4000, flags: SectionFlags.optional, payload: new Uint8Array(1) };
  const many = withSection(bytes, SectionKind.meta, (s) => [s, ...Array(ImageLimits.optional_section_count_max + 1).fill(optional)]);
  assert.equal(code(() => decodeImage(many, { trust: TEST_TRUST })), "ERR_IMAGE_LIMIT");
});

test("unknown sections: skipped when optional, rejected when not", () => {
  const bytes = smallImage();
  const optional = { kind: 0x4000, flags: SectionFlags.optional, payload: Uint8Array.of(1, 2, 3) };
  const skipped = withSection(bytes, SectionKind.globals, (s) => [optional, s, optional]);
  const rng = new Prng(3);
  // Re-encoding the decoded image drops the optional sections and gives back the original bytes.
  assert.ok(Buffer.from(encodeToBytes(streamDecode(skipped, rng) as DecodedImage)).equals(bytes));
  const required = withSection(bytes, SectionKind.globals, (s) => [{ ...optional, flags: 0 }, s]);
  assert.equal(code(() => decodeImage(required, { trust: TEST_TRUST })), "ERR_IMAGE_MALFORMED");
  const odd_flags = withSection(bytes, SectionKind.globals, (s) => [{ ...optional, flags: 3 }, s]);
  assert.equal(code(() => decodeImage(odd_flags, { trust: TEST_TRUST })), "ERR_IMAGE_MALFORMED");
  const flagged_known = withSection(bytes, SectionKind.globals, (s) => ({ ...s, flags: SectionFlags.optional }));
  assert.equal(code(() => decodeImage(flagged_known, { trust: TEST_TRUST })), "ERR_IMAGE_MALFORMED");
});

test("sections out of order, missing or repeated give ERR_IMAGE_MALFORMED", () => {
  const bytes = smallImage();
  const sections = splitSections(bytes);
  const [module, meta] = sections as [RawSection, RawSection];
  const variants: Array<[string, RawSection[]]> = [
    ["swapped", [meta, module, ...sections.slice(2)]],
    ["missing STACK", sections.filter((s) => s.kind !== SectionKind.stack)],
    ["repeated META", [module, meta, meta, ...sections.slice(2)]],
    ["no MEMORY", sections.filter((s) => s.kind !== SectionKind.memory && s.kind !== SectionKind.pages)],
    ["PAGES before MEMORY", sections.filter((s) => s.kind !== SectionKind.memory)],
  ];
  for (const [what, list] of variants) assert.equal(code(() => decodeImage(buildImage(list), { trust: TEST_TRUST })), "ERR_IMAGE_MALFORMED", what);
});

test("bad page runs give ERR_IMAGE_MALFORMED", () => {
  const bytes = smallImage(); // runs: [0], [2, 3] in a 5-page memory
  const sections = splitSections(bytes);
  const runs = sections.filter((s) => s.kind === SectionKind.pages);
  const others = sections.filter((s) => s.kind !== SectionKind.pages);
  const run = (first: number, count: number, declared = count): RawSection => ({
    kind: SectionKind.pages,
    flags: 0,
    payload: Buffer.concat([u32le(first, declared), new Uint8Array(count * PAGE_BYTES).fill(1)]),
  });
  const variants: Array<[string, RawSection[]]> = [
    ["reversed", [...runs].reverse()],
    ["overlapping", [run(0, 2), run(1, 1)]],
    ["repeated", [run(1, 1), run(1, 1)]],
    ["past the end", [run(4, 2)]],
    ["more pages than memory", [run(0, 6)]],
    ["count mismatch", [run(0, 2, 1)]],
    ["partial page", [{ kind: SectionKind.pages, flags: 0, payload: Buffer.concat([u32le(0, 1), new Uint8Array(100)]) }]],
  ];
  for (const [what, pages] of variants) {
    assert.equal(code(() => decodeImage(buildImage([...others, ...pages]), { trust: TEST_TRUST })), "ERR_IMAGE_MALFORMED", what);
  }
});

test("bad section contents with valid checksums give ERR_IMAGE_MALFORMED", () => {
  const bytes = smallImage();
  const json = (text: string): Uint8Array => new TextEncoder().encode(text);
  const global = (type: number, bits: bigint): Uint8Array => {
    const out = new Uint8Array(4 + 1 + 4 + 1 + 8);
    const view = new DataView(out.buffer);
    view.setUint32(0, 1, true);
    view.setUint8(4, type);
    view.setUint32(5, 1, true);
    view.setUint8(9, 0x67);
    view.setBigUint64(10, bits, true);
    return out;
  };
  const memory = (size: bigint, page: number): Uint8Array => {
    const out = new Uint8Array(12);
    new DataView(out.buffer).setBigUint64(0, size, true);
    new DataView(out.buffer).setUint32(8, page, true);
    return out;
  };
  const cases: Array<[string, number, Uint8Array]> = [
    ["META not JSON", SectionKind.meta, json("{")],
    ["META not UTF-8", SectionKind.meta, Uint8Array.of(0x22, 0xff, 0x22)],
    ["META not an object", SectionKind.meta, json("[1]")],
    ["META without module_path", SectionKind.meta, json('{"created_unix_ms":1}')],
    ["WASI empty", SectionKind.wasi, new Uint8Array(0)],
    ["unknown global type", SectionKind.globals, global(0x70, 0n)],
    ["i32 over 32 bits", SectionKind.globals, global(0x7f, 1n << 32n)],
    ["global count too high for the bytes", SectionKind.globals, u32le(1000)],
    ["globals trailing bytes", SectionKind.globals, Buffer.concat([global(0x7e, 5n), new Uint8Array(1)])],
    ["MODULE short", SectionKind.module, new Uint8Array(20)],
    ["STREAMS unknown flags", SectionKind.streams, Buffer.concat([new Uint8Array(16), u32le(2, 0)])],
    ["STREAMS stdout beyond 2^53", SectionKind.streams, Buffer.concat([u32le(0, 0x0020_0000), new Uint8Array(8), u32le(0, 0)])],
    ["page size", SectionKind.memory, memory(5n * 4096n, 65536)],
    ["memory size", SectionKind.memory, memory(5n * 4096n + 1n, 4096)],
    ["MEMORY length", SectionKind.memory, new Uint8Array(16)],
  ];
  for (const [what, kind, payload] of cases) {
    const bad = withSection(bytes, kind, (s) => ({ ...s, payload }));
    assert.equal(code(() => decodeImage(bad, { trust: TEST_TRUST })), "ERR_IMAGE_MALFORMED", what);
  }
  const dup = Buffer.concat([global(0x7f, 1n), global(0x7f, 2n).subarray(4)]);
  dup[0] = 2;
  assert.equal(code(() => decodeImage(withSection(bytes, SectionKind.globals, (s) => ({ ...s, payload: dup })), { trust: TEST_TRUST })), "ERR_IMAGE_MALFORMED", "dup");
});

test("END must match what precedes it, and nothing may follow it", () => {
  const bytes = smallImage();
  const trailing = Buffer.concat([bytes, Uint8Array.of(0)]);
  assert.equal(code(() => decodeImage(trailing, { trust: TEST_TRUST })), "ERR_IMAGE_MALFORMED");
  // A whole, well-framed PAGES section removed: every remaining CRC passes;
  // the signature does not (it comes before END, whose checksum would not either).
  const sections = splitSections(bytes);
  const dropped = Buffer.concat(
    [bytes.subarray(0, HEADER_BYTES), ...sections.filter((s, i) => !(s.kind === SectionKind.pages && i === 7)).map((s) => frameSection(s).bytes)],
  );
  assert.equal(code(() => decodeImage(dropped, { trust: TEST_TRUST })), "ERR_IMAGE_SIGNATURE");
  // Signed again after the drop, as by a writer that holds the key: the END checksum catches it.
  const resigned = Buffer.concat([
    buildImage(sections.filter((s, i) => !(s.kind === SectionKind.pages && i === 7))).subarray(0, -40),
    bytes.subarray(bytes.length - 40),
  ]);
  assert.equal(code(() => decodeImage(resigned, { trust: TEST_TRUST })), "ERR_IMAGE_CHECKSUM");
  // An END section whose counts lie, with a valid CRC.
  const end = splitSections(bytes).at(-1) as RawSection;
  const lying = new Uint8Array(end.payload);
  lying[12] = (lying[12] as number) + 1; // page_count
  const relabelled = Buffer.concat([bytes.subarray(0, bytes.length - 40), frameSection({ kind: SectionKind.end, flags: 0, payload: lying }).bytes]);
  assert.equal(code(() => decodeImage(relabelled, { trust: TEST_TRUST })), "ERR_IMAGE_MALFORMED");
});

test("fuzz: random garbage always ends in an ImageError", () => {
  const rng = new Prng(99);
  const valid = smallImage();
  for (let i = 0; i < 2000; i++) {
    const garbage = rng.bytes(rng.int(300));
    const mode = rng.int(3);
    // Pure garbage, a valid header then garbage, or a valid prefix then garbage.
    const input = mode === 0 ? garbage : Buffer.concat([valid.subarray(0, mode === 1 ? HEADER_BYTES : rng.int(valid.length)), garbage]);
    assert.ok(catchImageError(() => streamDecode(input, rng)) instanceof ImageError);
  }
});

test("fuzz: mutated payloads with valid framing decode or fail with an ImageError, never anything else", () => {
  const rng = new Prng(7);
  let failures = 0;
  for (let i = 0; i < 3000; i++) {
    const bytes = encodeToBytes(randomImage(1 + rng.int(20), 3).image);
    const sections = splitSections(bytes);
    const target = rng.int(sections.length - 1);
    const mutated = sections.map((s, j) => {
      if (j !== target) return s;
      let payload = new Uint8Array(s.payload);
      for (let k = rng.int(4); k >= 0 && payload.length > 0; k--) payload[rng.int(payload.length)] = rng.u32() & 0xff;
      if (rng.chance(0.2)) payload = payload.subarray(0, rng.int(payload.length + 1));
      if (rng.chance(0.2)) payload = Buffer.concat([payload, rng.bytes(rng.int(10))]);
      return { ...s, payload };
    });
    try {
      streamDecode(buildImage(mutated), rng);
    } catch (error) {
      assert.ok(error instanceof ImageError, `iteration ${i}: ${String(error)}`);
      failures++;
    }
  }
  assert.ok(failures > 1000, `only ${failures} mutations were caught; the fuzzer is not reaching the parsers`);
});

test("push after end() is a programming error, not an image error", () => {
  const decoder = new ImageDecoder({ trust: TEST_TRUST });
  decoder.push(smallImage());
  decoder.end();
  assert.throws(() => decoder.push(new Uint8Array(1)), (e: unknown) => e instanceof Error && !(e instanceof ImageError));
});

test("write_pages streams page data in place, inside the declared memory, and keeps none", () => {
  for (let seed = 1; seed <= 20; seed += 1) {
    const { image, memory } = randomImage(seed, 600);
    const bytes = encodeToBytes(image);
    const rebuilt = new Uint8Array(memory.length);
    const decoder = new ImageDecoder({
      trust: TEST_TRUST,
      write_pages: (offset, piece) => {
        assert.ok(offset + piece.length <= memory.length, "a write outside the declared memory");
        rebuilt.set(piece, offset);
      },
    });
    for (const chunk of randomChunks(new Prng(seed), bytes)) decoder.push(chunk);
    const decoded = decoder.end();
    assert.ok(Buffer.from(rebuilt).equals(Buffer.from(memory)), `seed ${seed}`);
    assert.equal([...decoded.memory.pages()].length, 0, "page data was kept");
  }
});

test("write_pages: corrupted page data still fails the decode with ERR_IMAGE_CHECKSUM", () => {
  for (let seed = 1; seed <= 40; seed += 1) {
    const bytes = encodeToBytes(randomImage(seed, 300).image);
    const sections = splitSections(bytes);
    const pages = sections.findIndex((s) => s.kind === SectionKind.pages);
    if (pages < 0) continue;
    let offset = HEADER_BYTES;
    for (let i = 0; i < pages; i += 1) offset += SECTION_HEADER_BYTES + (sections[i] as RawSection).payload.length + SECTION_CRC_BYTES;
    for (const at of [offset + SECTION_HEADER_BYTES + 2, offset + SECTION_HEADER_BYTES + 100]) {
      const damaged = Uint8Array.from(bytes);
      damaged[at] = (damaged[at] as number) ^ 0x40;
      const decoder = new ImageDecoder({ trust: TEST_TRUST, write_pages: () => undefined });
      assert.equal(code(() => {
        decoder.push(damaged);
        decoder.end();
      }), "ERR_IMAGE_CHECKSUM");
    }
    return;
  }
});
