/**
 * Property tests of the image decoder and the envelope opener (fast-check,
 * fixed seed, a time budget per property): whatever bytes arrive, cut
 * however, they end in an ImageError or a checked image, never another
 * exception or a hang; a mutated image never decodes unless it was re-signed
 * by a trusted key; and every image round-trips.
 */
import assert from "node:assert/strict";
import { createSecretKey, randomBytes } from "node:crypto";
import { test } from "node:test";
import * as fc from "fast-check";
import { chunkSizes, cut, fuzzParameters, thrown } from "../_fuzz.js";
import { ImageError } from "../errors.js";
import { FOREIGN_SIGNER, TEST_TRUST, buildImage, encodeToBytes, randomImage, splitSections, type RawSection } from "./_fixtures.js";
import { PAGE_BYTES, SectionKind } from "./format.js";
import { EnvelopeOpener, ImageDecoder, envelopeKeyId, sealImage, sparsePages, writeMemory, type DecodedImage } from "./mod.js";

/** A few valid images of every shape the fuzzers start from (small: each run decodes one whole). */
const VALID: Uint8Array[] = [1, 2, 3, 4, 5, 6].map((seed) => encodeToBytes(randomImage(seed, seed * 3).image));

/** Decodes `bytes` cut at `sizes`; returns the image, or throws what the decoder threw. */
function decode(bytes: Uint8Array, sizes: readonly number[], options: { copy_pages?: boolean; stream?: boolean } = {}): DecodedImage {
  const decoder = new ImageDecoder({
    trust: TEST_TRUST,
    copy_pages: options.copy_pages ?? true,
    ...(options.stream === true ? { write_pages: () => undefined } : {}),
  });
  for (const piece of cut(bytes, sizes)) decoder.push(piece);
  return decoder.end();
}

/** Asserts `error` is undefined (it decoded) or an ImageError; anything else fails the property. */
function onlyImageErrors(error: unknown): void {
  if (error !== undefined && !(error instanceof ImageError)) throw new Error(`the decoder threw a non-ImageError: ${String(error)}`, { cause: error });
}

/** One edit of a byte string. */
type Mutation =
  | { kind: "flip"; at: number; xor: number }
  | { kind: "insert"; at: number; bytes: Uint8Array }
  | { kind: "delete"; at: number; count: number }
  | { kind: "overwrite"; at: number; bytes: Uint8Array };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 40 }) }),
  fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), count: fc.integer({ min: 1, max: 5000 }) }),
  fc.record({ kind: fc.constant("overwrite" as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 40 }) }),
);

function mutate(bytes: Uint8Array, m: Mutation): Uint8Array {
  const at = bytes.length === 0 ? 0 : m.at % bytes.length;
  switch (m.kind) {
    case "flip": {
      const out = Uint8Array.from(bytes);
      out[at] = (out[at] as number) ^ m.xor;
      return out;
    }
    case "insert":
      return Buffer.concat([bytes.subarray(0, at), m.bytes, bytes.subarray(at)]);
    case "delete":
      return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + m.count)]);
    case "overwrite": {
      const out = Uint8Array.from(bytes);
      out.set(m.bytes.subarray(0, out.length - at), at);
      return out;
    }
  }
}

test("fuzz: random bytes end in an ImageError, however they are cut", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 8192 }), chunkSizes, (bytes, sizes) => {
      const error = thrown(() => decode(bytes, sizes));
      assert.ok(error instanceof ImageError, `random bytes did not fail with an ImageError: ${String(error)}`);
    }),
    fuzzParameters(5000),
  );
});

test("fuzz: a valid image's prefix followed by random bytes ends in an ImageError", () => {
  fc.assert(
    fc.property(fc.constantFrom(...VALID), fc.nat(), fc.uint8Array({ maxLength: 2048 }), chunkSizes, (valid, at, garbage, sizes) => {
      const prefix = valid.subarray(0, at % valid.length);
      const error = thrown(() => decode(Buffer.concat([prefix, garbage]), sizes));
      assert.ok(error instanceof ImageError, `did not fail with an ImageError: ${String(error)}`);
    }),
    fuzzParameters(1500),
  );
});

test("fuzz: byte-level mutations of valid images never decode, and fail only with an ImageError", () => {
  fc.assert(
    fc.property(fc.constantFrom(...VALID), fc.array(mutation, { minLength: 1, maxLength: 4 }), chunkSizes, fc.boolean(), (valid, mutations, sizes, stream) => {
      const bytes = mutations.reduce(mutate, valid);
      const error = thrown(() => decode(bytes, sizes, { stream }));
      onlyImageErrors(error);
      // Only a mutation that changed nothing (an overwrite with the same bytes) may decode.
      if (error === undefined) assert.ok(Buffer.from(bytes).equals(valid), "a changed image decoded");
    }),
    fuzzParameters(1500),
  );
});

/** A section-level edit: which section, and how its payload changes. */
interface SectionEdit {
  section: number;
  flips: [number, number][];
  truncate: number | undefined;
  append: Uint8Array;
  replace: Uint8Array | undefined;
}

const sectionEdit: fc.Arbitrary<SectionEdit> = fc.record({
  section: fc.nat(),
  flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { maxLength: 6 }),
  truncate: fc.option(fc.nat(), { nil: undefined }),
  append: fc.uint8Array({ maxLength: 16 }),
  replace: fc.option(fc.uint8Array({ maxLength: 300 }), { nil: undefined }),
});

function editSections(valid: Uint8Array, edit: SectionEdit): RawSection[] {
  const sections = splitSections(valid).filter((s) => s.kind !== SectionKind.signature && s.kind !== SectionKind.end);
  const target = edit.section % sections.length;
  return sections.map((s, i) => {
    if (i !== target) return s;
    let payload = edit.replace ?? Uint8Array.from(s.payload);
    for (const [at, xor] of edit.flips) if (payload.length > 0) payload[at % payload.length] = (payload[at % payload.length] as number) ^ xor;
    if (edit.truncate !== undefined) payload = payload.subarray(0, edit.truncate % (payload.length + 1));
    return { ...s, payload: Buffer.concat([payload, edit.append]) };
  });
}

test("fuzz: payloads mutated with valid CRCs and re-signed by the trusted key reach the section parsers: an image or an ImageError", () => {
  let refused = 0;
  fc.assert(
    fc.property(fc.constantFrom(...VALID), sectionEdit, chunkSizes, (valid, edit, sizes) => {
      const error = thrown(() => decode(buildImage(editSections(valid, edit)), sizes));
      onlyImageErrors(error);
      if (error !== undefined) refused += 1;
    }),
    fuzzParameters(1500),
  );
  assert.ok(refused > 0, "no mutation was refused: the fuzzer does not reach the parsers");
});

test("fuzz: the same mutations without the key (CRCs recomputed, signature kept or by another key) never decode", () => {
  fc.assert(
    fc.property(fc.constantFrom(...VALID), sectionEdit, fc.boolean(), chunkSizes, (valid, edit, foreign, sizes) => {
      const sections = editSections(valid, edit);
      const forged = foreign
        ? buildImage(sections, { signer: FOREIGN_SIGNER })
        : buildImage([...sections, ...splitSections(valid).filter((s) => s.kind === SectionKind.signature)], { keep_signatures: true });
      const error = thrown(() => decode(forged, sizes));
      onlyImageErrors(error);
      if (error === undefined) {
        // Only an edit that left the bytes as they were (with the original signature) may decode.
        assert.ok(!foreign && Buffer.from(forged).equals(valid), "a forged image decoded");
      }
    }),
    fuzzParameters(1000),
  );
});

test("fuzz: every image round-trips through any cut of its bytes, copied, viewed or streamed", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 1_000_000 }), fc.integer({ min: 0, max: 64 }), chunkSizes, fc.constantFrom("copy", "view", "stream"), (seed, pages, sizes, mode) => {
      const { image, memory } = randomImage(seed, pages);
      const bytes = encodeToBytes(image);
      const rebuilt = new Uint8Array(memory.length);
      const decoder = new ImageDecoder({
        trust: TEST_TRUST,
        copy_pages: mode === "copy",
        ...(mode === "stream" ? { write_pages: (offset: number, piece: Uint8Array) => rebuilt.set(piece, offset) } : {}),
      });
      for (const piece of cut(bytes, sizes)) decoder.push(piece);
      const decoded = decoder.end();
      if (mode !== "stream") writeMemory(decoded, rebuilt);
      assert.ok(Buffer.from(rebuilt).equals(memory), "memory differs");
      assert.deepEqual(decoded.globals, image.globals);
      assert.deepEqual(decoded.stack.asyncify, image.stack.asyncify);
      assert.deepEqual(decoded.wasi, image.wasi);
      assert.deepEqual(decoded.streams, image.streams);
      assert.deepEqual(decoded.meta, image.meta);
      assert.equal(decoded.memory.size_bytes, memory.length);
      // Re-encoding what was decoded gives the same bytes (deterministic encoder).
      if (mode !== "stream") assert.ok(Buffer.from(encodeToBytes({ ...decoded, memory: sparsePages(rebuilt) })).equals(bytes));
    }),
    fuzzParameters(300),
  );
});

const KEY = createSecretKey(randomBytes(32));
const SEALED: Uint8Array[] = VALID.slice(0, 3).map((bytes) => Buffer.concat([...sealImage([bytes], KEY)]));

function open(bytes: Uint8Array, sizes: readonly number[]): Uint8Array[] {
  const opener = new EnvelopeOpener((id) => (Buffer.from(envelopeKeyId(KEY)).equals(id) ? KEY : undefined));
  const out: Uint8Array[] = [];
  for (const piece of cut(bytes, sizes)) out.push(...opener.push(piece));
  out.push(...opener.end());
  return out;
}

test("fuzz: the envelope opener fails only with ImageErrors, and a changed envelope never opens", () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 4096 }).map((b) => ({ bytes: b, original: null as Uint8Array | null })),
        fc.tuple(fc.constantFrom(...SEALED), fc.array(mutation, { minLength: 1, maxLength: 3 })).map(([s, ms]) => ({ bytes: ms.reduce(mutate, s), original: s })),
      ),
      chunkSizes,
      ({ bytes, original }, sizes) => {
        const error = thrown(() => open(bytes, sizes));
        onlyImageErrors(error);
        if (error === undefined) assert.ok(original !== null && Buffer.from(bytes).equals(original), "a changed envelope opened");
      },
    ),
    fuzzParameters(1500),
  );
});

test("the fuzzers' valid images are valid", () => {
  for (const bytes of VALID) decode(bytes, [bytes.length]);
  assert.ok(VALID.some((bytes) => splitSections(bytes).some((s) => s.kind === SectionKind.pages && s.payload.length > PAGE_BYTES)));
});
