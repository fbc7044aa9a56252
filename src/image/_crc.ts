/**
 * CRC-32 helpers. `zlib.crc32` does the byte work; `crc32Combine` lets the
 * END section's whole-image CRC be derived from each section's CRC, so page
 * data (the bulk of an image) is read once, not once per checksum.
 */
import { crc32 } from "node:zlib";

/** zlib.crc32, re-exported so the image code has one CRC import. */
export { crc32 };

// Reflected CRC-32 polynomial (the one zlib, PNG and gzip use).
const POLY = 0xedb88320;

// (a * b) mod P over GF(2), in zlib's reflected bit order.
function multModP(a: number, b: number): number {
  let m = 0x8000_0000;
  let p = 0;
  // a is x^n mod P, never zero because P has a constant term; the guard only
  // keeps a programming error from looping forever.
  if (a === 0) return 0;
  for (;;) {
    if ((a & m) !== 0) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = (b & 1) !== 0 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

// X2N[k] = x^(2^k) mod P.
const X2N: number[] = (() => {
  const table: number[] = [];
  let p = 0x4000_0000; // x^1
  table.push(p);
  for (let k = 1; k < 64; k++) {
    p = multModP(p, p);
    table.push(p);
  }
  return table;
})();

// x^(8 * bytes) mod P: the operator that shifts a CRC past `bytes` zero bytes.
function shiftOperator(bytes: number): number {
  let p = 0x8000_0000; // x^0
  let k = 3; // 8 * bytes = bytes << 3
  let n = bytes;
  while (n > 0) {
    if (n % 2 === 1) p = multModP(X2N[k % 64] as number, p);
    n = Math.floor(n / 2);
    k++;
  }
  return p;
}

// Section lengths repeat (every full PAGES run has the same one), so their
// operators are cached; the cap only bounds memory if lengths are all distinct.
const OPERATOR_CACHE_MAX = 1024;
const operators = new Map<number, number>();

/**
 * CRC-32 of A‖B from crc(A), crc(B) and B's length in bytes: zlib's
 * crc32_combine (Node does not expose it), keeping zlib's argument order
 * rather than an options object so it reads like the C it mirrors.
 * `length_b` may exceed 2^32.
 */
export function crc32Combine(crc_a: number, crc_b: number, length_b: number): number {
  let op = operators.get(length_b);
  if (op === undefined) {
    op = shiftOperator(length_b);
    if (operators.size >= OPERATOR_CACHE_MAX) operators.clear();
    operators.set(length_b, op);
  }
  return (multModP(op, crc_a) ^ crc_b) >>> 0;
}
