// sieve.ts - AssemblyScript example guest for Ferry: a segmented prime sieve.
//
// Usage: sieve [ROUNDS] [EXIT_CODE]
//   ROUNDS     number of rounds, 1..100000 (default 40)
//   EXIT_CODE  exit status to finish with, 0..125 (default 0)
//
// Round r sieves the integers in [(r-1)*SEGMENT, r*SEGMENT) (SEGMENT = 4 Mi)
// with base primes computed once at start, counts the primes in the segment
// and folds every prime into a running checksum. One progress line per round,
// a final line on stdout and a summary on stderr. Output is deterministic.
import { STDOUT, STDERR, put, putU64, putHex64, endLine, exit, argU64, mix64 } from "./wasi";

const SEGMENT: i32 = 4 << 20;

const rounds = <u32>argU64(1, 40, 100000);
const exitCode = <u32>argU64(2, 0, 125);
const limit: u64 = <u64>rounds * <u64>SEGMENT;

// Base primes up to sqrt(limit).
let root: i32 = <i32>Math.sqrt(<f64>limit) + 1;
const small = new StaticArray<u8>(root + 1);
for (let i = 2; i * i <= root; i++) {
  if (small[i] == 0) for (let j = i * i; j <= root; j += i) small[j] = 1;
}
let nbase = 0;
for (let i = 2; i <= root; i++) if (small[i] == 0) nbase++;
const base = new StaticArray<u32>(nbase);
nbase = 0;
for (let i = 2; i <= root; i++) if (small[i] == 0) base[nbase++] = <u32>i;

const seg = new StaticArray<u8>(SEGMENT);

put("sieve: rounds=");
putU64(rounds);
put(" segment=");
putU64(SEGMENT);
put(" base_primes=");
putU64(nbase);
endLine(STDOUT);

let total: u64 = 0;
let checksum: u64 = 0x243f6a8885a308d3;
for (let r: u32 = 1; r <= rounds; r++) {
  const lo: u64 = <u64>(r - 1) * <u64>SEGMENT;
  const hi: u64 = lo + <u64>SEGMENT;
  memory.fill(changetype<usize>(seg), 0, SEGMENT);
  for (let k = 0; k < nbase; k++) {
    const p: u64 = <u64>base[k];
    if (p * p >= hi) break;
    let start: u64 = p * p;
    if (start < lo) start = (lo + p - 1) / p * p;
    for (let m = start; m < hi; m += p) unchecked(seg[<i32>(m - lo)] = 1);
  }
  let count: u32 = 0;
  let h: u64 = <u64>r;
  for (let i = 0; i < SEGMENT; i++) {
    if (unchecked(seg[i]) == 0) {
      const n = lo + <u64>i;
      if (n >= 2) {
        count++;
        h = mix64(h ^ n);
      }
    }
  }
  total += count;
  checksum = mix64(checksum ^ h) + <u64>count;
  put("round ");
  putU64(r);
  put("/");
  putU64(rounds);
  put(" primes=");
  putU64(count);
  put(" checksum=");
  putHex64(checksum);
  endLine(STDOUT);
}

put("done rounds=");
putU64(rounds);
put(" primes=");
putU64(total);
put(" checksum=");
putHex64(checksum);
endLine(STDOUT);
put("sieve: summary primes_below=");
putU64(limit);
put(" count=");
putU64(total);
put(" exit=");
putU64(exitCode);
endLine(STDERR);
if (exitCode != 0) exit(exitCode);
