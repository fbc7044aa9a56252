/**
 * Unwinding and rewinding of the call stack, written into the binary by
 * Ferry itself: the work Binaryen's Asyncify pass did, in one linear pass
 * over the bytes, with the same exports and the same contract for the
 * runtime (`asyncify_start_unwind(ptr)` and its three siblings, a data
 * header `{current, end}` at `ptr`, frames written as a stack).
 *
 * Asyncify flattens every function it instruments into temporaries and then
 * runs Binaryen's optimizer over it, which is most of an instrumentation's
 * time: half a second for a 33 KB module, minutes for a large one. Here a
 * function that can be on the stack at a safe point (it can reach a blocking
 * import or the poll, directly or through a call) is rewritten so:
 *
 *   - The *boundaries* of its body are the calls that can unwind and the
 *     blocks, loops, ifs and trys that hold one. At each boundary the operand
 *     stack is empty: what the code before left there is spilled into
 *     locals (one per stack position and type, so an enclosing block's
 *     values are never overwritten by a nested one's), and the code after
 *     reloads it. The code between two boundaries (a *run*) thus takes and
 *     leaves nothing on the stack.
 *   - After a call that can unwind: if the state says unwinding, the call's
 *     index goes to a local and a branch leaves for the function's end,
 *     where the frame is written to the unwind buffer: the spilled stack,
 *     the call's index, and the locals that may be read after such a call
 *     before being written ({@link liveAcrossCalls}).
 *   - At entry, when rewinding, the frame is read back; then a run is
 *     skipped (`if state == normal`), a call made only if it is the one the
 *     frame was left in (or the state is normal), and a block, loop or if
 *     entered only if that call is inside it (an if's condition is kept in
 *     a local of its own, read back with the frame, so it takes the arm it
 *     took). The call rewinds its callee, and from there on the state is
 *     normal. The run after a block's last boundary needs no guard: it is
 *     only ever reached in the normal state.
 *
 *   - All of that is the function's *rewinding version*, appended to the
 *     module. The function at its own index is its *running version*: the
 *     same spills and saves, but no guard (its calls are made and its
 *     structures entered as written, and a call's number is set only on
 *     the way to the save); at entry, when rewinding, it hands over to the
 *     rewinding version with a tail call, so one frame stands for it as
 *     before. Both take the same locals in the same order, so they write
 *     and read one frame. V8 compiles a function when it is first called:
 *     a program never resumed never compiles a rewinding version, and the
 *     code it runs holds no guard (flite's run, callgrind: 616 M
 *     instructions with the guards, 470–529 M in two versions, 487 M with
 *     polls only; docs/runtime.md).
 *
 * So the code is the producer's, with loads and stores of locals around the
 * boundaries that an engine's register allocator makes mostly free, and a
 * few checks of a global. What the pass cannot handle (a reference live
 * across a boundary or on the stack at one, block parameters at one,
 * atomics, a call that can unwind inside an exception handler, tail calls
 * to a function that can unwind, typed references) makes it throw
 * {@link UnwindUnsupported}; the caller then uses Binaryen's Asyncify.
 */
import { writeU32Leb } from "./_binary.js";
import { Reader, skipLimits } from "./_reader.js";
import { scanCalls } from "./_calls.js";
import { readTables } from "./_tables.js";
import { unwindReachers, type UnwindReach } from "./_callgraph.js";

/** Thrown for a module this pass cannot instrument; the caller falls back to Binaryen's Asyncify. */
export class UnwindUnsupported extends Error {}

/** What {@link addUnwinding} returns. */
export interface Unwound {
  wasm: Uint8Array;
  /**
   * Bytes one frame of each function takes in the unwind buffer, by function
   * index (imports and functions left alone: 0); the rewinding versions, the
   * last `rewinding` functions, take their running version's.
   */
  frame_bytes: number[];
  /** Functions rewritten. */
  instrumented: number;
  /** Rewinding versions appended at the end of the module, one per function rewritten (a function is on a stack as one or the other, never both). */
  rewinding: number;
}

const I32 = 0x7f;
const I64 = 0x7e;
const F32 = 0x7d;
const F64 = 0x7c;
const V128 = 0x7b;
const FUNCREF = 0x70;
const EXTERNREF = 0x6f;
/** A value of code the validator would call polymorphic (only in unreachable code). */
const UNKNOWN = -1;

const EMPTY_BLOCK = 0x40;

export interface FuncType {
  params: number[];
  results: number[];
}

const SECTION_ORDER: Record<number, number> = { 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13 };

/** A growable byte buffer with the encodings the pass writes. */
export class Writer {
  buf: Uint8Array;
  len = 0;

  /** `capacity`: the bytes expected, when known (growing by doubling copies what was written so far). */
  constructor(capacity = 64) {
    this.buf = new Uint8Array(Math.max(16, capacity));
  }

  #grow(n: number): void {
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  byte(b: number): void {
    if (this.len === this.buf.length) this.#grow(1);
    this.buf[this.len] = b;
    this.len += 1;
  }

  u32(value: number): void {
    let v = value;
    do {
      let b = v & 0x7f;
      v = Math.floor(v / 128);
      if (v !== 0) b |= 0x80;
      this.byte(b);
    } while (v !== 0);
  }

  s32(value: number): void {
    let v = value | 0;
    for (;;) {
      const b = v & 0x7f;
      v >>= 7;
      if ((v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0)) {
        this.byte(b);
        return;
      }
      this.byte(b | 0x80);
    }
  }

  /** A signed LEB128 of up to 64 bits (`i64.const`'s immediate). */
  s64(value: bigint): void {
    let v = BigInt.asIntN(64, value);
    for (;;) {
      const b = Number(v & 0x7fn);
      v >>= 7n;
      if ((v === 0n && (b & 0x40) === 0) || (v === -1n && (b & 0x40) !== 0)) {
        this.byte(b);
        return;
      }
      this.byte(b | 0x80);
    }
  }

  /** `src[from, to)`, without a view of it (one per instruction was most of the garbage). */
  copy(src: Uint8Array, from: number, to: number): void {
    const n = to - from;
    if (this.len + n > this.buf.length) this.#grow(n);
    // Most are an instruction or two: a loop is cheaper than `set` for those.
    if (n <= 16) for (let k = 0; k < n; k += 1) this.buf[this.len + k] = src[from + k] as number;
    else this.buf.set(src.subarray(from, to), this.len);
    this.len += n;
  }

  bytes(src: Uint8Array): void {
    this.copy(src, 0, src.length);
  }

  done(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }

  /** Empties it for the next use, keeping its buffer (a writer per body was most of a large module's garbage). */
  reset(): this {
    this.len = 0;
    return this;
  }
}

function valType(r: Reader): number {
  const t = r.byte();
  if (t === I32 || t === I64 || t === F32 || t === F64 || t === V128 || t === FUNCREF || t === EXTERNREF) return t;
  throw new UnwindUnsupported(`value type 0x${t.toString(16)}`);
}

function isRefType(t: number): boolean {
  return t === FUNCREF || t === EXTERNREF;
}

function sizeOf(t: number): number {
  if (t === I32 || t === F32) return 4;
  if (t === I64 || t === F64) return 8;
  if (t === V128) return 16;
  throw new UnwindUnsupported("a reference-typed value would have to be saved");
}

/** Skips a constant expression up to its end. */
function skipConstExpr(r: Reader): void {
  for (;;) {
    const op = r.byte();
    if (op === 0x0b) return;
    if (op === 0x41 || op === 0x42 || op === 0x23 || op === 0xd0 || op === 0xd2) r.skipLeb();
    else if (op === 0x43) r.skip(4);
    else if (op === 0x44) r.skip(8);
    else if ((op >= 0x6a && op <= 0x6c) || (op >= 0x7c && op <= 0x7e)) continue;
    else if (op === 0xfd && r.u32() === 12) r.skip(16);
    else throw new UnwindUnsupported(`a constant expression holds opcode 0x${op.toString(16)}`);
  }
}

/** What the pass reads of a module before rewriting its code. */
export interface ModuleInfo {
  types: FuncType[];
  /** Type index of every function, imports first. */
  func_types: number[];
  imported: number;
  /** Value type of every global, imports first. */
  globals: number[];
  /** Element type of every table, imports first. */
  tables: number[];
  /** Type index of every exception tag, imports first. */
  tags: number[];
}

export function readModule(wasm: Uint8Array): ModuleInfo {
  const info: ModuleInfo = { types: [], func_types: [], imported: 0, globals: [], tables: [], tags: [] };
  const r = new Reader(wasm, 8);
  while (r.pos < wasm.length) {
    const id = r.byte();
    const size = r.u32();
    const end = r.pos + size;
    if (id === 1) {
      const count = r.u32();
      for (let i = 0; i < count; i += 1) {
        const form = r.byte();
        if (form !== 0x60) throw new UnwindUnsupported(`type form 0x${form.toString(16)}`);
        const params: number[] = [];
        const results: number[] = [];
        for (let n = r.u32(); n > 0; n -= 1) params.push(valType(r));
        for (let n = r.u32(); n > 0; n -= 1) results.push(valType(r));
        info.types.push({ params, results });
      }
    } else if (id === 2) {
      const count = r.u32();
      for (let i = 0; i < count; i += 1) {
        r.name();
        r.name();
        const kind = r.byte();
        if (kind === 0) {
          info.func_types.push(r.u32());
          info.imported += 1;
        } else if (kind === 1) {
          info.tables.push(valType(r));
          skipLimits(r);
        } else if (kind === 2) skipLimits(r);
        else if (kind === 3) {
          info.globals.push(valType(r));
          r.skip(1);
        } else if (kind === 4) {
          r.skip(1);
          info.tags.push(r.u32());
        } else throw new UnwindUnsupported(`import kind ${kind}`);
      }
    } else if (id === 3) {
      for (let n = r.u32(); n > 0; n -= 1) info.func_types.push(r.u32());
    } else if (id === 4) {
      for (let n = r.u32(); n > 0; n -= 1) {
        if (r.bytes[r.pos] === 0x40) throw new UnwindUnsupported("a table with an initializer");
        info.tables.push(valType(r));
        skipLimits(r);
      }
    } else if (id === 6) {
      for (let n = r.u32(); n > 0; n -= 1) {
        info.globals.push(valType(r));
        r.skip(1);
        skipConstExpr(r);
      }
    } else if (id === 13) {
      for (let n = r.u32(); n > 0; n -= 1) {
        r.skip(1);
        info.tags.push(r.u32());
      }
    }
    r.pos = end;
  }
  return info;
}

/** Result types of the loads 0x28..0x35. */
const LOAD_TYPES = [I32, I64, F32, F64, I32, I32, I32, I32, I64, I64, I64, I64, I64, I64];
/** Result types of the one-operand conversions 0xa7..0xc4 (wrap, truncations, extensions, conversions, demote, promote, reinterpretations, sign extensions). */
const CONVERSIONS = [
  I32, I32, I32, I32, I32,
  I64, I64, I64, I64, I64, I64,
  F32, F32, F32, F32, F32,
  F64, F64, F64, F64, F64,
  I32, I64, F32, F64,
  I32, I32, I64, I64, I64,
];
/** Result types of the saturating truncations 0xfc 0..7. */
const TRUNC_SAT = [I32, I32, I32, I32, I64, I64, I64, I64];
/** Instructions that pop nothing and push one value of a type known from the opcode alone, by opcode (0: not one). */
const PUSH_ONLY = new Uint8Array(256);
for (const [op, t] of [[0x3f, I32], [0x41, I32], [0x42, I64], [0x43, F32], [0x44, F64], [0xd2, FUNCREF]] as const) PUSH_ONLY[op] = t;

/** How many operands the numeric opcodes 0x45..0xa6 take (the rest of the stack is not read), and their result, or undefined. */
function numeric(op: number): { pop: number; push: number } | undefined {
  if (op === 0x45) return { pop: 1, push: I32 };
  if (op <= 0x4f) return { pop: 2, push: I32 };
  if (op === 0x50) return { pop: 1, push: I32 };
  if (op <= 0x66) return { pop: 2, push: I32 }; // i64, f32, f64 comparisons
  if (op <= 0x69) return { pop: 1, push: I32 };
  if (op <= 0x78) return { pop: 2, push: I32 };
  if (op <= 0x7b) return { pop: 1, push: I64 };
  if (op <= 0x8a) return { pop: 2, push: I64 };
  if (op <= 0x91) return { pop: 1, push: F32 };
  if (op <= 0x98) return { pop: 2, push: F32 };
  if (op <= 0x9f) return { pop: 1, push: F64 };
  if (op <= 0xa6) return { pop: 2, push: F64 };
  return undefined;
}

/** A control frame of the body being rewritten. */
interface Frame {
  kind: "func" | "block" | "loop" | "if" | "try";
  params: number[];
  results: number[];
  /** Operand stack height at the frame's base. */
  height: number;
  unreachable: boolean;
  /** Whether the frame is rewritten (holds a boundary and is reached as one). */
  hot: boolean;
  /** Its label's position in the rewritten code's label stack. */
  tpos: number;
  /** For a hot frame: its run, and which of its arms (for `lastBoundary`). */
  run: "none" | "guarded" | "open";
  seq: number;
  /** Hot frames around it (for the if-condition locals). */
  depth: number;
}

/** Where the body's structures and boundaries are: the first pass. */
interface Shape {
  /** Instruction start offsets. */
  starts: number[];
  /** Per instruction: 1 if it is a call that can unwind, 2 if it opens a structure holding one. */
  boundary: Uint8Array;
  /** Per call that can unwind: its index; per hot structure opening: [lo, hi] of the indices inside. */
  call_index: Map<number, number>;
  range: Map<number, [number, number]>;
  /** Per arm (sequence of a structure's or the function's body), its last boundary's instruction number. */
  last_boundary: number[];
  /** Per structure opening (or `else`): the arm its body starts. */
  arm_of: Map<number, number>;
  /** For the liveness of locals: each instruction's opcode, its local index or label depth (else -1), br_table targets. */
  ops: Uint8Array;
  imm: Int32Array;
  targets: Map<number, number[]>;
  /** Per structure end: its opening; per if opening: its else. */
  open_of: Map<number, number>;
  else_of: Map<number, number>;
  /** Whether the body holds exception handling (the liveness gives up). */
  eh: boolean;
}

/** A set of locals, as bits. */
type Bits = Uint32Array<ArrayBuffer>;

/**
 * The locals that may be read after some call that can unwind before being
 * written (live when the call returns): only those need to be in a frame,
 * as a rewind resumes right after such a call. A backward pass over the
 * structured code; a loop is walked until what is live at its start stops
 * growing. Returns undefined (save them all) for a body with exception
 * handling, or when the walk would take too long. With `per_call`, also
 * what is live after each call that can unwind, by its instruction number.
 */
export function liveAcrossCalls(shape: Shape, locals: number, per_call?: Map<number, Bits>): Bits | undefined {
  if (shape.eh) return undefined;
  const words = Math.ceil(locals / 32);
  const n = shape.ops.length;
  const saved = new Uint32Array(words);
  let budget = 64 * n + 10_000;
  const union = (a: Bits, b: Bits): void => {
    for (let w = 0; w < words; w += 1) a[w] = (a[w] as number) | (b[w] as number);
  };
  const same = (a: Bits, b: Bits): boolean => {
    for (let w = 0; w < words; w += 1) if (a[w] !== b[w]) return false;
    return true;
  };
  const label = (labels: Bits[], depth: number): Bits => labels[labels.length - 1 - depth] ?? new Uint32Array(words);
  /** What is live before [from, to) given what is live after it. */
  const walk = (from: number, to: number, out: Bits, labels: Bits[]): Bits | undefined => {
    let live = out.slice();
    for (let i = to - 1; i >= from; i -= 1) {
      budget -= 1;
      if (budget < 0) return undefined;
      const op = shape.ops[i] as number;
      const x = shape.imm[i] as number;
      if (shape.boundary[i] === 1) {
        union(saved, live);
        if (per_call !== undefined) {
          const seen = per_call.get(i);
          if (seen === undefined) per_call.set(i, live.slice());
          else union(seen, live);
        }
      }
      if (op === 0x0b) {
        const s = shape.open_of.get(i);
        if (s === undefined) continue;
        const opener = shape.ops[s] as number;
        let inside: Bits | undefined;
        if (opener === 0x03) {
          // A branch to a loop goes to its start: grow that until it holds.
          let start: Bits = new Uint32Array(words);
          for (;;) {
            labels.push(start);
            const next = walk(s + 1, i, live, labels);
            labels.pop();
            if (next === undefined) return undefined;
            if (same(next, start)) break;
            union(next, start);
            start = next;
          }
          inside = start;
        } else if (opener === 0x04) {
          const e = shape.else_of.get(s);
          labels.push(live);
          const then = walk(s + 1, e ?? i, live, labels);
          const other = e === undefined ? live.slice() : walk(e + 1, i, live, labels);
          labels.pop();
          if (then === undefined || other === undefined) return undefined;
          union(then, other);
          inside = then;
        } else {
          labels.push(live);
          inside = walk(s + 1, i, live, labels);
          labels.pop();
        }
        if (inside === undefined) return undefined;
        live = inside;
        i = s;
        continue;
      }
      if (op === 0x20) live[x >>> 5] = (live[x >>> 5] as number) | (1 << (x & 31));
      else if (op === 0x21 || op === 0x22) live[x >>> 5] = (live[x >>> 5] as number) & ~(1 << (x & 31));
      else if (op === 0x0c) live = label(labels, x).slice();
      else if (op === 0x0d) union(live, label(labels, x));
      else if (op === 0x0e) {
        live = new Uint32Array(words);
        for (const d of shape.targets.get(i) ?? []) union(live, label(labels, d));
      } else if (op === 0x00 || op === 0x0f || op === 0x12 || op === 0x13) live = new Uint32Array(words);
    }
    return live;
  };
  // The function's own label: leaving it, nothing is live.
  return walk(0, n - 1, new Uint32Array(words), [new Uint32Array(words)]) === undefined ? undefined : saved;
}

/**
 * Which version of a function a rewrite writes. A function that can unwind
 * gets two. The running one, at its index, has no guards: its calls are
 * made and its structures entered as written, and after a call that can
 * unwind it numbers the call and leaves for the save only when unwinding.
 * On a rewind it hands over at once (a tail call) to the rewinding one,
 * appended to the module: every run, call and structure guarded so that a
 * rewind goes straight to the call it left from, as {@link addUnwinding}
 * describes. V8 compiles a function when it is first called, so a program
 * that is never resumed never compiles the rewinding versions, and the
 * code it runs carries no guard.
 */
type Version = { kind: "rewind" } | { kind: "normal"; rewind: number };

/** What the rewrite of one version learned of a body, which the other reuses. */
interface Known {
  shape: Shape;
  live: Bits | undefined;
  /** What is live after each call that can unwind (the body's own locals), when {@link live} is known. */
  live_after: Map<number, Bits>;
  /** Per local of the body written inside a loop: the innermost loops it is written in, as [opening, end] instruction numbers. */
  loop_writes: Map<number, [number, number][]>;
  /** The added locals a frame holds, and those each call that can unwind needs itself, by its instruction number. */
  kept: ReadonlySet<number>;
  needs: Map<number, number[]>;
  /** The types of all the locals added (the second version adds them in the same order, as it goes). */
  added: readonly number[];
}

/** Per local written inside a loop, the innermost loops that write it (see {@link deadAtCall}). */
function loopWrites(shape: Shape): Map<number, [number, number][]> {
  const end_of = new Map<number, number>();
  for (const [end, open] of shape.open_of) end_of.set(open, end);
  const writes = new Map<number, [number, number][]>();
  const loops: number[] = []; // open loops, innermost last
  const opens: number[] = []; // every open structure
  for (let i = 0; i < shape.ops.length; i += 1) {
    const op = shape.ops[i] as number;
    if (op === 0x02 || op === 0x03 || op === 0x04 || op === 0x06) {
      opens.push(i);
      if (op === 0x03) loops.push(i);
    } else if ((op === 0x0b || op === 0x18) && shape.open_of.has(i)) {
      const open = opens.pop() as number;
      if (shape.ops[open] === 0x03) loops.pop();
    } else if ((op === 0x21 || op === 0x22) && loops.length > 0) {
      const loop = loops[loops.length - 1] as number;
      const x = shape.imm[i] as number;
      let list = writes.get(x);
      if (list === undefined) writes.set(x, (list = []));
      const last = list[list.length - 1];
      if (last === undefined || last[0] !== loop) list.push([loop, end_of.get(loop) ?? shape.ops.length]);
    }
  }
  return writes;
}

/**
 * Most local writes a running version adds to its ways out to the save
 * (see {@link deadAtCall}); a function that would need more gets none. A
 * large C++ function holds thousands of calls that can unwind and hundreds
 * of locals: yosys's module, 147.3 MB once instrumented, took 7.7 MB more
 * with this bound and 13.5 MB more with 4,096, flite's 18.40 MB 94 and 161
 * KB more, for the same instructions a run of flite (callgrind: 1,302.8 and
 * 1,302.5 M, against 1,319.6 M without zeroing).
 */
const DEAD_ZEROES_MAX = 1024;

/**
 * The body's locals a frame holds that are dead after the call at `i` and
 * that a loop the call is not in writes: the running version zeroes them
 * on its way from that call to the save.
 *
 * Why: the save reads every local the frame holds, from every call that
 * can unwind, so each of them stays alive in the engine's eyes up to every
 * such call. A loop's index, written at each iteration and dead once the
 * loop ends, then flowed on to the calls after the loop, and V8 kept it on
 * the stack: stored at each iteration and read back at the next (the
 * sieve's counting loop; docs/runtime.md). Zeroed on the way out from a
 * call where it is dead, the loop's value flows nowhere past the loop; a
 * rewind to that call reads a zero it never uses. The same holds for the
 * locals the pass adds (a stack position's spill, an if's condition) that
 * the call does not need itself. The body's own locals that no loop writes,
 * or only loops the call is in, are left as they are (zeroing those too,
 * with a bound of 16,384: yosys's code 2.5 MB larger than without them,
 * flite's run 0.3% fewer instructions).
 */
function deadAtCall(known: Known, saved: readonly number[], i: number, idx: number): number[] {
  const after = known.live_after.get(i);
  if (after === undefined) return [];
  const dead: number[] = [];
  for (const l of saved) {
    if (((after[l >>> 5] as number) & (1 << (l & 31))) !== 0) continue;
    if ((known.loop_writes.get(l) ?? []).some(([open, end]) => i < open || i > end)) dead.push(l);
  }
  const needs = known.needs.get(i) ?? [];
  for (const l of known.kept) if (l !== idx && !needs.includes(l)) dead.push(l);
  return dead;
}

/** Where a local goes in a frame. */
interface FrameSlot {
  local: number;
  type: number;
  offset: number;
}

/** Rewrites function bodies. One per module. */
class BodyRewriter {
  /** What `rewrite` writes a body's code into, then the whole body: kept from one body to the next. */
  readonly #code = new Writer(1 << 16);
  readonly #whole = new Writer(1 << 16);

  constructor(
    readonly info: ModuleInfo,
    readonly unwinding: UnwindReach,
    readonly state_global: number,
    readonly data_global: number,
    readonly block_type_of: (results: number[]) => number,
  ) {}

  /** The values an exception of tag `tag` carries. */
  tagParams(tag: number): number[] {
    const type = this.info.types[this.info.tags[tag] ?? -1];
    if (type === undefined) throw new UnwindUnsupported(`tag ${tag}`);
    return type.params;
  }

  /** Reads a block type at `r`: params and results. */
  blockType(r: Reader): FuncType {
    const b = r.bytes[r.pos] as number;
    if (b === EMPTY_BLOCK) {
      r.skip(1);
      return { params: [], results: [] };
    }
    if ((b & 0xc0) === 0x40) return { params: [], results: [valType(r)] };
    const index = readS33(r);
    const type = this.info.types[index];
    if (type === undefined) throw new UnwindUnsupported(`block type ${index}`);
    return type;
  }

  /** The first pass: instruction offsets, the calls that can unwind, and the structures and arms that hold them. */
  shape(body: Uint8Array, from: number): Shape {
    const r = new Reader(body, from);
    const starts: number[] = [];
    const kinds: number[] = [];
    let calls = 0; // calls that can unwind so far
    const opens: number[] = []; // stack of open structure instruction numbers
    const in_catch: boolean[] = []; // per open structure: whether its current arm is a handler
    const seq_stack: number[] = [0];
    const seq: number[] = [];
    const arm_of = new Map<number, number>();
    const parent_seq = new Map<number, number>(); // structure opening -> the arm it sits in
    const last_boundary: number[] = [-1];
    const call_index = new Map<number, number>();
    const range = new Map<number, [number, number]>();
    const ops: number[] = [];
    const imm: number[] = [];
    const targets = new Map<number, number[]>();
    const open_of = new Map<number, number>();
    const else_of = new Map<number, number>();
    let eh = false;
    let n = 0;
    while (r.pos < body.length) {
      const i = n;
      n += 1;
      starts.push(r.pos);
      const op = r.byte();
      seq.push(seq_stack[seq_stack.length - 1] as number);
      kinds.push(0);
      ops.push(op);
      imm.push(-1);
      if (op === 0x06 || op === 0x07 || op === 0x08 || op === 0x09 || op === 0x18 || op === 0x19) eh = true;
      if ((op >= 0x20 && op <= 0x22) || op === 0x0c || op === 0x0d) {
        imm[i] = r.u32();
        continue;
      }
      if (op === 0x0e) {
        const list: number[] = [];
        for (let k = r.u32(); k >= 0; k -= 1) list.push(r.u32());
        targets.set(i, list);
        continue;
      }
      if (op === 0x02 || op === 0x03 || op === 0x04 || op === 0x06) {
        this.blockType(r);
        parent_seq.set(i, seq_stack[seq_stack.length - 1] as number);
        opens.push(i);
        in_catch.push(false);
        const arm = last_boundary.length;
        last_boundary.push(-1);
        arm_of.set(i, arm);
        seq_stack.push(arm);
      } else if (op === 0x05 || op === 0x07 || op === 0x19) {
        if (op === 0x07) r.skipLeb();
        if (op === 0x05) else_of.set(opens[opens.length - 1] as number, i);
        seq_stack.pop();
        const arm = last_boundary.length;
        last_boundary.push(-1);
        arm_of.set(i, arm);
        seq_stack.push(arm);
        in_catch[in_catch.length - 1] = op !== 0x05;
      } else if (op === 0x0b || op === 0x18) {
        if (op === 0x18) r.skipLeb();
        if (opens.length === 0) {
          if (r.pos !== body.length) throw new UnwindUnsupported("code after the function's end");
          break;
        }
        open_of.set(i, opens.pop() as number);
        in_catch.pop();
        seq_stack.pop();
      } else if (op === 0x10 || op === 0x11) {
        const unwinds = op === 0x10 ? this.unwinding.function(r.u32()) : this.unwinding.type(r.u32());
        if (op === 0x11) r.skipLeb();
        if (unwinds) {
          // A rewind cannot enter a handler: only a throw does.
          if (in_catch.includes(true)) throw new UnwindUnsupported("a call that can unwind in an exception handler");
          const k = calls;
          calls += 1;
          kinds[i] = 1;
          call_index.set(i, k);
          last_boundary[seq[i] as number] = i;
          // Every structure around it holds a boundary; each is one in its own arm.
          for (let d = opens.length - 1; d >= 0; d -= 1) {
            const s = opens[d] as number;
            const span = range.get(s);
            if (span === undefined) range.set(s, [k, k]);
            else span[1] = k;
            kinds[s] = 2;
            const p = parent_seq.get(s) as number;
            if ((last_boundary[p] as number) < s) last_boundary[p] = s;
          }
        }
      } else if (op === 0x12 || op === 0x13) {
        const unwinds = op === 0x12 ? this.unwinding.function(r.u32()) : this.unwinding.type(r.u32());
        if (op === 0x13) r.skipLeb();
        if (unwinds) throw new UnwindUnsupported("a tail call to a function that can unwind");
      } else skipOperands(r, op);
    }
    return { starts, boundary: Uint8Array.from(kinds), call_index, range, last_boundary, arm_of, ops: Uint8Array.from(ops), imm: Int32Array.from(imm), targets, open_of, else_of, eh };
  }

  /**
   * Rewrites one body (`body` holds its bytes from the local declarations
   * to its final `end`), in one of two versions (see {@link Version}), and
   * gives its frame's size. Both versions of a function take the same
   * locals in the same order and so write and read one frame layout
   * (`frame`, compared by the caller); the second reuses the first's reading
   * of the body (`known`). The body it gives is a view of the rewriter's own
   * buffer, good until its next call: the caller copies it out first.
   */
  rewrite(body: Uint8Array, type: FuncType, version: Version, known?: Known): { body: Uint8Array; frame_bytes: number; frame: string; known: Known } {
    const guards = version.kind === "rewind";
    const r = new Reader(body, 0);
    const locals: number[] = [...type.params];
    const groups = r.u32();
    for (let g = 0; g < groups; g += 1) {
      const count = r.u32();
      const t = valType(r);
      if (locals.length + count > 50_000) throw new UnwindUnsupported("more than 50,000 locals");
      for (let k = 0; k < count; k += 1) locals.push(t);
    }
    const code_start = r.pos;
    const shape = known?.shape ?? this.shape(body, code_start);
    const out = this.#code.reset();
    const temps = new Map<number, number>(); // position * 256 + type -> local
    const conds: number[] = []; // hot depth -> local
    const added: number[] = []; // types of the locals added
    const addLocal = (t: number): number => {
      added.push(t);
      return locals.length + added.length - 1;
    };
    const idx = addLocal(I32);
    /** The added locals a frame must hold: the call's number, and what each call that can unwind needs (below). */
    const kept = new Set<number>([idx]);
    /** Those each call that can unwind needs itself, by its instruction number. */
    const needs = new Map<number, number[]>();
    /** What the running version zeroes on its way from each call to the save (none past the bound). */
    const zeroes = new Map<number, number[]>();
    if (!guards && known?.live !== undefined) {
      /** The function's own locals a frame holds. */
      const saved: number[] = [];
      for (let l = 0; l < locals.length; l += 1) if (((known.live[l >>> 5] as number) & (1 << (l & 31))) !== 0) saved.push(l);
      // Worked out only where that is cheap: at most the bound for every call.
      if ((saved.length + known.kept.size) * known.live_after.size <= 64 * DEAD_ZEROES_MAX) {
        let count = 0;
        for (const i of known.live_after.keys()) {
          const dead = deadAtCall(known, saved, i, idx);
          count += dead.length;
          if (dead.length > 0) zeroes.set(i, dead);
        }
        if (count > DEAD_ZEROES_MAX) zeroes.clear();
      }
    }
    const zero = (t: number): void => {
      if (t === I32) out.bytes(new Uint8Array([0x41, 0]));
      else if (t === I64) out.bytes(new Uint8Array([0x42, 0]));
      else if (t === F32) out.bytes(new Uint8Array([0x43, 0, 0, 0, 0]));
      else if (t === F64) out.bytes(new Uint8Array([0x44, 0, 0, 0, 0, 0, 0, 0, 0]));
      else if (t === V128) out.bytes(new Uint8Array([0xfd, 0x0c, ...new Array<number>(16).fill(0)]));
      else throw new UnwindUnsupported("a reference-typed value would have to be saved");
    };
    const temp = (position: number, t: number): number => {
      if (t === UNKNOWN) throw new UnwindUnsupported("a value of unknown type at a boundary");
      if (isRefType(t)) throw new UnwindUnsupported("a reference on the operand stack at a call that can unwind");
      const key = position * 256 + t;
      let local = temps.get(key);
      if (local === undefined) {
        local = addLocal(t);
        temps.set(key, local);
      }
      return local;
    };
    const cond = (depth: number): number => {
      let local = conds[depth];
      if (local === undefined) {
        local = addLocal(I32);
        conds[depth] = local;
      }
      return local;
    };
    const stack: number[] = [];
    const frames: Frame[] = [];
    let labels = 2; // the unwind block and the body block
    const UNWOUND_TPOS = 0;
    frames.push({ kind: "func", params: [], results: type.results, height: 0, unreachable: false, hot: true, tpos: 1, run: "none", seq: 0, depth: 0 });

    const localGet = (l: number): void => {
      out.byte(0x20);
      out.u32(l);
    };
    const localSet = (l: number): void => {
      out.byte(0x21);
      out.u32(l);
    };
    /** Spills stack positions [from, stack.length) to their locals (top first); `cond_depth` puts the top in that if-condition local. */
    const spill = (from: number, cond_depth?: number): void => {
      for (let p = stack.length - 1; p >= from; p -= 1) {
        if (cond_depth !== undefined && p === stack.length - 1) localSet(cond(cond_depth));
        else localSet(temp(p, stack[p] as number));
      }
    };
    const reload = (from: number, to: number): void => {
      for (let p = from; p < to; p += 1) localGet(temp(p, stack[p] as number));
    };
    const stateIsNormal = (): void => {
      out.byte(0x23);
      out.u32(this.state_global);
      out.byte(0x45); // i32.eqz
    };
    const openIf = (): void => {
      out.byte(0x04);
      out.byte(EMPTY_BLOCK);
      labels += 1;
    };
    const closeBlock = (): void => {
      out.byte(0x0b);
      labels -= 1;
    };
    /**
     * Where the last instructions written start in `out`, when each pushes a local or a constant
     * and nothing else was written after them in the run: a call to a
     * function of the module can take those arguments from the same
     * instructions after the run's guard instead of through spills (on a
     * rewind, a function reads its arguments from its own frame).
     */
    let pure: number[] = [];
    /** Where the current run's guard starts in `out`, and where its code starts after it. */
    let run_guard = -1;
    let run_code = -1;
    const openRun = (f: Frame, i: number, force_guard = false): void => {
      const guarded = force_guard || i < (shape.last_boundary[f.seq] as number);
      run_guard = out.len;
      if (guarded && guards) {
        stateIsNormal();
        openIf();
      }
      reload(f.height, stack.length);
      run_code = out.len;
      pure = [];
      f.run = guarded ? "guarded" : "open";
    };
    /** Ends a guarded run before a boundary: its values spilled, the guard closed. */
    const closeRun = (f: Frame, cond_depth?: number): void => {
      if (f.run === "open") throw new Error("an unguarded run before a boundary");
      if (f.run === "guarded") {
        if (out.len === run_code && stack.length === f.height && cond_depth === undefined) {
          // Nothing left in the run: no guard either.
          out.len = run_guard;
          if (guards) labels -= 1;
        } else {
          spill(f.height, cond_depth);
          if (guards) closeBlock();
        }
      }
      pure = [];
      f.run = "none";
    };
    /** At a hot frame's end or else: its results on the stack, as the original code had them. */
    const finishArm = (f: Frame): void => {
      pure = [];
      if (f.run === "guarded") {
        if (f.unreachable) {
          if (guards) closeBlock();
          out.byte(0x00);
        } else {
          spill(f.height);
          if (guards) closeBlock();
          reload(f.height, stack.length);
        }
      } else if (f.run === "none") {
        if (f.unreachable) out.byte(0x00);
        else reload(f.height, stack.length);
      }
      f.run = "none";
    };
    const relabel = (depth: number): number => {
      const target = frames[frames.length - 1 - depth];
      if (target === undefined) throw new UnwindUnsupported("a branch out of the function");
      return labels - 1 - target.tpos;
    };
    const pop = (f: Frame): number => {
      if (stack.length <= f.height) {
        if (!f.unreachable) throw new UnwindUnsupported("operand stack underflow");
        return UNKNOWN;
      }
      return stack.pop() as number;
    };
    const popN = (f: Frame, n: number): void => {
      for (let k = 0; k < n; k += 1) pop(f);
    };
    const setUnreachable = (f: Frame): void => {
      stack.length = f.height;
      f.unreachable = true;
    };

    // What `plain` needs of the walk: one object, and one reader, for the whole body.
    const reader = new Reader(body, 0);
    const helpers = {
      pop,
      popN,
      setUnreachable,
      relabel,
      locals: (l: number): number => {
        const t = locals[l];
        if (t === undefined) throw new UnwindUnsupported(`local ${l}`);
        return t;
      },
      push_frame: (frame: Omit<Frame, "tpos">): void => {
        frames.push({ ...frame, tpos: labels });
        labels += 1;
      },
      pop_frame: (): Frame => {
        labels -= 1;
        return frames.pop() as Frame;
      },
    };
    const n = shape.starts.length;
    for (let i = 0; i < n; i += 1) {
      const start = shape.starts[i] as number;
      const end = i + 1 < n ? (shape.starts[i + 1] as number) : body.length;
      const op = body[start] as number;
      const f = frames[frames.length - 1] as Frame;
      const kind = shape.boundary[i] as number;

      // A boundary of a hot frame, reached.
      if (f.hot && !f.unreachable && kind !== 0) {
        const ir = new Reader(body, start + 1);
        if (kind === 2) {
          const bt = this.blockType(ir);
          if (bt.params.length > 0) throw new UnwindUnsupported("a block with parameters holding a call that can unwind");
          if (op === 0x04) {
            // Its condition goes to a local of its own (a nested arm's spills could overwrite a stack position's).
            if (f.run === "none") openRun(f, i, true);
            closeRun(f, f.depth);
            stack.pop();
          } else closeRun(f);
          if (guards) {
            // Entered when running, or when the frame's call is inside.
            const [lo, hi] = shape.range.get(i) as [number, number];
            stateIsNormal();
            localGet(idx);
            out.byte(0x41);
            out.s32(lo);
            out.byte(0x6b); // i32.sub
            out.byte(0x41);
            out.s32(hi - lo);
            out.byte(0x4d); // i32.le_u
            out.byte(0x72); // i32.or
            openIf();
          }
          if (op === 0x04) localGet(cond(f.depth));
          out.copy(body, start, ir.pos);
          labels += 1;
          const kindName = op === 0x02 ? "block" : op === 0x03 ? "loop" : op === 0x04 ? "if" : "try";
          frames.push({ kind: kindName, params: [], results: bt.results, height: stack.length, unreachable: false, hot: true, tpos: labels - 1, run: "none", seq: shape.arm_of.get(i) as number, depth: f.depth + 1 });
        } else {
          const k = shape.call_index.get(i) as number;
          let callee: FuncType;
          let extra = 0;
          // An import is called again with its arguments after a rewind; a function reads its own frame.
          let again = true;
          if (op === 0x10) {
            const index = ir.u32();
            callee = this.info.types[this.info.func_types[index] as number] as FuncType;
            again = index < this.info.imported;
          } else {
            callee = this.info.types[ir.u32()] as FuncType;
            extra = 1;
          }
          const nargs = callee.params.length + extra;
          const base = stack.length - nargs;
          if (base < f.height) throw new UnwindUnsupported("operand stack underflow at a call");
          // Arguments pushed by the run's last instructions, taken back from it and pushed again at the call
          // (the running version too, which has no guard to move them past: so both spill the same values).
          let sunk: Uint8Array = new Uint8Array(0);
          const sunk_types: number[] = [];
          if (!again && f.run === "guarded") {
            const m = Math.min(pure.length, nargs);
            if (m > 0) {
              const first = pure[pure.length - m] as number;
              sunk = out.buf.slice(first, out.len);
              out.len = first;
              for (let q = 0; q < m; q += 1) sunk_types.unshift(stack.pop() as number);
            }
          }
          closeRun(f);
          // What a rewind to this call needs: the values under its arguments, the
          // arguments of an import, and the conditions of the ifs it is in.
          const need: number[] = [];
          for (let p = 0; p < (again ? stack.length : base); p += 1) need.push(temp(p, stack[p] as number));
          for (const frame of frames) if (frame.kind === "if" && frame.hot) need.push(cond(frame.depth - 1));
          for (const l of need) kept.add(l);
          needs.set(i, need);
          if (guards) {
            stateIsNormal();
            localGet(idx);
            out.byte(0x41);
            out.s32(k);
            out.byte(0x46); // i32.eq
            out.byte(0x72); // i32.or
            openIf();
          }
          reload(base, stack.length);
          out.bytes(sunk);
          for (const t of sunk_types) stack.push(t);
          if (guards) {
            // The call's number, for the save if it unwinds (while rewinding, it is this one already).
            out.byte(0x41);
            out.s32(k);
            localSet(idx);
          }
          out.copy(body, start, end);
          // Unwinding: leave for the save (the running version numbers the call only then).
          out.byte(0x23);
          out.u32(this.state_global);
          out.byte(0x41);
          out.s32(1);
          out.byte(0x46);
          if (guards) {
            out.byte(0x0d); // br_if
            out.u32(labels - 1 - UNWOUND_TPOS);
          } else {
            openIf();
            out.byte(0x41);
            out.s32(k);
            localSet(idx);
            for (const l of zeroes.get(i) ?? []) {
              zero(l < locals.length ? (locals[l] as number) : ((known as Known).added[l - locals.length] as number));
              localSet(l);
            }
            out.byte(0x0c); // br
            out.u32(labels - 1 - UNWOUND_TPOS);
            closeBlock();
          }
          stack.length = base;
          for (const t of callee.results) stack.push(t);
          spill(base);
          if (guards) closeBlock();
          f.run = "none";
        }
        continue;
      }

      // The end, else, handler or delegate of a hot frame.
      if (f.hot && (op === 0x0b || op === 0x05 || op === 0x07 || op === 0x19 || op === 0x18)) {
        finishArm(f);
        if (op === 0x05) {
          out.byte(0x05);
          stack.length = f.height;
          f.unreachable = false;
          f.seq = shape.arm_of.get(i) as number;
          continue;
        }
        if (op === 0x07 || op === 0x19) {
          // A handler holds no boundary (`shape`): one run, entered with the tag's values on the stack.
          out.copy(body, start, end);
          stack.length = f.height;
          if (op === 0x07) for (const t of this.tagParams(new Reader(body, start + 1).u32())) stack.push(t);
          f.unreachable = false;
          f.seq = shape.arm_of.get(i) as number;
          f.run = "open";
          continue;
        }
        frames.pop();
        if (f.kind === "func") {
          // The body block ends; what follows it in `assemble` returns.
          break;
        }
        labels -= 1;
        if (op === 0x18) {
          // Its label counts the blocks outside the try.
          out.byte(0x18);
          out.u32(relabel(new Reader(body, start + 1).u32()));
        } else out.byte(0x0b);
        stack.length = f.height;
        for (const t of f.results) stack.push(t);
        // Spilled inside the guard: when it skipped the structure, the locals keep what the frame restored.
        spill(f.height);
        if (guards) closeBlock();
        (frames[frames.length - 1] as Frame).run = "none";
        continue;
      }

      // Anything else runs in a run of the innermost hot frame.
      if (f.hot && f.run === "none") openRun(f, i);
      const before = out.len;
      const height = stack.length;
      this.plain(body, start, end, op, out, stack, f, helpers, reader);
      const pushes = op === 0x20 || op === 0x41 || op === 0x42 || op === 0x43 || op === 0x44;
      if (pushes && f.hot && f.run === "guarded" && frames[frames.length - 1] === f && stack.length === height + 1) pure.push(before);
      else pure = [];
    }

    // Frame layout: the locals live after a call that can unwind (parameters
    // and the body's), and every added one (the spills, the conditions, the call's number).
    const live_after = known?.live_after ?? new Map<number, Bits>();
    const live = known !== undefined ? known.live : liveAcrossCalls(shape, locals.length, live_after);
    const slots: FrameSlot[] = [];
    let frame_bytes = 0;
    const all = [...locals, ...added];
    all.forEach((t, l) => {
      if (l < locals.length && live !== undefined && ((live[l >>> 5] as number) & (1 << (l & 31))) === 0) return;
      if (l >= locals.length && !kept.has(l)) return;
      slots.push({ local: l, type: t, offset: frame_bytes });
      frame_bytes += sizeOf(t);
    });
    const scratch = all.length; // the frame pointer; not saved
    const frame = slots.map((x) => `${x.local}:${x.type}`).join(",");
    return { body: this.assemble(body.subarray(0, code_start), groups, added, out.done(), slots, frame_bytes, scratch, type, version), frame_bytes, frame, known: { shape, live, live_after, loop_writes: known?.loop_writes ?? loopWrites(shape), kept, needs, added } };
  }

  /** Writes one instruction that is not a boundary, tracking the operand stack. */
  plain(
    body: Uint8Array,
    start: number,
    end: number,
    op: number,
    out: Writer,
    stack: number[],
    f: Frame,
    h: {
      pop(f: Frame): number;
      popN(f: Frame, n: number): void;
      setUnreachable(f: Frame): void;
      relabel(depth: number): number;
      locals(l: number): number;
      push_frame(frame: Omit<Frame, "tpos">): void;
      pop_frame(): Frame;
    },
    r: Reader,
  ): void {
    r.pos = start + 1;
    if (op === 0x02 || op === 0x03 || op === 0x04 || op === 0x06) {
      const bt = this.blockType(r);
      if (op === 0x04) h.pop(f);
      h.popN(f, bt.params.length);
      out.copy(body, start, end);
      const height = stack.length;
      for (const t of bt.params) stack.push(t);
      h.push_frame({ kind: op === 0x02 ? "block" : op === 0x03 ? "loop" : op === 0x04 ? "if" : "try", params: bt.params, results: bt.results, height, unreachable: false, hot: false, run: "none", seq: -1, depth: f.depth });
      return;
    }
    if (op === 0x07 || op === 0x19) {
      out.copy(body, start, end);
      stack.length = f.height;
      if (op === 0x07) for (const t of this.tagParams(r.u32())) stack.push(t);
      f.unreachable = false;
      return;
    }
    if (op === 0x18) {
      const depth = r.u32();
      const done = h.pop_frame();
      out.byte(op);
      out.u32(h.relabel(depth));
      stack.length = done.height;
      for (const t of done.results) stack.push(t);
      return;
    }
    if (op === 0x08) {
      out.copy(body, start, end);
      h.popN(f, this.tagParams(r.u32()).length);
      h.setUnreachable(f);
      return;
    }
    if (op === 0x09) {
      out.byte(op);
      out.u32(h.relabel(r.u32()));
      h.setUnreachable(f);
      return;
    }
    if (op === 0x05) {
      out.copy(body, start, end);
      stack.length = f.height;
      for (const t of f.params) stack.push(t);
      f.unreachable = false;
      return;
    }
    if (op === 0x0b) {
      out.copy(body, start, end);
      const done = h.pop_frame();
      stack.length = done.height;
      for (const t of done.results) stack.push(t);
      return;
    }
    if (op === 0x0c || op === 0x0d) {
      const depth = r.u32();
      out.byte(op);
      out.u32(h.relabel(depth));
      if (op === 0x0c) h.setUnreachable(f);
      else h.pop(f);
      return;
    }
    if (op === 0x0e) {
      const count = r.u32();
      out.byte(op);
      out.u32(count);
      for (let k = 0; k <= count; k += 1) out.u32(h.relabel(r.u32()));
      h.setUnreachable(f);
      return;
    }
    out.copy(body, start, end);
    if (op === 0x00 || op === 0x0f) {
      h.setUnreachable(f);
      return;
    }
    if (op === 0x01) return;
    if (op === 0x10 || op === 0x11 || op === 0x12 || op === 0x13) {
      const type = op === 0x10 || op === 0x12 ? (this.info.types[this.info.func_types[r.u32()] as number] as FuncType) : (this.info.types[r.u32()] as FuncType);
      if (op === 0x11 || op === 0x13) h.pop(f);
      h.popN(f, type.params.length);
      if (op === 0x12 || op === 0x13) h.setUnreachable(f);
      else for (const t of type.results) stack.push(t);
      return;
    }
    if (op === 0x1a) {
      h.pop(f);
      return;
    }
    if (op === 0x1b || op === 0x1c) {
      h.pop(f);
      const a = h.pop(f);
      const b = h.pop(f);
      stack.push(a !== UNKNOWN ? a : b);
      return;
    }
    if (op === 0x20) {
      stack.push(h.locals(r.u32()));
      return;
    }
    if (op === 0x21) {
      h.pop(f);
      return;
    }
    if (op === 0x22) {
      h.pop(f);
      stack.push(h.locals(r.u32()));
      return;
    }
    if (op === 0x23) {
      const g = this.info.globals[r.u32()];
      if (g === undefined) throw new UnwindUnsupported("global index");
      stack.push(g);
      return;
    }
    if (op === 0x24) {
      h.pop(f);
      return;
    }
    if (op === 0x25) {
      h.pop(f);
      const t = this.info.tables[r.u32()];
      if (t === undefined) throw new UnwindUnsupported("table index");
      stack.push(t);
      return;
    }
    if (op === 0x26) {
      h.popN(f, 2);
      return;
    }
    const pushed = PUSH_ONLY[op] as number;
    if (pushed !== 0) {
      stack.push(pushed);
      return;
    }
    if (op >= 0x28 && op <= 0x35) {
      h.pop(f);
      stack.push(LOAD_TYPES[op - 0x28] as number);
      return;
    }
    if (op >= 0x36 && op <= 0x3e) {
      h.popN(f, 2);
      return;
    }
    if (op === 0x40) {
      h.pop(f);
      stack.push(I32);
      return;
    }
    const num = numeric(op);
    if (num !== undefined) {
      h.popN(f, num.pop);
      stack.push(num.push);
      return;
    }
    if (op >= 0xa7 && op <= 0xc4) {
      h.pop(f);
      stack.push(CONVERSIONS[op - 0xa7] as number);
      return;
    }
    if (op === 0xd0) {
      const heap = r.byte();
      stack.push(heap === 0x70 ? FUNCREF : heap === 0x6f ? EXTERNREF : UNKNOWN);
      return;
    }
    if (op === 0xd1) {
      h.pop(f);
      stack.push(I32);
      return;
    }
    if (op === 0xfc) {
      const sub = r.u32();
      if (sub <= 7) {
        h.pop(f);
        stack.push(TRUNC_SAT[sub] as number);
        return;
      }
      if (sub === 8 || sub === 10 || sub === 11 || sub === 12 || sub === 14) return h.popN(f, 3);
      if (sub === 9 || sub === 13) return;
      if (sub === 15) {
        h.popN(f, 2);
        stack.push(I32);
        return;
      }
      if (sub === 16) {
        stack.push(I32);
        return;
      }
      if (sub === 17) return h.popN(f, 3);
    }
    if (op === 0xfd) {
      const effect = simd(r.u32());
      h.popN(f, effect.pop);
      if (effect.push !== undefined) stack.push(effect.push);
      return;
    }
    throw new UnwindUnsupported(`opcode 0x${op.toString(16)} in a function that can unwind`);
  }

  /** The whole body: declarations, the rewind at entry, the rewritten code, the save at the end (a view of the rewriter's buffer, as `rewrite` gives it). */
  assemble(decls: Uint8Array, groups: number, added: number[], code: Uint8Array, slots: readonly FrameSlot[], frame_bytes: number, scratch: number, type: FuncType, version: Version): Uint8Array {
    const w = this.#whole.reset();
    // Declarations: the original groups, then one per added local and the scratch pointer.
    const original = new Reader(decls, 0);
    original.u32();
    const runs = typeRuns([...added, I32]);
    w.u32(groups + runs.length);
    w.bytes(decls.subarray(original.pos));
    for (const { count, type: t } of runs) {
      w.u32(count);
      w.byte(t);
    }
    const globalGet = (g: number): void => {
      w.byte(0x23);
      w.u32(g);
    };
    const memarg = (align: number, offset: number): void => {
      w.u32(align);
      w.u32(offset);
    };
    // Rewinding: the running version hands over to the rewinding one (its frame replaced); that one pops the frame and reads its locals back.
    globalGet(this.state_global);
    w.byte(0x41);
    w.s32(2);
    w.byte(0x46);
    w.byte(0x04);
    w.byte(EMPTY_BLOCK);
    if (version.kind === "normal") {
      type.params.forEach((_, k) => {
        w.byte(0x20);
        w.u32(k);
      });
      w.byte(0x12); // return_call
      w.u32(version.rewind);
      w.byte(0x0b);
    } else {
      globalGet(this.data_global);
      globalGet(this.data_global);
      w.byte(0x28);
      memarg(2, 0);
      w.byte(0x41);
      w.s32(frame_bytes);
      w.byte(0x6b);
      w.byte(0x22); // local.tee
      w.u32(scratch);
      w.byte(0x36);
      memarg(2, 0);
      for (const { local, type: t, offset } of slots) {
        w.byte(0x20);
        w.u32(scratch);
        access(w, t, offset, false);
        w.byte(0x21);
        w.u32(local);
      }
      w.byte(0x0b);
    }
    // The unwind block, and the body's block with the function's results.
    w.byte(0x02);
    w.byte(EMPTY_BLOCK);
    w.byte(0x02);
    writeBlockType(w, type.results, this.block_type_of);
    w.bytes(code);
    w.byte(0x0b);
    w.byte(0x0f); // return
    w.byte(0x0b);
    // Unwinding: push the frame (the buffer's end checked first).
    globalGet(this.data_global);
    w.byte(0x28);
    memarg(2, 0);
    w.byte(0x21);
    w.u32(scratch);
    w.byte(0x20);
    w.u32(scratch);
    w.byte(0x41);
    w.s32(frame_bytes);
    w.byte(0x6a);
    globalGet(this.data_global);
    w.byte(0x28);
    memarg(2, 4);
    w.byte(0x4b); // i32.gt_u
    w.byte(0x04);
    w.byte(EMPTY_BLOCK);
    w.byte(0x00);
    w.byte(0x0b);
    for (const { local, type: t, offset } of slots) {
      w.byte(0x20);
      w.u32(scratch);
      w.byte(0x20);
      w.u32(local);
      access(w, t, offset, true);
    }
    globalGet(this.data_global);
    w.byte(0x20);
    w.u32(scratch);
    w.byte(0x41);
    w.s32(frame_bytes);
    w.byte(0x6a);
    w.byte(0x36);
    memarg(2, 0);
    for (const t of type.results) zero(w, t);
    w.byte(0x0b);
    return w.done();
  }
}

function writeBlockType(w: Writer, results: number[], block_type_of: (results: number[]) => number): void {
  if (results.length === 0) w.byte(EMPTY_BLOCK);
  else if (results.length === 1) w.byte(results[0] as number);
  else w.s32(block_type_of(results));
}

/** A load (or store) of a value of type `t` at the frame pointer plus `offset`, unaligned. */
function access(w: Writer, t: number, offset: number, write: boolean): void {
  if (t === V128) {
    w.byte(0xfd);
    w.u32(write ? 11 : 0);
  } else {
    const at = t === I32 ? 0 : t === I64 ? 1 : t === F32 ? 2 : 3;
    w.byte((write ? 0x36 : 0x28) + at);
  }
  w.u32(0);
  w.u32(offset);
}

/** Writes the zero of value type `t`. */
export function zero(w: Writer, t: number): void {
  if (t === I32) {
    w.byte(0x41);
    w.byte(0);
  } else if (t === I64) {
    w.byte(0x42);
    w.byte(0);
  } else if (t === F32) {
    w.byte(0x43);
    for (let k = 0; k < 4; k += 1) w.byte(0);
  } else if (t === F64) {
    w.byte(0x44);
    for (let k = 0; k < 8; k += 1) w.byte(0);
  } else if (t === V128) {
    w.byte(0xfd);
    w.u32(12);
    for (let k = 0; k < 16; k += 1) w.byte(0);
  } else {
    w.byte(0xd0);
    w.byte(t);
  }
}

function readS33(r: Reader): number {
  let value = 0;
  let shift = 0;
  for (;;) {
    const b = r.byte();
    value += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if ((b & 0x80) === 0) {
      if ((b & 0x40) !== 0) value -= 2 ** shift;
      return value;
    }
    if (shift > 35) throw new RangeError("LEB128 too long");
  }
}

function skipMemArg(r: Reader): void {
  const align = r.u32();
  if ((align & 0x40) !== 0) throw new UnwindUnsupported("multiple memories");
  r.skipLeb();
}

const SIMD_UNARY = new Set([77, 94, 95, 96, 97, 98, 103, 104, 105, 106, 116, 117, 122, 124, 125, 126, 127, 128, 129, 135, 136, 137, 138, 148, 160, 161, 167, 168, 169, 170, 192, 193, 199, 200, 201, 202, 224, 225, 227, 236, 237, 239, 248, 249, 250, 251, 252, 253, 254, 255, 257, 258, 259, 260]);
const SIMD_TO_I32 = new Set([83, 99, 100, 131, 132, 163, 164, 195, 196]);
const SIMD_SHIFTS = new Set([107, 108, 109, 139, 140, 141, 171, 172, 173, 203, 204, 205]);
const SIMD_TERNARY = new Set([82, 261, 262, 263, 264, 265, 266, 267, 268, 275]);
const SIMD_RESERVED = new Set([154, 162, 165, 166, 175, 176, 178, 179, 180, 187, 194, 197, 198, 207, 208, 210, 211, 212, 226, 238]);

/** Operands taken and the result of a SIMD (or relaxed SIMD) opcode `sub`. */
function simd(sub: number): { pop: number; push: number | undefined } {
  if (sub <= 10 || sub === 92 || sub === 93) return { pop: 1, push: V128 }; // loads
  if (sub === 11) return { pop: 2, push: undefined };
  if (sub === 12) return { pop: 0, push: V128 };
  if (sub >= 15 && sub <= 20) return { pop: 1, push: V128 }; // splats
  if (sub >= 21 && sub <= 34) {
    const lanes: Record<number, number> = { 21: I32, 22: I32, 24: I32, 25: I32, 27: I32, 29: I64, 31: F32, 33: F64 };
    const extract = lanes[sub];
    return extract !== undefined ? { pop: 1, push: extract } : { pop: 2, push: V128 };
  }
  if (sub >= 84 && sub <= 87) return { pop: 2, push: V128 }; // load_lane
  if (sub >= 88 && sub <= 91) return { pop: 2, push: undefined }; // store_lane
  if (SIMD_TO_I32.has(sub)) return { pop: 1, push: I32 };
  if (SIMD_UNARY.has(sub)) return { pop: 1, push: V128 };
  if (SIMD_SHIFTS.has(sub)) return { pop: 2, push: V128 };
  if (SIMD_TERNARY.has(sub)) return { pop: 3, push: V128 };
  if (SIMD_RESERVED.has(sub) || sub > 275) throw new UnwindUnsupported(`SIMD opcode ${sub}`);
  return { pop: 2, push: V128 }; // shuffle, swizzle, comparisons, bitwise, arithmetic
}

/** Skips an instruction's immediates in the first pass; throws for what the pass does not handle. */
function skipOperands(r: Reader, op: number): void {
  if (op <= 0x01 || op === 0x0f || op === 0x1a || op === 0x1b || op === 0xd1) return;
  if (op >= 0x45 && op <= 0xc4) return;
  if (op === 0x0c || op === 0x0d || op === 0x08 || op === 0x09) return r.skipLeb();
  if (op === 0x0e) {
    for (let n = r.u32(); n >= 0; n -= 1) r.skipLeb();
    return;
  }
  if (op === 0x1c) {
    for (let n = r.u32(); n > 0; n -= 1) valType(r);
    return;
  }
  if ((op >= 0x20 && op <= 0x26) || op === 0x3f || op === 0x40 || op === 0x41 || op === 0x42 || op === 0xd2) return r.skipLeb();
  if (op === 0xd0) return r.skip(1);
  if (op >= 0x28 && op <= 0x3e) return skipMemArg(r);
  if (op === 0x43) return r.skip(4);
  if (op === 0x44) return r.skip(8);
  if (op === 0xfc) {
    const sub = r.u32();
    if (sub <= 7) return;
    if (sub === 8 || sub === 10 || sub === 12 || sub === 14) {
      r.skipLeb();
      r.skipLeb();
      return;
    }
    if (sub === 9 || sub === 11 || sub === 13 || (sub >= 15 && sub <= 17)) return r.skipLeb();
  }
  if (op === 0xfd) {
    const sub = r.u32();
    simd(sub); // throws for an opcode it does not know
    if (sub <= 11 || sub === 92 || sub === 93) skipMemArg(r);
    else if (sub === 12 || sub === 13) r.skip(16);
    else if (sub >= 21 && sub <= 34) r.skip(1);
    else if (sub >= 84 && sub <= 91) {
      skipMemArg(r);
      r.skip(1);
    }
    return;
  }
  throw new UnwindUnsupported(`opcode 0x${op.toString(16)}`);
}

/**
 * Rewrites `wasm` so that every function that can reach a call to one of
 * `blocking` ("module.name", `*` a wildcard) can be unwound and rewound, and
 * adds Asyncify's exports. Throws {@link UnwindUnsupported} for what it
 * cannot handle.
 */
export function addUnwinding(wasm: Uint8Array, blocking: readonly string[], known?: UnwindReach): Unwound {
  const info = readModule(wasm);
  const reach = known ?? readReach(wasm, blocking);
  const new_types: FuncType[] = [];
  const type_key = new Map<string, number>();
  const typeIndex = (t: FuncType): number => {
    const key = `${t.params.join(",")}>${t.results.join(",")}`;
    let index = type_key.get(key);
    if (index === undefined) {
      index = info.types.length + new_types.length;
      new_types.push(t);
      type_key.set(key, index);
    }
    return index;
  };
  const state_global = info.globals.length;
  const data_global = state_global + 1;
  const rewriter = new BodyRewriter(info, reach, state_global, data_global, (results) => typeIndex({ params: [], results }));
  const total = info.func_types.length;
  const frame_bytes: number[] = new Array<number>(total).fill(0);
  let instrumented = 0;

  const sectionsOf = readSections(wasm);
  // The code section first: it may add block types.
  const code_section = sectionsOf.find((s) => s.id === 10);
  const code = new Writer(3 * (code_section?.payload.length ?? 0) + 64);
  const defined = total - info.imported;
  const added_funcs = 5;
  // Each function rewritten gets its rewinding version after the API's functions, in order.
  const copies: number[] = [];
  for (let index = info.imported; index < total; index += 1) if (reach.function(index)) copies.push(index);
  const first_copy = total + added_funcs;
  // The rewinding versions as they are written, each with its size: they go after the API's functions at the end.
  const rewinding = new Writer(code_section?.payload.length ?? 0);
  let rewound = 0;
  code.u32(defined + added_funcs + copies.length);
  if (code_section !== undefined) {
    const cr = new Reader(code_section.payload, 0);
    const count = cr.u32();
    for (let i = 0; i < count; i += 1) {
      const size = cr.u32();
      const bodyBytes = code_section.payload.subarray(cr.pos, cr.pos + size);
      cr.pos += size;
      const index = info.imported + i;
      if (!reach.function(index)) {
        code.u32(size);
        code.bytes(bodyBytes);
        continue;
      }
      const type = info.types[info.func_types[index] as number] as FuncType;
      const rewind = rewriter.rewrite(bodyBytes, type, { kind: "rewind" });
      rewinding.u32(rewind.body.length);
      rewinding.bytes(rewind.body);
      const running = rewriter.rewrite(bodyBytes, type, { kind: "normal", rewind: first_copy + rewound }, rewind.known);
      rewound += 1;
      if (running.frame !== rewind.frame) throw new Error(`the two versions of function ${index} disagree on their frame`);
      frame_bytes[index] = rewind.frame_bytes;
      instrumented += 1;
      code.u32(running.body.length);
      code.bytes(running.body);
    }
  }
  const t_ptr = typeIndex({ params: [I32], results: [] });
  const t_void = typeIndex({ params: [], results: [] });
  const t_state = typeIndex({ params: [], results: [I32] });
  for (const body of apiBodies(state_global, data_global)) {
    code.u32(body.length);
    code.bytes(body);
  }
  code.copy(rewinding.buf, 0, rewinding.len);
  const api_types = [t_ptr, t_void, t_ptr, t_void, t_state];
  const api_names = ["asyncify_start_unwind", "asyncify_stop_unwind", "asyncify_start_rewind", "asyncify_stop_rewind", "asyncify_get_state"];

  // A section whose vector gains `added` entries at its end, written by `write`.
  const rebuilt = new Map<number, Uint8Array>();
  const extend = (id: number, added: number, write: (w: Writer) => void): void => {
    const payload = sectionsOf.find((x) => x.id === id)?.payload ?? new Uint8Array([0]);
    const sr = new Reader(payload, 0);
    const w = new Writer();
    w.u32(sr.u32() + added);
    w.bytes(payload.subarray(sr.pos));
    write(w);
    rebuilt.set(id, w.done());
  };
  extend(1, new_types.length, (w) => {
    for (const t of new_types) {
      w.byte(0x60);
      w.u32(t.params.length);
      for (const p of t.params) w.byte(p);
      w.u32(t.results.length);
      for (const x of t.results) w.byte(x);
    }
  });
  extend(3, added_funcs + copies.length, (w) => {
    for (const t of api_types) w.u32(t);
    for (const index of copies) w.u32(info.func_types[index] as number);
  });
  // The state and the data pointer: mutable i32 globals starting at 0.
  extend(6, 2, (w) => {
    for (let k = 0; k < 2; k += 1) w.bytes(new Uint8Array([I32, 0x01, 0x41, 0x00, 0x0b]));
  });
  extend(7, api_names.length, (w) => {
    api_names.forEach((name, k) => {
      const bytes = new TextEncoder().encode(name);
      w.u32(bytes.length);
      w.bytes(bytes);
      w.byte(0x00);
      w.u32(total + k);
    });
  });
  rebuilt.set(10, code.done());

  const out = assemble(wasm, sectionsOf, rebuilt);
  for (let k = 0; k < added_funcs; k += 1) frame_bytes.push(0);
  for (const index of copies) frame_bytes.push(frame_bytes[index] as number);
  return { wasm: out, frame_bytes, instrumented, rewinding: copies.length };
}

/** Which calls of `wasm` can unwind, from its call graph. */
function readReach(wasm: Uint8Array, blocking: readonly string[]): UnwindReach {
  const scanned = scanCalls(wasm);
  if (scanned.bodies.some((b) => b.opaque)) throw new UnwindUnsupported("a call the scanner cannot follow");
  const tables = readTables(wasm, scanned.bodies.flatMap((b) => b.refs));
  return unwindReachers(scanned, tables, blocking);
}

/** Local declarations' groups for locals of `types`, in order: one group per run of one type. */
export function typeRuns(types: readonly number[]): { type: number; count: number }[] {
  const runs: { type: number; count: number }[] = [];
  for (const t of types) {
    const last = runs[runs.length - 1];
    if (last !== undefined && last.type === t) last.count += 1;
    else runs.push({ type: t, count: 1 });
  }
  return runs;
}

/** A module's sections, in order, each with its payload. */
export function readSections(wasm: Uint8Array): { id: number; payload: Uint8Array }[] {
  const out: { id: number; payload: Uint8Array }[] = [];
  const r = new Reader(wasm, 8);
  while (r.pos < wasm.length) {
    const id = r.byte();
    const size = r.u32();
    out.push({ id, payload: wasm.subarray(r.pos, r.pos + size) });
    r.pos += size;
  }
  return out;
}

/**
 * The module of `sections` (with `wasm`'s header), each section of
 * `rebuilt` in place of the one of its id, or where the order of sections
 * wants it when the module had none.
 */
export function assemble(wasm: Uint8Array, sections: readonly { id: number; payload: Uint8Array }[], rebuilt: ReadonlyMap<number, Uint8Array>): Uint8Array {
  let size = 8;
  for (const s of sections) size += 6 + (rebuilt.get(s.id) ?? s.payload).length;
  for (const [id, payload] of rebuilt) if (!sections.some((s) => s.id === id)) size += 6 + payload.length;
  const out = new Writer(size);
  out.bytes(wasm.subarray(0, 8));
  const emit = (id: number, payload: Uint8Array): void => {
    out.byte(id);
    out.u32(payload.length);
    out.bytes(payload);
  };
  const written = new Set<number>();
  const flushBefore = (order: number): void => {
    for (const [id, payload] of [...rebuilt].sort((x, y) => (SECTION_ORDER[x[0]] as number) - (SECTION_ORDER[y[0]] as number))) {
      if (!written.has(id) && (SECTION_ORDER[id] as number) < order) {
        emit(id, payload);
        written.add(id);
      }
    }
  };
  for (const s of sections) {
    if (s.id !== 0) flushBefore(SECTION_ORDER[s.id] ?? 99);
    const payload = rebuilt.get(s.id);
    if (payload !== undefined) {
      if (!written.has(s.id)) {
        emit(s.id, payload);
        written.add(s.id);
      }
      continue;
    }
    emit(s.id, s.payload);
  }
  flushBefore(99);
  return out.done().slice();
}

/** The bodies of Asyncify's five exports. */
function apiBodies(state: number, data: number): Uint8Array[] {
  const check = [0x23, ...writeU32Leb(data), 0x28, 2, 0, 0x23, ...writeU32Leb(data), 0x28, 2, 4, 0x4b, 0x04, EMPTY_BLOCK, 0x00, 0x0b];
  const setState = (s: number): number[] => [0x41, s, 0x24, ...writeU32Leb(state)];
  const setData = [0x20, 0, 0x24, ...writeU32Leb(data)];
  const body = (code: number[]): Uint8Array => Uint8Array.from([0, ...code, 0x0b]);
  return [
    body([...setState(1), ...setData, ...check]),
    body([...setState(0), ...check]),
    body([...setState(2), ...setData, ...check]),
    body([...setState(0), ...check]),
    body([0x23, ...writeU32Leb(state)]),
  ];
}
