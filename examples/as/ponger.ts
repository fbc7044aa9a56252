// ponger.ts - AssemblyScript peer of examples/c/pingpong.c: answers each
// "ping K" with "pong K", checking that K runs 1..N in order.
//
// Usage: ponger N
// stdout: a line every 10000 messages and a final checksum line that matches
// the C pong's for the same N. Exit status 1 at the first out-of-order ping.
import { STDOUT, STDERR, put, putU64, putHex64, endLine, exit, argU64 } from "./wasi";
import * as ferry from "./ferry";

function mix(h: u64, v: u64): u64 {
  h ^= v + 0x9e3779b97f4a7c15 + (h << 6) + (h >> 2);
  return h * 0xff51afd7ed558ccd;
}

const n = argU64(1, 1000, 100000000);
let sum: u64 = 0;
for (let k: u64 = 1; k <= n; k++) {
  const rc = ferry.recv(-1);
  if (rc != 0) {
    put("ponger: recv failed: errno ");
    putU64(<u64>rc);
    endLine(STDERR);
    exit(3);
  }
  const text = ferry.lastString();
  const got = text.startsWith("ping ") ? U64.parseInt(text.substring(5)) : 0;
  if (got != k) {
    put("ponger: expected ping ");
    putU64(k);
    put(", got ");
    put(text);
    endLine(STDERR);
    exit(1);
  }
  sum = mix(sum, got);
  ferry.sendString(ferry.lastFrom, "pong " + k.toString());
  if (k % 10000 == 0) {
    put("pong ");
    putU64(k);
    endLine(STDOUT);
  }
}
put("pong done n=");
putU64(n);
put(" checksum=");
putHex64(sum);
endLine(STDOUT);
