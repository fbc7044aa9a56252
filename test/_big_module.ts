/**
 * A generated WASI command module of any size, written byte by byte (no
 * Binaryen: generating must not cost what instrumenting costs), for the
 * large-module test and benchmark (issue 14: "at least 50 MB and 200k
 * functions").
 *
 * Its shape is that of compiled code: most functions are straight-line
 * arithmetic; every function `i` calls `2i+1` and `2i+2`, so `_start`'s call
 * of function 0 runs each exactly once, at most ~18 deep; one in
 * {@link LOOP_EVERY} has a loop (and so a poll, and Asyncify on it and its
 * callers); some leaves recurse (entry polls and depth counters); `_start`
 * also calls a few leaves through the table (an indirect call). It prints the
 * checksum of it all in hex, so a run can be compared with node:wasi's.
 */

/** One function in this many has a loop. */
const LOOP_EVERY = 97;
/** One leaf in this many recurses on itself (at most 31 deep). */
const RECURSE_EVERY = 499;
/** Entries of the table `_start` calls through. */
const TABLE_ENTRIES = 64;

/** What {@link bigModule} made. */
export interface BigModule {
  wasm: Uint8Array;
  functions: number;
}

/** Growable byte buffer with the encodings a module needs. */
class Bytes {
  buf = new Uint8Array(1 << 16);
  length = 0;
  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }
  byte(...xs: number[]): this {
    this.room(xs.length);
    for (const x of xs) this.buf[this.length++] = x;
    return this;
  }
  u32(v: number): this {
    this.room(5);
    do {
      let b = v & 0x7f;
      v >>>= 7;
      if (v !== 0) b |= 0x80;
      this.buf[this.length++] = b;
    } while (v !== 0);
    return this;
  }
  i32(v: number): this {
    this.room(5);
    v |= 0;
    for (;;) {
      const b = v & 0x7f;
      v >>= 7;
      if ((v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0)) {
        this.buf[this.length++] = b;
        return this;
      }
      this.buf[this.length++] = b | 0x80;
    }
  }
  bytes(b: Uint8Array): this {
    this.room(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
    return this;
  }
  str(s: string): this {
    const b = new TextEncoder().encode(s);
    return this.u32(b.length).bytes(b);
  }
  view(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

const I32 = 0x7f;
const op = {
  loop: 0x03, if: 0x04, end: 0x0b, br_if: 0x0d, call: 0x10, call_indirect: 0x11, drop: 0x1a,
  local_get: 0x20, local_set: 0x21, local_tee: 0x22, i32_store: 0x36, i32_store8: 0x3a, i32_const: 0x41,
  i32_gt_u: 0x4b, i32_add: 0x6a, i32_sub: 0x6b, i32_mul: 0x6c, i32_and: 0x71, i32_xor: 0x73, i32_shr_u: 0x76, i32_rotl: 0x77,
} as const;

/** A cheap deterministic mix, so constants differ from function to function. */
function mix(i: number, k: number): number {
  let x = Math.imul(i + 1, 0x9e3779b1) ^ Math.imul(k + 7, 0x85ebca6b);
  x ^= x >>> 15;
  return Math.imul(x, 0xc2b2ae35) | 0;
}

/**
 * A module of `functions` generated functions (plus `_start`) whose code is
 * about `functions × 275` bytes: 200,000 make about 55 MB.
 */
export function bigModule(functions: number): BigModule {
  const n = functions;
  const firstLeaf = Math.floor((n - 1) / 2) + 1;
  const fnIndex = (i: number): number => 2 + i; // two imports first
  const start = fnIndex(n);
  const tableFns: number[] = [];
  for (let k = 0; k < TABLE_ENTRIES; k += 1) tableFns.push(fnIndex(firstLeaf + ((k * 37) % (n - firstLeaf))));

  const out = new Bytes();
  out.byte(0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00);
  const section = (id: number, body: Bytes): void => {
    out.byte(id).u32(body.length).bytes(body.view());
  };
  // Types: 0 (i32)->i32, 1 fd_write, 2 proc_exit, 3 ()->().
  const types = new Bytes().u32(4);
  types.byte(0x60, 1, I32, 1, I32);
  types.byte(0x60, 4, I32, I32, I32, I32, 1, I32);
  types.byte(0x60, 1, I32, 0);
  types.byte(0x60, 0, 0);
  section(1, types);
  const imports = new Bytes().u32(2);
  imports.str("wasi_snapshot_preview1").str("fd_write").byte(0x00).u32(1);
  imports.str("wasi_snapshot_preview1").str("proc_exit").byte(0x00).u32(2);
  section(2, imports);
  const funcs = new Bytes().u32(n + 1);
  for (let i = 0; i < n; i += 1) funcs.u32(0);
  funcs.u32(3);
  section(3, funcs);
  section(4, new Bytes().u32(1).byte(0x70, 0x01).u32(TABLE_ENTRIES).u32(TABLE_ENTRIES));
  section(5, new Bytes().u32(1).byte(0x00).u32(1));
  const exports = new Bytes().u32(2);
  exports.str("memory").byte(0x02).u32(0);
  exports.str("_start").byte(0x00).u32(start);
  section(7, exports);
  const elems = new Bytes().u32(1).byte(0x00).byte(op.i32_const).i32(0).byte(op.end).u32(TABLE_ENTRIES);
  for (const f of tableFns) elems.u32(f);
  section(9, elems);

  const code = new Bytes().u32(n + 1);
  const body = new Bytes();
  for (let i = 0; i < n; i += 1) {
    body.length = 0;
    const loops = i % LOOP_EVERY === 3;
    const recurses = i >= firstLeaf && i % RECURSE_EVERY === 7;
    body.u32(loops ? 1 : 0);
    if (loops) body.u32(1).byte(I32); // one counter local
    if (recurses) {
      // if (x & 31) x = f_i(x - 1) * 3 + 1: at most 31 levels,
      // tested before x is mixed
      body.byte(op.local_get, 0, op.i32_const, 31, op.i32_and, op.if, 0x40);
      body.byte(op.local_get, 0, op.i32_const, 1, op.i32_sub, op.call).u32(fnIndex(i)).byte(op.i32_const, 3, op.i32_mul, op.i32_const, 1, op.i32_add, op.local_set, 0);
      body.byte(op.end);
    }
    // Straight-line work: x = x * c + d, thirteen times.
    for (let k = 0; k < 13; k += 1) {
      body.byte(op.local_get, 0, op.i32_const).i32(mix(i, k) | 1).byte(op.i32_mul, op.i32_const).i32(mix(i, k + 100)).byte(op.i32_add, op.local_set, 0);
    }
    if (loops) {
      // counter = (x & 7) + 1; do { x = rotl(x, 5) ^ c; } while (--counter)
      body.byte(op.local_get, 0, op.i32_const, 7, op.i32_and, op.i32_const, 1, op.i32_add, op.local_set, 1);
      body.byte(op.loop, 0x40);
      body.byte(op.local_get, 0, op.i32_const, 5, op.i32_rotl, op.i32_const).i32(mix(i, 200)).byte(op.i32_xor, op.local_set, 0);
      body.byte(op.local_get, 1, op.i32_const, 1, op.i32_sub, op.local_tee, 1, op.br_if, 0, op.end);
    }
    for (const child of [2 * i + 1, 2 * i + 2]) {
      if (child >= n) continue;
      // x = x ^ f_child(x + k)
      body.byte(op.local_get, 0, op.local_get, 0, op.i32_const).i32(child).byte(op.i32_add, op.call).u32(fnIndex(child)).byte(op.i32_xor, op.local_set, 0);
    }
    body.byte(op.local_get, 0, op.end);
    code.u32(body.length).bytes(body.view());
  }
  code.bytes(startBody(tableFns.length));
  section(10, code);
  return { wasm: out.view().slice(), functions: n + 1 };
}

/** `_start`: x = f_0(12345), plus each table entry; prints x in hex and a newline. */
function startBody(entries: number): Uint8Array {
  const body = new Bytes().u32(1).u32(1).byte(I32);
  body.byte(op.i32_const).i32(12345).byte(op.call).u32(2).byte(op.local_set, 0);
  for (let k = 0; k < entries; k += 1) {
    body.byte(op.local_get, 0, op.local_get, 0, op.i32_const).i32(k).byte(op.call_indirect).u32(0).byte(0x00, op.i32_add, op.local_set, 0);
  }
  // Digits at 16..23, '\n' at 24, the iovec {16, 9} at 0, nwritten at 32.
  for (let d = 0; d < 8; d += 1) {
    // nibble = (x >>> (28 - 4d)) & 15; byte = nibble + 48 + 39 * (nibble > 9)
    body.byte(op.i32_const).i32(16 + d);
    body.byte(op.local_get, 0, op.i32_const).i32(28 - 4 * d).byte(op.i32_shr_u, op.i32_const, 15, op.i32_and);
    body.byte(op.i32_const).i32(48).byte(op.i32_add);
    body.byte(op.local_get, 0, op.i32_const).i32(28 - 4 * d).byte(op.i32_shr_u, op.i32_const, 15, op.i32_and, op.i32_const, 9, op.i32_gt_u);
    body.byte(op.i32_const).i32(39).byte(op.i32_mul, op.i32_add, op.i32_store8, 0, 0);
  }
  body.byte(op.i32_const).i32(24).byte(op.i32_const).i32(10).byte(op.i32_store8, 0, 0);
  body.byte(op.i32_const).i32(0).byte(op.i32_const).i32(16).byte(op.i32_store, 2, 0);
  body.byte(op.i32_const).i32(4).byte(op.i32_const).i32(9).byte(op.i32_store, 2, 0);
  body.byte(op.i32_const, 1, op.i32_const, 0, op.i32_const, 1, op.i32_const).i32(32).byte(op.call).u32(0).byte(op.drop);
  body.byte(op.end);
  return new Bytes().u32(body.length).bytes(body.view()).view();
}
