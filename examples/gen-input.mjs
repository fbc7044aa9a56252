#!/usr/bin/env node
// Write a deterministic input file for examples/c/fileproc.
//
// Usage: node examples/gen-input.mjs OUTPUT SIZE [SEED]
//   SIZE  bytes; suffixes K, M (binary: 1K = 1024, 1M = 1048576), e.g. 2M
//   SEED  unsigned integer (default 1)
// The content is a mix of text-like lines and pseudo-random bytes from a
// xorshift32 generator, so the same SIZE and SEED always give the same file.
import { writeFileSync } from "node:fs";

const [out, sizeArg, seedArg = "1"] = process.argv.slice(2);
const m = /^(\d+)([KkMm]?)$/.exec(sizeArg ?? "");
if (!out || !m || !/^\d+$/.test(seedArg)) {
  process.stderr.write("usage: node gen-input.mjs OUTPUT SIZE[K|M] [SEED]\n");
  process.exit(64);
}
const size = Number(m[1]) * ({ "": 1, k: 1024, m: 1048576 })[m[2].toLowerCase()];
let x = (Number(seedArg) >>> 0) || 0x9e3779b9;
const next = () => {
  x ^= x << 13; x >>>= 0;
  x ^= x >>> 17;
  x ^= x << 5; x >>>= 0;
  return x;
};
const buf = Buffer.alloc(size);
let i = 0;
let line = 0;
while (i < size) {
  if (next() & 1) {
    // a text-like line
    const s = `line ${line++} value ${next().toString(16)} ${"abcdefghijklmnopqrstuvwxyz".slice(0, next() % 27)}\n`;
    i += buf.write(s, i, "latin1");
  } else {
    // a run of random bytes
    const n = Math.min(size - i, 16 + (next() % 240));
    for (let k = 0; k < n; k++) buf[i++] = next() & 0xff;
  }
}
writeFileSync(out, buf);
