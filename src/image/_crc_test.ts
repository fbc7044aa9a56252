/** crc32Combine against zlib over the same bytes. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { crc32, crc32Combine } from "./_crc.js";
import { Prng } from "./_fixtures.js";

test("crc32Combine(crc(A), crc(B), |B|) equals crc(A‖B)", () => {
  const rng = new Prng(5);
  for (let i = 0; i < 300; i++) {
    const a = rng.bytes(rng.int(100));
    const b = rng.bytes(rng.pick([0, 1, 4, rng.int(9000)]));
    const whole = Buffer.concat([a, b]);
    assert.equal(crc32Combine(crc32(a), crc32(b), b.length), crc32(whole), `case ${i}`);
  }
});

test("crc32Combine handles lengths past 2^32 bytes", () => {
  // Shifting past 2^32 zero bytes: compare with composing two shifts of 2^31 bytes (both go through the same code,
  // but the first exercises the high bits of the length that a 32-bit shift would drop).
  const crc_a = crc32(Uint8Array.of(1, 2, 3));
  const half = crc32Combine(crc32Combine(crc_a, 0, 2 ** 31), 0, 2 ** 31);
  assert.equal(crc32Combine(crc_a, 0, 2 ** 32), half);
  assert.notEqual(crc32Combine(crc_a, 0, 2 ** 32), crc32Combine(crc_a, 0, 0));
});
