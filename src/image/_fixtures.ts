/**
 * Test helpers for the image tests: a seeded PRNG and random images, so every
 * failure names a seed that reproduces it. Not part of the public API.
 */
import { createHash, generateKeyPairSync } from "node:crypto";
import { ImageError } from "../errors.js";
import { ImageDigest, frameSection, type Section } from "./_frame.js";
import { encodeEnd } from "./_sections.js";
import { encodeSignature, prepareSigner, trustKeys, type ImageSigner, type ImageTrust } from "./_signature.js";
import { encodeImage } from "./encode.js";
import { HEADER_BYTES, IMAGE_MAGIC, IMAGE_VERSION, PAGE_BYTES, SECTION_CRC_BYTES, SECTION_HEADER_BYTES, SectionKind } from "./format.js";
import { sparsePages } from "./pages.js";
import type { GlobalValue, ProcessImage } from "./types.js";

import { Prng } from "../_prng.js";

export { Prng };

/** The key the image tests sign with (a fresh Ed25519 key per run: nothing may depend on its bytes). */
export const TEST_SIGNER: ImageSigner = { key: generateKeyPairSync("ed25519").privateKey };

/** Trusts exactly {@link TEST_SIGNER}'s key. */
export const TEST_TRUST: ImageTrust = trustKeys([TEST_SIGNER.key]);

/** Another key, trusted by nobody in the tests. */
export const FOREIGN_SIGNER: ImageSigner = { key: generateKeyPairSync("ed25519").privateKey };

const F32_SPECIAL = [0x7fc00000n, 0x7f800001n, 0xffc00001n, 0x7fbfffffn, 0x80000000n, 0x7f800000n, 0n, 0xffffffffn];
const F64_SPECIAL = [0x7ff8000000000000n, 0x7ff0000000000001n, 0xfff8000000000001n, 0x7ff7ffffffffffffn, 0x8000000000000000n, 0n];
const I64_SPECIAL = [0n, 1n, 0xffffffffffffffffn, 0x8000000000000000n, 0x7fffffffffffffffn];
const I32_SPECIAL = [0n, 1n, 0xffffffffn, 0x80000000n, 0x7fffffffn];
const STRINGS = ["", "a", "/tmp/x", "héllo", "日本語", "emoji 🚢", "\u0000nul", "\ufeffbom", 'quote"back\\slash'];

function randomGlobals(rng: Prng): GlobalValue[] {
  const globals: GlobalValue[] = [];
  const count = rng.int(12);
  for (let i = 0; i < count; i++) {
    const type = rng.pick(["i32", "i64", "f32", "f64"] as const);
    const special = rng.chance(0.5);
    let bits: bigint;
    if (type === "i32") bits = special ? rng.pick(I32_SPECIAL) : BigInt(rng.u32());
    else if (type === "f32") bits = special ? rng.pick(F32_SPECIAL) : BigInt(rng.u32());
    else if (type === "i64") bits = special ? rng.pick(I64_SPECIAL) : rng.u64();
    else bits = special ? rng.pick(F64_SPECIAL) : rng.u64();
    globals.push({ name: `__ferry_global_${i}${rng.pick(STRINGS)}`, type, bits });
  }
  return globals;
}

/** Random JSON value (no -0, which JSON cannot carry). */
export function randomJson(rng: Prng, depth = 0): unknown {
  const kind = depth > 3 ? rng.int(4) : rng.int(6);
  switch (kind) {
    case 0:
      return null;
    case 1:
      return rng.chance(0.5);
    case 2:
      return rng.chance(0.5) ? rng.int(1_000_000) - 500_000 : (rng.u32() / 7) * (rng.chance(0.5) ? 1 : -1) + 0.5;
    case 3:
      return rng.pick(STRINGS) + String(rng.int(100));
    case 4:
      return Array.from({ length: rng.int(5) }, () => randomJson(rng, depth + 1));
    default: {
      const obj: Record<string, unknown> = {};
      for (let i = rng.int(5); i > 0; i--) obj[`${rng.pick(STRINGS)}${i}`] = randomJson(rng, depth + 1);
      return obj;
    }
  }
}

/**
 * Random memory: a random number of pages (sometimes more than one run's
 * worth), each page zero, fully random, or zero but for one byte (often the
 * first or last, the edges a zero-page scan could miss).
 */
export function randomMemory(rng: Prng, pages_max: number): Uint8Array {
  const pages = rng.int(pages_max + 1);
  const memory = new Uint8Array(pages * PAGE_BYTES);
  const density = rng.pick([0, 0.05, 0.3, 0.9, 1]);
  for (let p = 0; p < pages; p++) {
    if (!rng.chance(density)) continue;
    const base = p * PAGE_BYTES;
    if (rng.chance(0.3)) {
      memory.set(rng.bytes(PAGE_BYTES), base);
      memory[base] = 1; // never all zero by accident
    } else {
      const at = rng.pick([0, PAGE_BYTES - 1, rng.int(PAGE_BYTES)]);
      memory[base + at] = 1 + rng.int(255);
    }
  }
  return memory;
}

/** A random image over a random memory; `memory` is the backing bytes. */
export function randomImage(seed: number, pages_max = 40): { image: ProcessImage; memory: Uint8Array } {
  const rng = new Prng(seed);
  const memory = randomMemory(rng, pages_max);
  const image: ProcessImage = {
    module_sha256: rng.bytes(32),
    instrumenter: `ferry-instrument/${rng.int(10)}`,
    memory: sparsePages(memory),
    globals: randomGlobals(rng),
    stack: { entry: rng.pick(["_start", "main", "run 🚢"]), asyncify: rng.bytes(rng.int(3000)) },
    wasi: randomJson(rng),
    streams: {
      stdout_bytes: rng.int(2 ** 31) * 4096 + rng.int(4096),
      stderr_bytes: rng.int(1000),
      stdin_pending: rng.bytes(rng.int(200)),
      stdin_eof: rng.chance(0.5),
    },
    meta: { module_path: `/m/${rng.pick(STRINGS)}.wasm`, created_unix_ms: 1_700_000_000_000 + rng.int(1e9), extra: randomJson(rng) },
  };
  return { image, memory };
}

/** All chunks of an encoding (signed with TEST_SIGNER unless told), concatenated. */
export function encodeToBytes(image: ProcessImage, signer: ImageSigner = TEST_SIGNER): Uint8Array {
  return Buffer.concat([...encodeImage(image, { signer })]);
}

/** Splits bytes at random points (sometimes into 1-byte pieces). */
export function randomChunks(rng: Prng, bytes: Uint8Array): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  const max = rng.pick([1, 7, 100, 5000, 70_000]);
  for (let at = 0; at < bytes.length; ) {
    const n = 1 + rng.int(max);
    chunks.push(bytes.subarray(at, at + n));
    at += n;
  }
  return chunks;
}

/** The ImageError `fn` throws; fails the test if it throws anything else or nothing. */
export function catchImageError(fn: () => unknown): ImageError {
  try {
    fn();
  } catch (error) {
    if (error instanceof ImageError) return error;
    throw new Error(`expected an ImageError, got ${String(error)}`, { cause: error });
  }
  throw new Error("expected an ImageError, but the call succeeded");
}

/** One section of an encoded image, as tests see it. */
export type RawSection = Section;

/** Splits a valid encoded image into its sections (END included), trusting its framing. */
export function splitSections(bytes: Uint8Array): RawSection[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const sections: RawSection[] = [];
  for (let at = HEADER_BYTES; at < bytes.length; ) {
    const length = Number(view.getBigUint64(at + 4, true));
    const payload = bytes.subarray(at + SECTION_HEADER_BYTES, at + SECTION_HEADER_BYTES + length);
    sections.push({ kind: view.getUint16(at, true), flags: view.getUint16(at + 2, true), payload });
    at += SECTION_HEADER_BYTES + length + SECTION_CRC_BYTES;
  }
  return sections;
}

/**
 * Builds an image from sections with valid framing and CRCs everywhere, a
 * SIGNATURE by `signer` (TEST_SIGNER unless told; null: none) and an END
 * section computed to match: what a buggy or hostile writer that knows the
 * format and holds a trusted key would produce. Sections of kind END or
 * SIGNATURE in the list are dropped; with `keep_signatures`, SIGNATURE
 * sections stay where they are and none is added.
 */
export function buildImage(
  sections: readonly RawSection[],
  options: { signer?: ImageSigner | null; keep_signatures?: boolean; version?: number } = {},
): Uint8Array {
  const header = new Uint8Array(HEADER_BYTES);
  header.set(IMAGE_MAGIC);
  new DataView(header.buffer).setUint32(8, options.version ?? IMAGE_VERSION, true);
  const digest = new ImageDigest();
  const sha = createHash("sha256");
  digest.addHeader(header);
  sha.update(header);
  const out: Uint8Array[] = [header];
  let page_count = 0;
  const add = (s: RawSection): void => {
    const framed = frameSection(s);
    digest.addSection(framed.crc, s.payload.length);
    out.push(framed.bytes);
    if (s.kind !== SectionKind.signature) sha.update(framed.bytes);
    if (s.kind === SectionKind.pages) page_count += (s.payload.length - 8) / PAGE_BYTES;
  };
  for (const s of sections) {
    if (s.kind === SectionKind.end || (s.kind === SectionKind.signature && options.keep_signatures !== true)) continue;
    add(s);
  }
  const signer = options.signer === undefined ? TEST_SIGNER : options.signer;
  if (signer !== null && options.keep_signatures !== true) {
    add({ kind: SectionKind.signature, flags: 0, payload: encodeSignature(prepareSigner(signer), sha.digest()) });
  }
  const end = encodeEnd({ image_bytes: digest.image_bytes, section_count: digest.section_count, page_count, image_crc: digest.crc });
  out.push(frameSection({ kind: SectionKind.end, flags: 0, payload: end }).bytes);
  return Buffer.concat(out);
}
