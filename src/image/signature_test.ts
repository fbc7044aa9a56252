/**
 * The SIGNATURE section: both key types round-trip; an unsigned, foreign or
 * tampered image (CRCs recomputed, as an attacker would) is ERR_IMAGE_SIGNATURE
 * before anything is returned; keys that cannot sign fail before any byte.
 */
import assert from "node:assert/strict";
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import { test } from "node:test";
import { ImageError } from "../errors.js";
import { FOREIGN_SIGNER, TEST_SIGNER, TEST_TRUST, buildImage, catchImageError, encodeToBytes, randomChunks, randomImage, splitSections, Prng } from "./_fixtures.js";
import { frameSection } from "./_frame.js";
import { HEADER_BYTES, PAGE_BYTES, SectionFlags, SectionKind } from "./format.js";
import { ImageDecoder, decodeImage, encodeImage, imageKeyId, sparsePages, trustKeys, type ImageTrust } from "./mod.js";

function code(fn: () => unknown): string {
  return catchImageError(fn).code;
}

function smallImage(): Uint8Array {
  const { image } = randomImage(5, 0);
  const memory = new Uint8Array(3 * PAGE_BYTES);
  memory[PAGE_BYTES + 9] = 1;
  image.memory = sparsePages(memory);
  return encodeToBytes(image);
}

test("images signed with Ed25519 and with ECDSA P-256 decode with a trust that knows the key", () => {
  const keys = [generateKeyPairSync("ed25519").privateKey, generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey];
  for (const key of keys) {
    for (let seed = 1; seed <= 10; seed += 1) {
      const { image } = randomImage(seed, 8);
      const bytes = encodeToBytes(image, { key });
      const rng = new Prng(seed);
      const decoder = new ImageDecoder({ trust: trustKeys([createPublicKey(key)]) });
      for (const chunk of randomChunks(rng, bytes)) decoder.push(chunk);
      assert.deepEqual(decoder.end().globals, image.globals, `${key.asymmetricKeyType} seed ${seed}`);
    }
  }
});

test("the key id is SHA-256 of the public key's SPKI DER, the same from either half", () => {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const expected = createHash("sha256").update(publicKey.export({ type: "spki", format: "der" })).digest();
  assert.deepEqual(Buffer.from(imageKeyId(privateKey)), expected);
  assert.deepEqual(Buffer.from(imageKeyId(publicKey)), expected);
  // And the image names it.
  const sections = splitSections(encodeToBytes(randomImage(1, 0).image, { key: privateKey }));
  const signature = sections.find((s) => s.kind === SectionKind.signature);
  assert.ok(signature !== undefined);
  assert.deepEqual(Buffer.from(signature.payload.subarray(0, 32)), expected);
});

test("an unsigned image is ERR_IMAGE_SIGNATURE, as soon as END begins", () => {
  const bytes = smallImage();
  const unsigned = buildImage(splitSections(bytes), { signer: null });
  assert.equal(code(() => decodeImage(unsigned, { trust: TEST_TRUST })), "ERR_IMAGE_SIGNATURE");
  const decoder = new ImageDecoder({ trust: TEST_TRUST });
  // Everything but END's payload and CRC: the header alone is refused.
  assert.equal(code(() => decoder.push(unsigned.subarray(0, unsigned.length - 24))), "ERR_IMAGE_SIGNATURE");
});

test("a version 1 image (written before images were signed) is refused as unsigned", () => {
  const v1 = buildImage(splitSections(smallImage()), { signer: null, version: 1 });
  const decoder = new ImageDecoder({ trust: TEST_TRUST });
  assert.equal(code(() => decoder.push(v1.subarray(0, 12))), "ERR_IMAGE_SIGNATURE");
});

test("an image signed by a key the reader does not trust is ERR_IMAGE_SIGNATURE, and trust is asked once, with its key id", () => {
  const bytes = encodeToBytes(randomImage(3, 4).image, FOREIGN_SIGNER);
  const asked: Uint8Array[] = [];
  const trust: ImageTrust = (id) => {
    asked.push(id);
    return TEST_TRUST(id);
  };
  const error = catchImageError(() => decodeImage(bytes, { trust }));
  assert.equal(error.code, "ERR_IMAGE_SIGNATURE");
  assert.match(error.message, /does not trust/);
  assert.deepEqual(asked.map((id) => Buffer.from(id)), [Buffer.from(imageKeyId(FOREIGN_SIGNER.key))]);
});

test("tampering with CRCs recomputed is ERR_IMAGE_SIGNATURE: a preopen pointed at /etc, a page, a global, a dropped section", () => {
  const { image } = randomImage(9, 6);
  image.wasi = { preopens: [{ guest: "/data", host: "/tmp/data" }] };
  const bytes = encodeToBytes(image);
  const sections = splitSections(bytes);
  const edits: Array<[string, (kind: number, payload: Uint8Array) => Uint8Array | null]> = [
    ["WASI preopen to /etc", (kind, p) => (kind === SectionKind.wasi ? Buffer.from(Buffer.from(p).toString().replace("/tmp/data", "/etc")) : p)],
    ["one page byte", (kind, p) => (kind === SectionKind.pages ? Uint8Array.from(p, (b, i) => (i === 8 ? b ^ 1 : b)) : p)],
    ["a global's bits", (kind, p) => (kind === SectionKind.globals && p.length > 4 ? Uint8Array.from(p, (b, i) => (i === p.length - 8 ? b ^ 1 : b)) : p)],
    ["META dropped to a minimal one", (kind, p) => (kind === SectionKind.meta ? Buffer.from('{"module_path":"/dev/zero","created_unix_ms":0}') : p)],
    ["an optional section added", (_kind, p) => p],
  ];
  for (const [what, edit] of edits) {
    const changed = sections.map((s) => ({ ...s, payload: edit(s.kind, s.payload) ?? s.payload }));
    if (what === "an optional section added") changed.splice(2, 0, { kind: 0x4000, flags: SectionFlags.optional, payload: Uint8Array.of(1) });
    // Every CRC and END recomputed; the signature kept, as one without the key must.
    const forged = buildImage(changed, { keep_signatures: true });
    assert.notDeepEqual(Buffer.from(forged), Buffer.from(bytes), what);
    assert.equal(code(() => decodeImage(forged, { trust: TEST_TRUST })), "ERR_IMAGE_SIGNATURE", what);
  }
});

test("every byte before the SIGNATURE section is signed: flip any, recompute every CRC, and the signature fails", () => {
  const bytes = smallImage();
  const sections = splitSections(bytes);
  const rng = new Prng(4);
  for (let i = 0; i < 200; i += 1) {
    const target = rng.int(sections.length);
    const s = sections[target];
    if (s === undefined || s.kind === SectionKind.signature || s.kind === SectionKind.end || s.payload.length === 0) continue;
    const payload = Uint8Array.from(s.payload);
    const at = rng.int(payload.length);
    payload[at] = (payload[at] as number) ^ (1 + rng.int(255));
    const forged = buildImage(sections.map((x, j) => (j === target ? { ...x, payload } : x)), { keep_signatures: true });
    const error = catchImageError(() => decodeImage(forged, { trust: TEST_TRUST }));
    // A payload may break its own format first; it never decodes.
    assert.ok(["ERR_IMAGE_SIGNATURE", "ERR_IMAGE_MALFORMED", "ERR_IMAGE_LIMIT"].includes(error.code), `${error.code}: ${error.message}`);
  }
});

test("a signature over the right bytes but from another trusted key, or for another algorithm, fails", () => {
  const bytes = smallImage();
  const sections = splitSections(bytes);
  const signature = sections.find((s) => s.kind === SectionKind.signature);
  assert.ok(signature !== undefined);
  // The same signature claiming ECDSA: the algorithm must match the trusted key.
  const payload = Uint8Array.from(signature.payload);
  payload[32] = 2;
  const relabelled = buildImage(sections.map((s) => (s.kind === SectionKind.signature ? { ...s, payload } : s)), { keep_signatures: true });
  assert.equal(code(() => decodeImage(relabelled, { trust: TEST_TRUST })), "ERR_IMAGE_SIGNATURE");
  // A trust function that answers with the wrong key for the id.
  const liar: ImageTrust = () => createPublicKey(FOREIGN_SIGNER.key);
  assert.equal(code(() => decodeImage(bytes, { trust: liar })), "ERR_IMAGE_SIGNATURE");
});

test("nothing may follow SIGNATURE but END, and it comes once, after the required sections", () => {
  const sections = splitSections(smallImage());
  const pages = sections.filter((s) => s.kind === SectionKind.pages);
  assert.ok(pages.length > 0);
  // Signed validly over everything before it, then something more.
  const signedThen = (before: typeof sections, ...after: typeof sections): Uint8Array => {
    const valid = splitSections(buildImage(before)).filter((s) => s.kind !== SectionKind.end);
    return buildImage([...valid, ...after], { keep_signatures: true });
  };
  const before_pages = sections.filter((s) => s.kind !== SectionKind.pages && s.kind !== SectionKind.signature && s.kind !== SectionKind.end);
  const whole = sections.filter((s) => s.kind !== SectionKind.signature && s.kind !== SectionKind.end);
  const signature = sections.find((s) => s.kind === SectionKind.signature);
  assert.ok(signature !== undefined);
  const variants: Array<[string, Uint8Array]> = [
    ["an optional section after it", signedThen(whole, { kind: 0x4000, flags: SectionFlags.optional, payload: Uint8Array.of(1) })],
    ["a PAGES section after it", signedThen(before_pages, ...pages)],
    ["twice", signedThen(whole, signature)],
    ["before MEMORY", buildImage([...whole.slice(0, 3), signature, ...whole.slice(3)], { keep_signatures: true })],
  ];
  for (const [what, image] of variants) assert.equal(code(() => decodeImage(image, { trust: TEST_TRUST })), "ERR_IMAGE_MALFORMED", what);
});

test("a malformed SIGNATURE payload is ERR_IMAGE_MALFORMED or ERR_IMAGE_LIMIT, never anything else", () => {
  const sections = splitSections(smallImage());
  const payloads: Array<[Uint8Array, string]> = [
    [new Uint8Array(10), "ERR_IMAGE_MALFORMED"],
    [Buffer.concat([new Uint8Array(32), Uint8Array.of(1, 0, 1, 0), new Uint8Array(4)]), "ERR_IMAGE_MALFORMED"], // reserved != 0
    [Buffer.concat([new Uint8Array(36), Uint8Array.of(0xff, 0xff, 0, 0)]), "ERR_IMAGE_LIMIT"], // signature length
    [Buffer.concat([new Uint8Array(36), Uint8Array.of(1, 0, 0, 0), new Uint8Array(2)]), "ERR_IMAGE_MALFORMED"], // trailing bytes
  ];
  for (const [payload, expected] of payloads) {
    const image = buildImage(sections.map((s) => (s.kind === SectionKind.signature ? { ...s, payload } : s)), { keep_signatures: true });
    assert.equal(code(() => decodeImage(image, { trust: TEST_TRUST })), expected);
  }
});

test("write_pages streams pages before the signature is checked, but a foreign image still never decodes", () => {
  const bytes = encodeToBytes(randomImage(6, 40).image, FOREIGN_SIGNER);
  let written = 0;
  const decoder = new ImageDecoder({ trust: TEST_TRUST, write_pages: (_offset, piece) => (written += piece.length) });
  assert.equal(code(() => {
    decoder.push(bytes);
    decoder.end();
  }), "ERR_IMAGE_SIGNATURE");
  assert.ok(written >= 0);
  assert.equal(code(() => decoder.end()), "ERR_IMAGE_SIGNATURE", "the failure sticks");
});

test("keys that cannot sign fail before the first byte: RSA and other curves with ERR_IMAGE_SIGNATURE, public keys with TypeError", () => {
  const { image } = randomImage(2, 0);
  const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey;
  const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey;
  for (const key of [rsa, p384]) {
    const error = catchImageError(() => encodeImage(image, { signer: { key } }).next());
    assert.equal(error.code, "ERR_IMAGE_SIGNATURE");
  }
  assert.throws(() => encodeImage(image, { signer: { key: createPublicKey(TEST_SIGNER.key) } }).next(), TypeError);
});

test("a decoder without a trust function is a programming error", () => {
  assert.throws(() => new ImageDecoder({} as never), TypeError);
});

test("the header's file magic still fails first, and a SIGNATURE's own corruption reads as a checksum error", () => {
  const bytes = smallImage();
  const sections = splitSections(bytes);
  let offset = HEADER_BYTES;
  for (const s of sections) {
    if (s.kind === SectionKind.signature) break;
    offset += frameSection(s).bytes.length;
  }
  const bad = Uint8Array.from(bytes);
  bad[offset + 20] = (bad[offset + 20] as number) ^ 1; // inside the key id
  assert.equal(code(() => decodeImage(bad, { trust: TEST_TRUST })), "ERR_IMAGE_CHECKSUM");
  assert.ok(catchImageError(() => decodeImage(Uint8Array.of(1, 2, 3), { trust: TEST_TRUST })) instanceof ImageError);
});

test("the worked example of docs/image-format.md is what the encoder writes, byte for byte", () => {
  // RFC 8032 test 1's secret key as PKCS#8 DER (a fixed prefix, then the 32-byte seed): Ed25519 is deterministic.
  const seed = Buffer.from("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", "hex");
  const key = createPrivateKey({ key: Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]), format: "der", type: "pkcs8" });
  const memory = new Uint8Array(2 * PAGE_BYTES);
  memory[PAGE_BYTES] = 0x2a;
  const bytes = encodeToBytes(
    {
      module_sha256: new Uint8Array(32).fill(0xab),
      instrumenter: "fi/1",
      memory: sparsePages(memory),
      globals: [{ name: "sp", type: "i32", bits: 0x10000n }],
      stack: { entry: "_start", asyncify: Uint8Array.of(1, 2, 3, 4) },
      wasi: {},
      streams: { stdout_bytes: 5, stderr_bytes: 0, stdin_pending: new Uint8Array(0), stdin_eof: true },
      meta: { module_path: "a.wasm", created_unix_ms: 0 },
    },
    { key },
  );
  assert.equal(bytes.length, 4603);
  assert.equal(Buffer.from(bytes.subarray(0x1160, 0x1168)).toString("hex"), "0000000095ec9206");
  assert.equal(Buffer.from(bytes.subarray(0x118f, 0x1193)).toString("hex"), "c8d5e382");
  assert.equal(createHash("sha256").update(bytes).digest("hex"), "d0b18e426847612f5681fc70173749d8ef84a9a32ba65f3bcbf6956d330d131e");
  decodeImage(bytes, { trust: trustKeys([key]) });
});
