/**
 * The encrypted envelope: a sealed image opens to the same image however
 * the bytes are cut; a key that is not there, a changed ciphertext, header
 * or tag, or a cut file is refused with a typed error, never decrypted.
 */
import assert from "node:assert/strict";
import { createSecretKey, randomBytes } from "node:crypto";
import { test } from "node:test";
import { ImageError } from "../errors.js";
import { Prng, TEST_SIGNER, TEST_TRUST, randomChunks, randomImage } from "./_fixtures.js";
import { ENVELOPE_MAGIC, EnvelopeOpener, ImageDecoder, encodeImage, envelopeKeyId, isEnvelope, sealImage, type EnvelopeKeys } from "./mod.js";

const KEY = createSecretKey(randomBytes(32));
const KEYS: EnvelopeKeys = (id) => (Buffer.from(envelopeKeyId(KEY)).equals(id) ? KEY : undefined);

function seal(seed: number): { sealed: Buffer; plain: Buffer } {
  const { image } = randomImage(seed, 20);
  const plain = Buffer.concat([...encodeImage(image, { signer: TEST_SIGNER })]);
  return { sealed: Buffer.concat([...sealImage([plain.subarray(0, 7), plain.subarray(7)], KEY)]), plain };
}

/** Opens `bytes` in random pieces; returns the plaintext or throws what the opener threw. */
function open(bytes: Uint8Array, rng: Prng, keys: EnvelopeKeys = KEYS): Buffer {
  const opener = new EnvelopeOpener(keys);
  const out: Uint8Array[] = [];
  for (const chunk of randomChunks(rng, bytes)) out.push(...opener.push(chunk));
  out.push(...opener.end());
  return Buffer.concat(out);
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (error: unknown) {
    if (error instanceof ImageError) return error.code;
    throw error;
  }
  throw new Error("expected an ImageError");
}

test("a sealed image opens to the same bytes, cut anywhere, and decodes", () => {
  for (let seed = 1; seed <= 40; seed += 1) {
    const { sealed, plain } = seal(seed);
    assert.ok(isEnvelope(sealed) && !isEnvelope(plain), `seed ${seed}`);
    assert.equal(sealed.length, plain.length + 60 + 16, "header, ciphertext as long as the plaintext, tag");
    assert.equal(sealed.indexOf(plain.subarray(0, 64)), -1, "plaintext in the envelope");
    const opened = open(sealed, new Prng(seed));
    assert.ok(opened.equals(plain), `seed ${seed}`);
    const decoder = new ImageDecoder({ trust: TEST_TRUST });
    decoder.push(opened);
    decoder.end();
  }
});

test("two seals of one image differ (a fresh nonce each)", () => {
  const plain = [Buffer.from("the same bytes")];
  const a = Buffer.concat([...sealImage(plain, KEY)]);
  const b = Buffer.concat([...sealImage(plain, KEY)]);
  assert.ok(!a.equals(b));
  assert.ok(!a.subarray(48, 60).equals(b.subarray(48, 60)), "nonces");
});

test("a key that is not here is ERR_IMAGE_DECRYPT as soon as the header is in", () => {
  const { sealed } = seal(1);
  const other = createSecretKey(randomBytes(32));
  const opener = new EnvelopeOpener((id) => (Buffer.from(envelopeKeyId(other)).equals(id) ? other : undefined));
  assert.equal(code(() => opener.push(sealed.subarray(0, 60))), "ERR_IMAGE_DECRYPT");
  assert.equal(code(() => opener.end()), "ERR_IMAGE_DECRYPT", "the failure sticks");
});

test("any changed byte after the magic and version fields (key id, nonce, ciphertext, tag) is ERR_IMAGE_DECRYPT", () => {
  const { sealed } = seal(2);
  const rng = new Prng(2);
  const offsets = [16, 47, 48, 59, 60, 61, sealed.length - 17, sealed.length - 16, sealed.length - 1];
  for (let i = 0; i < 30; i += 1) offsets.push(60 + rng.int(sealed.length - 60));
  for (const at of offsets) {
    const bad = Buffer.from(sealed);
    bad[at] = (bad[at] as number) ^ (1 + rng.int(255));
    assert.equal(code(() => open(bad, rng)), "ERR_IMAGE_DECRYPT", `offset ${at}`);
  }
});

test("a cut envelope is ERR_IMAGE_DECRYPT, or ERR_IMAGE_TRUNCATED when not even a header and tag are left", () => {
  const { sealed } = seal(3);
  const rng = new Prng(3);
  for (const n of [0, 8, 59, 60, 75]) assert.equal(code(() => open(sealed.subarray(0, n), rng)), "ERR_IMAGE_TRUNCATED", `cut at ${n}`);
  for (const n of [76, 100, sealed.length - 1]) assert.equal(code(() => open(sealed.subarray(0, n), rng)), "ERR_IMAGE_DECRYPT", `cut at ${n}`);
  assert.equal(code(() => open(Buffer.concat([sealed, Buffer.of(0)]), rng)), "ERR_IMAGE_DECRYPT", "a byte appended");
});

test("a header that is no envelope of this version is refused with the matching code", () => {
  const { sealed } = seal(4);
  const rng = new Prng(4);
  const cases: Array<[number, number, string]> = [
    [0, 0x00, "ERR_IMAGE_MAGIC"],
    [5, 0x00, "ERR_IMAGE_MAGIC"],
    [8, 0x02, "ERR_IMAGE_VERSION"],
    [12, 0x07, "ERR_IMAGE_MALFORMED"],
    [14, 0x01, "ERR_IMAGE_MALFORMED"],
  ];
  for (const [at, value, expected] of cases) {
    const bad = Buffer.from(sealed);
    bad[at] = value;
    assert.equal(code(() => open(bad, rng)), expected, `byte ${at}`);
  }
  assert.deepEqual([...sealed.subarray(0, 8)], [...ENVELOPE_MAGIC]);
});

test("keys must be 32-byte secret keys", () => {
  assert.throws(() => sealImage([], createSecretKey(randomBytes(16))).next(), TypeError);
  assert.throws(() => envelopeKeyId(TEST_SIGNER.key), TypeError);
});
