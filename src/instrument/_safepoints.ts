/**
 * Safe points written straight into the binary: the work `_polls.ts`,
 * `_unroll.ts`, `_bounded.ts` and `_restart.ts` do through binaryen.js, in
 * one linear pass over the bytes, so that a module Ferry's unwinding pass
 * can handle is instrumented without loading Binaryen at all (loading it
 * and walking a body through it were most of a small module's start-up).
 *
 * What the module gets (the comments of those files say why each is so):
 *
 *   - An import `ferry.poll` (and `ferry.poll_restartable` when some function
 *     is restartable), a countdown global, and a flag global for restarts.
 *     The imports go after the module's own, so every defined function's
 *     index moves up by one or two: calls, `ref.func`, element segments,
 *     exports, the start function and the name section are renumbered.
 *   - Every loop something branches back to, and that is not provably
 *     bounded, is cut into slices:
 *
 *         loop $slice bt                      ;; the loop's own block type
 *           countdown(n + 1); n = 0
 *           loop $L bt
 *             br_if $slice ((n = n + 1) >= LOOP_SLICE)
 *             BODY                            ;; branches renumbered
 *           end
 *         end
 *
 *     The countdown and the counter leave the operand stack as they find
 *     it, so a loop with parameters keeps them on the way to either label.
 *     A small innermost loop whose body can reach no safe point runs
 *     `UNROLL_COPIES` copies of it per count (`_unroll.ts`), and adds
 *     that many to `n` a round. A loop inside another loop of its frame,
 *     or in a function counted on entry or that calls nothing, visits the
 *     countdown only when `n >= LOOP_SLICE` (`BodyWriter.#guarded`).
 *   - A function on a cycle of the call graph counts its frames in a depth
 *     global, and those of them that break every cycle (`cycles`
 *     in `_callgraph.ts`) with a countdown on entry and on the way out:
 *     `depth += 1; countdown(1); block $exit BODY end; countdown(1); depth -= 1`,
 *     every `return` (and branch to the function's label) becoming a branch
 *     to `$exit`, and a tail call counting the frame out before it leaves.
 *   - A restartable function (`_restart.ts`) becomes a wrapper at its index,
 *     a fast copy whose countdowns leave instead of unwinding, and a slow copy
 *     instrumented like any other function, both appended.
 *   - Every mutable global is exported (`prefix` + index), and so is each
 *     depth counter; the memory is exported as "memory".
 *
 * Anything it does not know (an instruction it cannot read, `try_table`, a
 * type it cannot describe) makes it throw {@link UnwindUnsupported}: the
 * caller then instruments the module through Binaryen.
 */
import { InstrumentError } from "../errors.js";
import { analyzeCalls, type CallAnalysis, type UnwindReach } from "./_callgraph.js";
import { skipImmediates } from "./_calls.js";
import { INTEGER_COMPARISONS } from "./_bounded.js";
import { leafOf, writeLeaf, type Leaf } from "./_inline.js";
import { LOOP_SLICE } from "./_polls.js";
import { Reader, REF, REF_NULLABLE, skipLimits, skipValType } from "./_reader.js";
import { UNROLL_COPIES } from "./_unroll.js";
import { assemble, readModule, readSections, typeRuns, UnwindUnsupported, Writer, zero, type FuncType, type ModuleInfo } from "./_unwind.js";

const I32 = 0x7f;
const I64 = 0x7e;
const F32 = 0x7d;
const F64 = 0x7c;
const EMPTY_BLOCK = 0x40;

const OP = {
  block: 0x02,
  loop: 0x03,
  if: 0x04,
  try: 0x06,
  rethrow: 0x09,
  end: 0x0b,
  br: 0x0c,
  br_if: 0x0d,
  br_table: 0x0e,
  return: 0x0f,
  call: 0x10,
  call_indirect: 0x11,
  return_call: 0x12,
  return_call_indirect: 0x13,
  delegate: 0x18,
  try_table: 0x1f,
  local_get: 0x20,
  local_set: 0x21,
  local_tee: 0x22,
  global_get: 0x23,
  global_set: 0x24,
  i32_const: 0x41,
  i64_const: 0x42,
  f32_const: 0x43,
  f64_const: 0x44,
  i32_eq: 0x46,
  i32_ge_u: 0x4f,
  i32_le_s: 0x4c,
  i32_add: 0x6a,
  i32_sub: 0x6b,
  i32_mul: 0x6c,
  ref_func: 0xd2,
  br_on_null: 0xd5,
  br_on_non_null: 0xd6,
} as const;

/**
 * Largest body, in bytes as the producer wrote it, whose small loops are
 * copied. V8 sends a function to its optimizing tier after a budget of
 * code run, charging a loop's whole body at each back-edge, cold code in it
 * included: copies in a large function (C's `printf_core`, 9 KB, twice that
 * once unwindable) sent it there after three lines printed, and compiling
 * it took longer than the program (a cached `ferry exec` of `compute 0`:
 * 0.40–0.50 s against 0.28–0.33 s). Hot loops are mostly in small functions.
 */
const UNROLL_FUNCTION_BYTES_MAX = 4096;

/**
 * Largest loop body, in instructions, that the binary pass copies (the
 * Binaryen path counts expressions against `UNROLL_BODY_MAX`). flite's
 * run under callgrind: 480.4 M instructions with 64, 476.9 M with 96, and
 * no fewer with 128, 160 or 320; its code section grows by 31 KB.
 */
const UNROLL_INSTRUCTIONS_MAX = 96;

/**
 * Most locals one body adds for the leaves written into it (`_inline.ts`):
 * past them, its calls to other leaves stay calls. A body with tens of
 * thousands of locals would approach V8's limit of 50,000, and every local
 * a frame holds costs the unwinding pass's reading of liveness.
 */
const LEAF_LOCALS_PER_CALLER_MAX = 256;

/** Most invariants a slice carries across its poll (`BodyWriter.#carry`): each costs two memory accesses a slice. */
const CARRIED_MAX = 8;

/**
 * Longest loop, in instructions, read for what only a small loop needs:
 * whether it is bounded (a larger one gets its slice), and its invariants
 * to carry across its poll. In a larger one either gain is lost in the
 * body, and each nested loop reads its range again: the reading of
 * invariants alone was 5% of the pass on yosys (a CPU profile) with this
 * bound.
 */
const LOOP_SCAN_MAX = 4096;

/** Options of {@link addSafePoints}. */
export interface SafePointOptions {
  /** "module.name" of every import that may block (`*` a wildcard), the poll's included. */
  blocking: readonly string[];
  /** The countdown's first value. */
  budget: number;
  poll: { module: string; name: string };
  restart_poll: { module: string; name: string };
  /** Prefix of the exports of mutable globals. */
  global_prefix: string;
  /** Told when the polls' step starts, after the call graph. */
  on_polls?: () => void;
}

/** What {@link addSafePoints} returns. */
export interface SafePoints {
  wasm: Uint8Array;
  /** The exported mutable globals, in capture order: the module's own, then the depth counters. */
  globals: { export_name: string; type: "i32" | "i64" | "f32" | "f64" }[];
  /** Each depth counter's export, and the function (index) whose frames it counts. */
  depth: { export_name: string; function: number }[];
  /** Functions given a fast copy (`_restart.ts`). */
  restartable: number;
  /** Loops sliced by their own induction's bound rather than a counter. */
  counted: number;
  /** Which calls of the written module can unwind, for the unwinding pass (which would otherwise read its call graph again). */
  reach: UnwindReach;
}

/** How a body is written: as itself, as a restartable function's fast copy, or as its slow copy. */
type Mode = "plain" | "fast" | "slow";

const KINDS = new Map([
  [I32, "i32"],
  [I64, "i64"],
  [F32, "f32"],
  [F64, "f64"],
] as const);

/** Adds polls, depth counters, fast copies and exports to `wasm` (see the module's comment). */
export function addSafePoints(wasm: Uint8Array, options: SafePointOptions): SafePoints {
  const info = readModule(wasm);
  const typeOf = (index: number): FuncType => info.types[info.func_types[index] as number] as FuncType;
  const numeric = (index: number): boolean => {
    const t = typeOf(index);
    return t.results.length <= 1 && [...t.params, ...t.results].every((x) => KINDS.has(x as typeof I32));
  };
  const graph = analyzeCalls(wasm, options.blocking, numeric);
  if (graph.scanned.bodies.some((body) => body.opaque)) throw new UnwindUnsupported("a body holds an instruction the pass does not read");
  options.on_polls?.();
  return new Rewrite(wasm, info, graph, options).run();
}

/** The module-wide state of one {@link addSafePoints}. */
class Rewrite {
  readonly imported: number;
  readonly defined: number;
  /** Imports added (the poll, and the restartable poll when needed). */
  readonly added_imports: number;
  readonly budget: number;
  readonly flag: number;
  /** Defined function (index among them) → its depth counter global, for the functions on a cycle. */
  readonly depth_of = new Map<number, number>();
  /** Defined function → index of its fast copy (its slow copy follows). */
  readonly fast_of = new Map<number, number>();
  /** Loops sliced by their own bound (`BodyWriter.#folded`). */
  counted = 0;
  /** One entry per defined function: 1 when its body (or, for a restartable one, its slow copy) holds a poll. */
  readonly polled: Uint8Array;
  readonly new_types: FuncType[] = [];
  readonly type_key = new Map<string, number>();
  /** The globals a slice carries its loop's invariants through across its poll (`BodyWriter.#carry`): their types, after the depth counters. */
  readonly carriers: number[] = [];
  readonly #carrier_slot = new Map<string, number>();
  /** Defined function → its body as a leaf written in place of its calls (`_inline.ts`), for the tiny ones. */
  leaves: (Leaf | undefined)[] = [];

  constructor(
    readonly wasm: Uint8Array,
    readonly info: ModuleInfo,
    readonly graph: CallAnalysis,
    readonly options: SafePointOptions,
  ) {
    this.imported = info.imported;
    this.defined = info.func_types.length - info.imported;
    this.polled = new Uint8Array(this.defined);
    this.added_imports = graph.restartable.length > 0 ? 2 : 1;
    this.budget = info.globals.length;
    this.flag = this.budget + 1;
    graph.cyclic.forEach((f, j) => this.depth_of.set(f, this.flag + 1 + j));
    const first = this.imported + this.added_imports + this.defined;
    graph.restartable.forEach((f, j) => this.fast_of.set(f, first + 2 * j));
  }

  /** The global that carries the `slot`-th invariant of type `type` across a slice's poll. */
  carrier(type: number, slot: number): number {
    const key = `${type}:${slot}`;
    let at = this.#carrier_slot.get(key);
    if (at === undefined) {
      at = this.carriers.length;
      this.carriers.push(type);
      this.#carrier_slot.set(key, at);
    }
    return this.flag + 1 + this.depth_of.size + at;
  }

  /** Whether defined function `f` calls a restartable function directly: the call is written in place of the wrapper (`BodyWriter`). */
  #callsRestartable(f: number): boolean {
    if (this.fast_of.size === 0) return false;
    const calls = this.graph.scanned.bodies[f]?.calls ?? [];
    return calls.some((c) => this.fast_of.has(c - this.imported));
  }

  /** A function's index in the output from its index in the input. */
  remap(index: number): number {
    return index < this.imported ? index : index + this.added_imports;
  }

  get poll(): number {
    return this.imported;
  }

  get restart_poll(): number {
    return this.imported + 1;
  }

  typeIndex(t: FuncType): number {
    const key = `${t.params.join(",")}>${t.results.join(",")}`;
    const found = this.type_key.get(key);
    if (found !== undefined) return found;
    let index = this.info.types.findIndex((x) => x.params.join(",") === t.params.join(",") && x.results.join(",") === t.results.join(","));
    if (index < 0) {
      index = this.info.types.length + this.new_types.length;
      this.new_types.push(t);
    }
    this.type_key.set(key, index);
    return index;
  }

  /** A block type with no parameters and these results. */
  blockType(w: Writer, results: readonly number[]): void {
    if (results.length === 0) w.byte(EMPTY_BLOCK);
    else if (results.length === 1) w.byte(results[0] as number);
    else w.s32(this.typeIndex({ params: [], results: [...results] }));
  }

  run(): SafePoints {
    const sections = readSections(this.wasm);
    const rebuilt = new Map<number, Uint8Array>();
    const payload = (id: number): Uint8Array | undefined => sections.find((s) => s.id === id)?.payload;
    const code = this.code(payload(10));
    const globals = this.globalSection(payload(6), payload(2), rebuilt);
    rebuilt.set(10, code.section);
    rebuilt.set(2, this.importSection(payload(2)));
    rebuilt.set(3, this.functionSection(payload(3), code.types));
    const exported = this.exportSection(payload(7), globals.mutable, rebuilt);
    const elements = payload(9);
    if (elements !== undefined) rebuilt.set(9, this.elementSection(elements));
    const start = payload(8);
    if (start !== undefined) {
      const w = new Writer();
      w.u32(this.remap(new Reader(start, 0).u32()));
      rebuilt.set(8, w.done().slice());
    }
    // Last: the others may have added types.
    rebuilt.set(1, this.typeSection(payload(1)));
    const kept = sections.filter((s) => s.id !== 0 || !dropped(s.payload));
    const out = kept.map((s) => (s.id === 0 && customName(s.payload) === "name" ? { id: 0, payload: this.nameSection(s.payload, code.names) } : s));
    return { wasm: assemble(this.wasm, out, rebuilt), globals: exported.globals, depth: exported.depth, restartable: this.fast_of.size, counted: this.counted, reach: this.reach() };
  }

  /** Which calls of the written module can unwind (see {@link SafePoints.reach}). */
  reach(): UnwindReach {
    const can = this.graph.unwinding(this.polled);
    const copies = this.imported + this.added_imports + this.defined;
    const originals = this.info.types.length;
    return {
      function: (index) => {
        if (index < this.imported) return this.graph.reaches(index);
        if (index === this.poll) return true;
        if (index < this.imported + this.added_imports) return false;
        if (index < copies) return can.defined(index - this.imported - this.added_imports);
        // The copies, two a restartable function: a fast one never unwinds.
        const j = index - copies;
        const f = this.graph.restartable[Math.floor(j / 2)];
        return j % 2 === 1 && f !== undefined && can.defined(f);
      },
      type: (t) => t < originals && can.type(t),
    };
  }

  importSection(payload: Uint8Array | undefined): Uint8Array {
    const r = new Reader(payload ?? new Uint8Array([0]), 0);
    const count = r.u32();
    const w = new Writer();
    w.u32(count + this.added_imports);
    w.bytes(r.bytes.subarray(r.pos));
    const name = (text: string): void => {
      const bytes = new TextEncoder().encode(text);
      w.u32(bytes.length);
      w.bytes(bytes);
    };
    const answer = this.typeIndex({ params: [], results: [I32] });
    const imports = [this.options.poll, this.options.restart_poll].slice(0, this.added_imports);
    for (const imp of imports) {
      name(imp.module);
      name(imp.name);
      w.byte(0);
      w.u32(answer);
    }
    return w.done().slice();
  }

  functionSection(payload: Uint8Array | undefined, types: number[]): Uint8Array {
    const r = new Reader(payload ?? new Uint8Array([0]), 0);
    const count = r.u32();
    const w = new Writer();
    w.u32(count + types.length);
    w.bytes(r.bytes.subarray(r.pos));
    for (const t of types) w.u32(t);
    return w.done().slice();
  }

  typeSection(payload: Uint8Array | undefined): Uint8Array {
    const r = new Reader(payload ?? new Uint8Array([0]), 0);
    const count = r.u32();
    const w = new Writer();
    w.u32(count + this.new_types.length);
    w.bytes(r.bytes.subarray(r.pos));
    for (const t of this.new_types) {
      w.byte(0x60);
      w.u32(t.params.length);
      for (const p of t.params) w.byte(p);
      w.u32(t.results.length);
      for (const x of t.results) w.byte(x);
    }
    return w.done().slice();
  }

  /** The global section with `ref.func` renumbered and the countdown, the flag and the depth counters added; which globals are mutable. */
  globalSection(payload: Uint8Array | undefined, imports: Uint8Array | undefined, rebuilt: Map<number, Uint8Array>): { mutable: { index: number; type: number }[] } {
    const mutable: { index: number; type: number }[] = [];
    let index = 0;
    if (imports !== undefined) {
      const r = new Reader(imports, 0);
      for (let n = r.u32(); n > 0; n -= 1) {
        const module = r.text();
        const field = r.text();
        const kind = r.byte();
        if (kind === 0) r.skipLeb();
        else if (kind === 1) {
          skipValType(r);
          skipLimits(r);
        } else if (kind === 2) throw new UnwindUnsupported("an imported memory");
        else if (kind === 3) {
          skipValType(r);
          if (r.byte() === 1) throw new InstrumentError("ERR_INSTRUMENT_UNSUPPORTED", `imported mutable global ${module}.${field} cannot be captured`);
          index += 1;
        } else if (kind === 4) {
          r.skip(1);
          r.skipLeb();
        } else throw new UnwindUnsupported(`import kind ${kind}`);
      }
    }
    const r = new Reader(payload ?? new Uint8Array([0]), 0);
    const count = r.u32();
    const w = new Writer();
    const added = 2 + this.depth_of.size;
    w.u32(count + added + this.carriers.length);
    for (let i = 0; i < count; i += 1) {
      const at = r.pos;
      const type = r.bytes[r.pos] as number;
      skipValType(r);
      w.bytes(r.bytes.subarray(at, r.pos));
      const mut = r.byte();
      w.byte(mut);
      if (mut === 1) {
        if (!KINDS.has(type as typeof I32)) throw new InstrumentError("ERR_INSTRUMENT_UNSUPPORTED", `mutable global ${index} has a type that cannot be captured`);
        mutable.push({ index, type });
      }
      this.constExpr(r, w);
      index += 1;
    }
    const i32Global = (value: number): void => {
      w.bytes(new Uint8Array([I32, 0x01, OP.i32_const]));
      w.s32(value);
      w.byte(OP.end);
    };
    i32Global(this.options.budget);
    for (let k = 1; k < added; k += 1) i32Global(0);
    for (const t of this.carriers) {
      w.bytes(new Uint8Array([t, 0x01]));
      zero(w, t);
      w.byte(OP.end);
    }
    rebuilt.set(6, w.done().slice());
    return { mutable };
  }

  /** The export section, renumbered, with the mutable globals, the depth counters and the memory added. */
  exportSection(payload: Uint8Array | undefined, mutable: { index: number; type: number }[], rebuilt: Map<number, Uint8Array>): Pick<SafePoints, "globals" | "depth"> {
    const r = new Reader(payload ?? new Uint8Array([0]), 0);
    const count = r.u32();
    const body = new Writer();
    let memory: "named" | "other" | "none" = "none";
    const names = new Set<string>();
    for (let i = 0; i < count; i += 1) {
      const at = r.pos;
      const name = r.text();
      names.add(name);
      body.bytes(r.bytes.subarray(at, r.pos));
      const kind = r.byte();
      const index = r.u32();
      body.byte(kind);
      body.u32(kind === 0 ? this.remap(index) : index);
      if (kind === 2 && memory !== "named") memory = name === "memory" ? "named" : "other";
    }
    let added = 0;
    const add = (name: string, kind: number, index: number): void => {
      if (names.has(name)) throw new UnwindUnsupported(`the module already exports a "${name}"`);
      names.add(name);
      const bytes = new TextEncoder().encode(name);
      body.u32(bytes.length);
      body.bytes(bytes);
      body.byte(kind);
      body.u32(index);
      added += 1;
    };
    const globals: SafePoints["globals"] = [];
    for (const { index, type } of mutable) {
      const export_name = `${this.options.global_prefix}${index}`;
      add(export_name, 3, index);
      globals.push({ export_name, type: KINDS.get(type as typeof I32) as "i32" });
    }
    const depth: SafePoints["depth"] = [];
    let j = 0;
    for (const [f, global] of this.depth_of) {
      const export_name = `${this.options.global_prefix}__ferry_depth_${j}`;
      j += 1;
      add(export_name, 3, global);
      globals.push({ export_name, type: "i32" });
      const own = this.imported + this.added_imports + f;
      depth.push({ export_name, function: own });
    }
    // Captured like the module's own: a guest stopped at a slice's poll finds its invariants there when it goes on.
    this.carriers.forEach((type, k) => {
      const export_name = `${this.options.global_prefix}__ferry_carry_${k}`;
      add(export_name, 3, this.flag + 1 + this.depth_of.size + k);
      globals.push({ export_name, type: KINDS.get(type as typeof I32) as "i32" });
    });
    if (memory !== "named") add("memory", 2, 0);
    const w = new Writer();
    w.u32(count + added);
    w.bytes(body.done());
    rebuilt.set(7, w.done().slice());
    return { globals, depth };
  }

  elementSection(payload: Uint8Array): Uint8Array {
    const r = new Reader(payload, 0);
    const w = new Writer();
    const count = r.u32();
    w.u32(count);
    const copy = (skip: () => void): void => {
      const at = r.pos;
      skip();
      w.bytes(r.bytes.subarray(at, r.pos));
    };
    for (let i = 0; i < count; i += 1) {
      const flags = r.u32();
      w.u32(flags);
      if (flags > 7) throw new UnwindUnsupported(`element segment flags ${flags}`);
      if (flags === 2 || flags === 6) copy(() => r.skipLeb()); // table index
      if ((flags & 1) === 0) this.constExpr(r, w); // offset of an active segment
      if ((flags & 3) !== 0) copy(() => ((flags & 4) === 0 ? r.skip(1) : skipValType(r))); // element kind or type
      const n = r.u32();
      w.u32(n);
      for (let k = 0; k < n; k += 1) {
        if ((flags & 4) === 0) w.u32(this.remap(r.u32()));
        else this.constExpr(r, w);
      }
    }
    return w.done().slice();
  }

  /** Copies a constant expression from `r` to `w`, renumbering `ref.func`. */
  constExpr(r: Reader, w: Writer): void {
    for (;;) {
      const at = r.pos;
      const op = r.byte();
      if (op === OP.ref_func) {
        w.byte(op);
        w.u32(this.remap(r.u32()));
        continue;
      }
      if (op === OP.end) {
        w.byte(op);
        return;
      }
      if (op === OP.i32_const || op === OP.i64_const || op === OP.global_get) r.skipLeb();
      else if (op === 0xd0) {
        const t = r.bytes[r.pos] as number;
        if (t === REF_NULLABLE || t === REF) throw new UnwindUnsupported("a typed reference in a constant expression");
        r.skipLeb();
      } else if (op === OP.f32_const) r.skip(4);
      else if (op === OP.f64_const) r.skip(8);
      else if ((op >= 0x6a && op <= 0x6c) || (op >= 0x7c && op <= 0x7e)) {
        // extended constant arithmetic: no immediates
      } else if (op === 0xfd && r.u32() === 12) r.skip(16);
      else throw new UnwindUnsupported(`a constant expression holds opcode 0x${op.toString(16)}`);
      w.bytes(r.bytes.subarray(at, r.pos));
    }
  }

  /** The name section with function indices renumbered, names for the functions added, and label names (which no longer match) dropped. */
  nameSection(payload: Uint8Array, added: { index: number; of: number; suffix: string }[]): Uint8Array {
    try {
      const r = new Reader(payload, 0);
      const w = new Writer();
      const header = r.pos;
      r.name();
      w.bytes(r.bytes.subarray(header, r.pos));
      const sub = (id: number, write: (s: Writer) => void): void => {
        const s = new Writer();
        write(s);
        w.byte(id);
        w.u32(s.len);
        w.bytes(s.done());
      };
      while (r.pos < payload.length) {
        const id = r.byte();
        const size = r.u32();
        const end = r.pos + size;
        const text = (s: Writer): void => {
          const at = r.pos;
          r.name();
          s.bytes(r.bytes.subarray(at, r.pos));
        };
        if (id === 1) {
          const n = r.u32();
          const names: { index: number; bytes: Uint8Array }[] = [];
          for (let k = 0; k < n; k += 1) {
            const index = this.remap(r.u32());
            const s = new Writer();
            text(s);
            names.push({ index, bytes: s.done().slice() });
          }
          // A copy is named after its original: `name$ferry_fast`.
          const by_index = new Map(names.map((x) => [x.index, new Reader(x.bytes, 0).text()]));
          for (const a of added) names.push({ index: a.index, bytes: nameBytes(`${by_index.get(a.of) ?? `f${a.of}`}${a.suffix}`) });
          names.sort((x, y) => x.index - y.index);
          sub(1, (s) => {
            s.u32(names.length);
            for (const x of names) {
              s.u32(x.index);
              s.bytes(x.bytes);
            }
          });
        } else if (id === 2) {
          sub(2, (s) => {
            const n = r.u32();
            s.u32(n);
            for (let k = 0; k < n; k += 1) {
              s.u32(this.remap(r.u32()));
              const m = r.u32();
              s.u32(m);
              for (let q = 0; q < m; q += 1) {
                s.u32(r.u32());
                text(s);
              }
            }
          });
        } else if (id !== 3) {
          w.byte(id);
          w.u32(size);
          w.bytes(payload.subarray(r.pos, end));
        }
        r.pos = end;
      }
      return w.done().slice();
    } catch (err: unknown) {
      if (err instanceof RangeError) return nameBytesSection();
      throw err;
    }
  }

  /** The code section, and the type of each function appended, and names for them. */
  code(payload: Uint8Array | undefined): { section: Uint8Array; types: number[]; names: { index: number; of: number; suffix: string }[] } {
    const originals: Uint8Array[] = [];
    if (payload !== undefined) {
      const r = new Reader(payload, 0);
      const count = r.u32();
      for (let i = 0; i < count; i += 1) {
        const size = r.u32();
        originals.push(payload.subarray(r.pos, r.pos + size));
        r.pos += size;
      }
    }
    // A restartable function keeps its calls (its wrapper counts them); one on a cycle is no leaf.
    this.leaves = originals.map((body, f) => (this.fast_of.has(f) || this.depth_of.has(f) ? undefined : leafOf(body, typeOf(this.info, this.imported + f))));
    const types: number[] = [];
    const names: { index: number; of: number; suffix: string }[] = [];
    // Bodies go straight into the section: a large module has hundreds of thousands.
    const w = new Writer((payload?.length ?? 0) + (payload?.length ?? 0) / 2 + 64);
    w.u32(originals.length + 2 * this.graph.restartable.length);
    const put = (body: Uint8Array): void => {
      w.u32(body.length);
      w.bytes(body);
    };
    const scratch = new Writer();
    originals.forEach((body, f) => {
      const index = this.imported + f;
      const type = typeOf(this.info, index);
      const fast = this.fast_of.get(f);
      if (fast !== undefined) {
        put(restartWrapper(this, type, fast));
        return;
      }
      const depth = this.depth_of.get(f);
      if (depth === undefined && this.graph.scanned.bodies[f]?.loops === false && !this.#callsRestartable(f)) {
        // No loop and no recursion: nothing to add, only its calls to renumber (most of a large module).
        renumbered(this, body, scratch);
        put(scratch.done());
        return;
      }
      const writer = new BodyWriter(this, body, type, "plain");
      put(writer.write(depth, this.graph.entry_counted[f] === 1));
      if (writer.polls) this.polled[f] = 1;
    });
    for (const f of this.graph.restartable) {
      const index = this.imported + f;
      const type = typeOf(this.info, index);
      const body = originals[f] as Uint8Array;
      const fast = this.fast_of.get(f) as number;
      const slow = new BodyWriter(this, body, type, "slow");
      put(new BodyWriter(this, body, type, "fast").write(undefined));
      put(slow.write(undefined));
      // The wrapper, where the graph has the function, calls the slow copy.
      if (slow.polls) this.polled[f] = 1;
      types.push(this.info.func_types[index] as number, this.info.func_types[index] as number);
      const of = this.remap(index);
      names.push({ index: fast, of, suffix: "$ferry_fast" }, { index: fast + 1, of, suffix: "$ferry_slow" });
    }
    return { section: w.done().slice(), types, names };
  }
}

/**
 * `body` with its function indices renumbered and every other byte as it
 * was, into `w` (emptied first): the parts between the immediates of its
 * calls and `ref.func`s are copied whole.
 */
function renumbered(rw: Rewrite, body: Uint8Array, w: Writer): void {
  const r = new Reader(body, 0);
  for (let n = r.u32(); n > 0; n -= 1) {
    r.skipLeb();
    skipValType(r);
  }
  w.len = 0;
  let copied = 0;
  while (r.pos < body.length) {
    const op = r.byte();
    if (op === OP.call || op === OP.return_call || op === OP.ref_func) {
      const at = r.pos;
      const index = r.u32();
      w.bytes(body.subarray(copied, at));
      w.u32(rw.remap(index));
      copied = r.pos;
    } else if (op === OP.call_indirect || op === OP.return_call_indirect) {
      r.skipLeb();
      r.skipLeb();
    } else if (!skipImmediates(r, op)) throw new UnwindUnsupported(`opcode 0x${op.toString(16)}`);
  }
  w.bytes(body.subarray(copied));
}

function typeOf(info: ModuleInfo, index: number): FuncType {
  return info.types[info.func_types[index] as number] as FuncType;
}

/** Custom sections that describe the code's bytes (DWARF, source maps): stale once the code moves. */
function dropped(payload: Uint8Array): boolean {
  const name = customName(payload);
  return name.startsWith(".debug_") || name === "sourceMappingURL" || name === "external_debug_info";
}

function customName(payload: Uint8Array): string {
  try {
    return new Reader(payload, 0).text();
  } catch {
    // A custom section whose name runs past its end: not one this pass reads or drops; it is kept as it is.
    return "";
  }
}

function nameBytes(text: string): Uint8Array {
  const bytes = new TextEncoder().encode(text);
  const w = new Writer();
  w.u32(bytes.length);
  w.bytes(bytes);
  return w.done().slice();
}

/** An empty name section (for one too damaged to renumber). */
function nameBytesSection(): Uint8Array {
  return nameBytes("name");
}


/** Local declarations: `types`, one group per run of one type. */
function localGroups(w: Writer, types: readonly number[]): void {
  const groups = typeRuns(types);
  w.u32(groups.length);
  for (const g of groups) {
    w.u32(g.count);
    w.byte(g.type);
  }
}

/** `countdown(weight)`: takes `weight` (written by `weight`) off the budget, and asks the host for the next where it runs out. */
function countdown(rw: Rewrite, w: Writer, weight: () => void, mode: Mode, results: readonly number[]): void {
  w.byte(OP.global_get);
  w.u32(rw.budget);
  weight();
  w.byte(OP.i32_sub);
  w.byte(OP.global_set);
  w.u32(rw.budget);
  w.byte(OP.global_get);
  w.u32(rw.budget);
  w.bytes(new Uint8Array([OP.i32_const, 0, OP.i32_le_s, OP.if, EMPTY_BLOCK]));
  w.byte(OP.call);
  w.u32(mode === "fast" ? rw.restart_poll : rw.poll);
  w.byte(OP.global_set);
  w.u32(rw.budget);
  if (mode === "fast") {
    // The host answers 0 when it wants a safe point: the fast copy leaves, and its wrapper runs the slow one.
    w.byte(OP.global_get);
    w.u32(rw.budget);
    w.bytes(new Uint8Array([OP.i32_const, 0, OP.i32_le_s, OP.if, EMPTY_BLOCK, OP.i32_const, 1, OP.global_set]));
    w.u32(rw.flag);
    for (const t of results) zero(w, t);
    w.bytes(new Uint8Array([OP.return, OP.end]));
  }
  w.byte(OP.end);
}

/** `depth += delta` on global `depth`. */
function bump(w: Writer, depth: number, delta: 1 | -1): void {
  w.byte(OP.global_get);
  w.u32(depth);
  w.bytes(new Uint8Array([OP.i32_const, 1, delta === 1 ? OP.i32_add : OP.i32_sub, OP.global_set]));
  w.u32(depth);
}

/** The body of a restartable function's wrapper: the fast copy, and the slow one when the fast one left. */
function restartWrapper(rw: Rewrite, type: FuncType, fast: number): Uint8Array {
  const w = new Writer();
  localGroups(w, type.results);
  runAgain(
    w,
    rw,
    fast,
    type.params.map((_, i) => i),
    type.results.length > 0 ? type.params.length : -1,
  );
  w.byte(OP.end);
  return w.done().slice();
}

/**
 * The wrapper's logic, with the arguments in locals `args` and the result
 * (if any) going through local `result`: the fast copy; if it left, the
 * flag cleared and the slow copy with the same arguments; the result on the
 * stack. The wrapper's body, and a call to it written in place
 * (`BodyWriter`).
 */
function runAgain(w: Writer, rw: Rewrite, fast: number, args: readonly number[], result: number): void {
  const call = (index: number): void => {
    for (const a of args) {
      w.byte(OP.local_get);
      w.u32(a);
    }
    w.byte(OP.call);
    w.u32(index);
    if (result >= 0) {
      w.byte(OP.local_set);
      w.u32(result);
    }
  };
  call(fast);
  w.byte(OP.global_get);
  w.u32(rw.flag);
  w.bytes(new Uint8Array([OP.if, EMPTY_BLOCK, OP.i32_const, 0, OP.global_set]));
  w.u32(rw.flag);
  call(fast + 1);
  w.byte(OP.end);
  if (result >= 0) {
    w.byte(OP.local_get);
    w.u32(result);
  }
}

/** Where an original label's branches go in the output, and how many `end`s close it there. */
interface Label {
  target: number;
  closes: number;
}

/** One function body, read into instructions and written with its safe points. */
class BodyWriter {
  readonly declared: number[] = [];
  readonly starts: number[] = [];
  readonly ops: number[] = [];
  /** Per structure opening: its `end` (or `delegate`). */
  readonly match = new Map<number, number>();
  /** Per loop opening: the branches to it. */
  readonly targeted = new Map<number, number>();
  /** Per structure opening: the structure it is in (-1 for the body's top level). */
  readonly #parent = new Map<number, number>();
  readonly #reader: Reader;

  // The writing's state.
  w: Writer;
  labels: Label[] = [];
  /** Labels open in the output, the function's own included. */
  open = 0;
  extra_locals: number[] = [];
  slice_counter = -1;
  /** The i32 local a counted loop's slice reads whether it is a full one from. */
  full_slice = -1;
  /** Whether the body was given a poll that can unwind (a countdown not in a fast copy). */
  polls = false;
  /** The depth counter of a counted body: its returns leave through `$exit`. */
  depth: number | undefined;
  /** Whether the body counts itself on entry and on its way out (one of the graph's feedback functions). */
  entry_counted = false;
  /** Whether the body holds a call of any kind (the polls this pass writes aside; the reading refuses `call_ref`). */
  #calls = false;
  /** Per callee type, the locals of the restartable calls written in place ({@link BodyWriter.#runAgain}). */
  readonly #call_locals = new Map<string, { args: number[]; result: number }>();
  /** Per leaf written in place (`_inline.ts`), the first of its locals here. */
  readonly #leaf_locals = new Map<number, number>();
  /** Locals added here for leaves so far (at most {@link LEAF_LOCALS_PER_CALLER_MAX}). */
  #leaf_local_count = 0;

  constructor(
    readonly rw: Rewrite,
    readonly body: Uint8Array,
    readonly type: FuncType,
    readonly mode: Mode,
  ) {
    const r = new Reader(body, 0);
    // Sized for the body and what polls add (growing from a few bytes copied it a dozen times: most of a large module's garbage).
    this.w = new Writer(body.length + (body.length >> 1) + 64);
    this.#reader = new Reader(body, 0);
    for (let n = r.u32(); n > 0; n -= 1) {
      const count = r.u32();
      const t = r.bytes[r.pos] as number;
      skipValType(r);
      if (t === REF || t === REF_NULLABLE) throw new UnwindUnsupported("a typed-reference local");
      for (let k = 0; k < count; k += 1) this.declared.push(t);
    }
    const stack: number[] = [];
    const labels: number[] = [-1];
    while (r.pos < body.length) {
      const i = this.ops.length;
      this.starts.push(r.pos);
      const op = r.byte();
      this.ops.push(op);
      if (op === OP.try_table) throw new UnwindUnsupported("try_table");
      if (op === OP.br || op === OP.br_if || op === OP.br_on_null || op === OP.br_on_non_null) this.#branch(labels, r.u32());
      else if (op === OP.br_table) {
        for (let n = r.u32(); n >= 0; n -= 1) this.#branch(labels, r.u32());
      } else if (op === OP.call || op === OP.return_call || op === OP.ref_func) {
        if (op !== OP.ref_func) this.#calls = true;
        r.skipLeb();
      } else if (op === OP.call_indirect || op === OP.return_call_indirect) {
        this.#calls = true;
        r.skipLeb();
        r.skipLeb();
      } else if (!skipImmediates(r, op)) throw new UnwindUnsupported(`opcode 0x${op.toString(16)}`);
      if (op === OP.block || op === OP.loop || op === OP.if || op === OP.try) {
        this.#parent.set(i, stack[stack.length - 1] ?? -1);
        stack.push(i);
        labels.push(i);
      } else if (op === OP.end || op === OP.delegate) {
        const opening = stack.pop();
        labels.pop();
        if (opening !== undefined) this.match.set(opening, i);
      }
    }
  }

  #branch(labels: number[], depth: number): void {
    const target = labels[labels.length - 1 - depth];
    if (target !== undefined && target >= 0 && this.ops[target] === OP.loop) this.targeted.set(target, (this.targeted.get(target) ?? 0) + 1);
  }

  /** A reader at instruction `i`'s immediates. */
  #at(i: number): Reader {
    // One reader, moved: a body reads thousands of immediates.
    this.#reader.pos = (this.starts[i] as number) + 1;
    return this.#reader;
  }

  #end(i: number): number {
    return i + 1 < this.starts.length ? (this.starts[i + 1] as number) : this.body.length;
  }

  #local(type: number): number {
    this.extra_locals.push(type);
    return this.type.params.length + this.declared.length + this.extra_locals.length - 1;
  }

  /**
   * The body written, its frames counted with global `depth` when given,
   * and with a countdown on entry and on the way out when `entry_counted`.
   */
  write(depth: number | undefined, entry_counted = false): Uint8Array {
    const w = this.w;
    const results = this.type.results;
    this.depth = depth;
    this.entry_counted = depth !== undefined && entry_counted;
    if (this.entry_counted) this.polls = true;
    this.open = 1;
    this.labels = [{ target: 0, closes: 1 }];
    if (depth !== undefined) {
      bump(w, depth, 1);
      if (this.entry_counted) countdown(this.rw, w, () => w.bytes(new Uint8Array([OP.i32_const, 1])), "plain", results);
      w.byte(OP.block);
      this.rw.blockType(w, results);
      this.open = 2;
      // A branch to the function's label, or a return, leaves through $exit.
      this.labels = [{ target: 1, closes: 1 }];
    }
    const last = this.ops.length - 1;
    this.#range(0, last);
    if (depth !== undefined) {
      w.byte(OP.end);
      // The results wait in locals while the frame counts itself out.
      const first = this.type.params.length + this.declared.length + this.extra_locals.length;
      for (const t of results) this.#local(t);
      for (let k = results.length - 1; k >= 0; k -= 1) {
        w.byte(OP.local_set);
        w.u32(first + k);
      }
      this.#leaving(depth);
      results.forEach((_, k) => {
        w.byte(OP.local_get);
        w.u32(first + k);
      });
    }
    w.byte(OP.end);
    const out = new Writer(w.len + 64);
    localGroups(out, [...this.declared, ...this.extra_locals]);
    out.bytes(w.done());
    // A view of a writer of its own, which nothing else writes: the caller copies it into the section.
    return out.done();
  }

  #depthOf(original: number): number {
    const label = this.labels[this.labels.length - 1 - original];
    if (label === undefined) throw new UnwindUnsupported("a branch to no label");
    return this.open - 1 - label.target;
  }

  /** Writes instructions `from` to `to` (excluded). */
  #range(from: number, to: number): void {
    const w = this.w;
    for (let i = from; i < to; i += 1) {
      const op = this.ops[i] as number;
      const start = this.starts[i] as number;
      const end = this.#end(i);
      switch (op) {
        case OP.block:
        case OP.if:
        case OP.try:
          this.labels.push({ target: this.open, closes: 1 });
          this.open += 1;
          w.bytes(this.body.subarray(start, end));
          break;
        case OP.loop:
          i = this.#loop(i);
          break;
        case OP.end: {
          const label = this.labels.pop() as Label;
          for (let k = 0; k < label.closes; k += 1) w.byte(OP.end);
          this.open -= label.closes;
          break;
        }
        case OP.delegate: {
          this.labels.pop();
          this.open -= 1;
          w.byte(op);
          w.u32(this.#depthOf(this.#at(i).u32()));
          break;
        }
        case OP.br:
        case OP.br_if:
        case OP.rethrow:
        case OP.br_on_null:
        case OP.br_on_non_null:
          w.byte(op);
          w.u32(this.#depthOf(this.#at(i).u32()));
          break;
        case OP.br_table: {
          const r = this.#at(i);
          const n = r.u32();
          w.byte(op);
          w.u32(n);
          for (let k = 0; k <= n; k += 1) w.u32(this.#depthOf(r.u32()));
          break;
        }
        case OP.return:
          if (this.depth === undefined) w.byte(op);
          else {
            w.byte(OP.br);
            w.u32(this.open - 1 - 1);
          }
          break;
        case OP.call:
          this.#call(this.#at(i).u32());
          break;
        case OP.return_call:
        case OP.return_call_indirect:
          // The frame leaves for the callee's: counted back first (the operands stay on the stack).
          if (this.depth !== undefined) this.#leaving(this.depth);
          if (op === OP.return_call_indirect) {
            w.bytes(this.body.subarray(start, end));
            break;
          }
          w.byte(op);
          w.u32(this.rw.remap(this.#at(i).u32()));
          break;
        case OP.ref_func:
          w.byte(op);
          w.u32(this.rw.remap(this.#at(i).u32()));
          break;
        default:
          w.bytes(this.body.subarray(start, end));
      }
    }
  }

  /** What a counted frame does on its way out: a countdown, and the depth down. */
  #leaving(depth: number): void {
    if (this.entry_counted) countdown(this.rw, this.w, () => this.w.bytes(new Uint8Array([OP.i32_const, 1])), "plain", this.type.results);
    bump(this.w, depth, -1);
  }

  #call(callee: number): void {
    const { w, rw } = this;
    const f = callee - rw.imported;
    const leaf = f >= 0 ? rw.leaves[f] : undefined;
    let base = leaf === undefined ? undefined : this.#leaf_locals.get(f);
    // Not in a body on a cycle: its locals are in every frame of a recursion, and a deep one would need more stack than it does anywhere else.
    if (leaf !== undefined && base === undefined && this.depth === undefined && this.#leaf_local_count + leaf.params.length + leaf.locals.length <= LEAF_LOCALS_PER_CALLER_MAX) {
      base = this.type.params.length + this.declared.length + this.extra_locals.length;
      for (const t of [...leaf.params, ...leaf.locals]) this.#local(t);
      this.#leaf_locals.set(f, base);
      this.#leaf_local_count += leaf.params.length + leaf.locals.length;
    }
    if (leaf !== undefined && base !== undefined) {
      writeLeaf(w, leaf, base);
      return;
    }
    const fast = f >= 0 ? rw.fast_of.get(f) : undefined;
    if (fast !== undefined && this.mode === "plain") {
      const type = typeOf(rw.info, callee);
      if (type.results.length <= 1) {
        this.#runAgain(type, fast);
        return;
      }
    }
    w.byte(OP.call);
    if (fast === undefined || this.mode === "plain") {
      w.u32(rw.remap(callee));
      return;
    }
    if (this.mode === "slow") {
      w.u32(fast + 1);
      return;
    }
    w.u32(fast);
    // A fast callee that left: leave too, at once, before its result is used.
    w.byte(OP.global_get);
    w.u32(rw.flag);
    w.bytes(new Uint8Array([OP.if, EMPTY_BLOCK]));
    for (const t of this.type.results) zero(w, t);
    w.bytes(new Uint8Array([OP.return, OP.end]));
  }

  /**
   * A restartable function's wrapper ({@link runAgain}) written in
   * place of a call to it: the arguments go to locals, for the run again in
   * the slow copy. One call fewer per call (flite's `strcmp`, called from
   * plain functions), and the unwinding pass guards only the slow copy's
   * call, not the fast one's. The locals are shared by the calls of one
   * type: each call's are set and read before another's are set.
   */
  #runAgain(type: FuncType, fast: number): void {
    const w = this.w;
    const key = `${type.params.join(",")}>${type.results.join(",")}`;
    let locals = this.#call_locals.get(key);
    if (locals === undefined) {
      locals = { args: type.params.map((t) => this.#local(t)), result: type.results[0] === undefined ? -1 : this.#local(type.results[0]) };
      this.#call_locals.set(key, locals);
    }
    const { args, result } = locals;
    for (let k = args.length - 1; k >= 0; k -= 1) {
      w.byte(OP.local_set);
      w.u32(args[k] as number);
    }
    runAgain(w, this.rw, fast, args, result);
  }

  /** Whether a call to `callee` (input index) can reach a safe point, as seen from this copy. */
  #reaches(callee: number): boolean {
    const f = callee - this.rw.imported;
    if (this.mode === "fast" && this.rw.fast_of.has(f)) return false;
    return this.rw.graph.reaches(callee);
  }

  /** Type of local `index`. */
  #localType(index: number): number {
    const params = this.type.params;
    return index < params.length ? (params[index] as number) : (this.declared[index - params.length] as number);
  }

  /**
   * Before a slice's countdown: stores the loop's invariants (the locals it
   * reads and never writes, up to {@link CARRIED_MAX}, in a loop of at most
   * {@link LOOP_SCAN_MAX} instructions) into globals, which {@link #land}
   * reads back into the same locals after it.
   *
   * Why: the countdown may call the host, and V8 keeps no value in a
   * register across a call. A value read in the loop and live across the
   * poll was spilled to the stack, and the loop then read it from there at
   * every iteration: in the sieve's marking loop, its segment's start (1.24–
   * 1.29 times the original's time). Read back from a global after the poll,
   * it is a new value that starts there, which the engine keeps in a
   * register through the loop; the one it replaces ends before the call.
   * Two memory accesses a slice for each, instead of one an iteration. (V8's
   * own values are out of reach: the stack limit's address is still read
   * from the stack, once per group of iterations V8 unrolls.)
   *
   * A guest unwound at the poll finds them again when it goes on: the
   * globals are exported and captured like its own.
   */
  #carry(i: number, end: number): { local: number; global: number }[] {
    if (end - i > LOOP_SCAN_MAX) return [];
    // In the order first read (a Set keeps it): the first CARRIED_MAX are taken.
    const reads = new Set<number>();
    const written = new Set<number>();
    for (let k = i + 1; k < end; k += 1) {
      const op = this.ops[k] as number;
      if (op !== OP.local_get && op !== OP.local_set && op !== OP.local_tee) continue;
      const index = this.#at(k).u32();
      if (op === OP.local_get) reads.add(index);
      else written.add(index);
    }
    const slots = new Map<number, number>();
    const carried: { local: number; global: number }[] = [];
    for (const local of reads) {
      if (carried.length === CARRIED_MAX) break;
      const t = this.#localType(local);
      if (written.has(local) || !KINDS.has(t as typeof I32)) continue;
      const slot = slots.get(t) ?? 0;
      slots.set(t, slot + 1);
      carried.push({ local, global: this.rw.carrier(t, slot) });
    }
    for (const { local, global } of carried) {
      this.w.byte(OP.local_get);
      this.w.u32(local);
      this.w.byte(OP.global_set);
      this.w.u32(global);
    }
    return carried;
  }

  /** After a slice's countdown: the invariants {@link #carry} stored, read back. */
  #land(carried: readonly { local: number; global: number }[]): void {
    for (const { local, global } of carried) {
      this.w.byte(OP.global_get);
      this.w.u32(global);
      this.w.byte(OP.local_set);
      this.w.u32(local);
    }
  }

  /** The frame's count of back-edges since its last visit of a countdown. */
  #sliceCounter(): number {
    if (this.slice_counter < 0) this.slice_counter = this.#local(I32);
    return this.slice_counter;
  }

  /**
   * The visit of a slice's countdown, taking `weight` off the budget with
   * the loop from `i` to `end` carrying its invariants across; with `n`,
   * the frame's count then starts again, and a `guarded` visit is made only
   * once that count makes a slice (`if (n >= LOOP_SLICE)`).
   */
  #visit(i: number, end: number, weight: () => void, n?: number, guarded = false): void {
    const w = this.w;
    if (guarded && n !== undefined) {
      w.byte(OP.local_get);
      w.u32(n);
      w.byte(OP.i32_const);
      w.s32(LOOP_SLICE);
      w.bytes(new Uint8Array([OP.i32_ge_u, OP.if, EMPTY_BLOCK]));
    }
    const carried = this.#carry(i, end);
    countdown(this.rw, w, weight, this.mode, this.type.results);
    this.#land(carried);
    if (n !== undefined) {
      w.bytes(new Uint8Array([OP.i32_const, 0, OP.local_set]));
      w.u32(n);
    }
    if (guarded && n !== undefined) w.byte(OP.end);
  }

  /**
   * Whether the loop at `i` may skip its countdown on entry (visiting it
   * only once its frame has counted a slice's worth): when the frame is
   * counted on entry (one of the graph's feedback functions), or when the
   * loop is inside another loop of the frame, whose iterations count, so
   * that it is entered at most once an iteration of that loop. (A loop
   * with a counter in a function that calls nothing skips it too: see
   * {@link BodyWriter.#loop}.)
   */
  #guarded(i: number): boolean {
    if (this.entry_counted) return true;
    for (let j = this.#parent.get(i) ?? -1; j >= 0; j = this.#parent.get(j) ?? -1) {
      if (this.ops[j] === OP.loop && (this.targeted.get(j) ?? 0) > 0) return true;
    }
    return false;
  }

  /** Writes the loop opening at `i`; returns the last instruction it consumed. */
  #loop(i: number): number {
    const w = this.w;
    const end = this.match.get(i);
    const start = this.starts[i] as number;
    const opening = this.body.subarray(start, this.#end(i));
    const plain = (): number => {
      this.labels.push({ target: this.open, closes: 1 });
      this.open += 1;
      w.bytes(opening);
      return i;
    };
    if (end === undefined || (this.targeted.get(i) ?? 0) === 0 || this.#bounded(i, end)) return plain();
    if (this.mode !== "fast") this.polls = true;
    const counted = this.#counted(i, end);
    if (counted !== undefined) return this.#folded(i, end, counted);
    const n = this.#sliceCounter();
    const unroll = this.#unrollable(i, end);
    const copies = unroll ? UNROLL_COPIES : 1;
    // The slice: counted down by the back-edges since the last visit, and this visit.
    // In a function that calls nothing, too, the visit waits for a slice's worth: a call of such
    // a leaf leaves at most LOOP_SLICE - 1 back-edges uncounted, as an inner loop does an
    // iteration of the loop around it, and where it is called from a loop, that loop's
    // iterations count. What a visit on entry does besides (stopping a chain of calls from
    // multiplying what each frame leaves uncounted) needs a call below it. In flite, `strcmp`'s
    // fast copy, whose loop is entered for a few characters a call. (A counted loop still
    // visits on entry there: its slices that end before a full one charge a unit each, so
    // waiting for a slice's worth could let two slices' iterations pass between two polls.)
    w.bytes(opening);
    this.open += 1;
    this.#visit(i, end, () => {
      w.byte(OP.local_get);
      w.u32(n);
      w.bytes(new Uint8Array([OP.i32_const, 1, OP.i32_add]));
    }, n, this.#guarded(i) || !this.#calls);
    w.bytes(opening);
    this.open += 1;
    // A back-edge (or a run of copies) counts its iterations.
    w.byte(OP.local_get);
    w.u32(n);
    w.byte(OP.i32_const);
    w.s32(copies);
    w.bytes(new Uint8Array([OP.i32_add, OP.local_tee]));
    w.u32(n);
    w.byte(OP.i32_const);
    w.s32(LOOP_SLICE);
    w.bytes(new Uint8Array([OP.i32_ge_u, OP.br_if, 1]));
    if (!unroll) {
      this.labels.push({ target: this.open - 1, closes: 2 });
      return i;
    }
    // Falling off a copy leaves the loop.
    this.#copies(() => this.#range(i + 1, end));
    w.bytes(new Uint8Array([OP.end, OP.end]));
    this.open -= 2;
    return end;
  }

  /**
   * `UNROLL_COPIES` copies of one iteration (`write`) in the loop just
   * opened, inside a block `$exit`: a branch back to the loop, in a copy,
   * goes on to the next copy (the copy's own block), the last copy back to
   * the loop, and a copy that falls off its end leaves by `$exit`. Closes
   * `$exit`, not the loop.
   */
  #copies(write: () => void): void {
    const w = this.w;
    w.bytes(new Uint8Array([OP.block, EMPTY_BLOCK]));
    this.open += 1;
    for (let k = 0; k < UNROLL_COPIES; k += 1) {
      w.bytes(new Uint8Array([OP.block, EMPTY_BLOCK]));
      this.open += 1;
      this.labels.push({ target: this.open - 1, closes: 0 });
      write();
      this.labels.pop();
      w.bytes(new Uint8Array([OP.br, 1, OP.end]));
      this.open -= 1;
    }
    w.bytes(new Uint8Array([OP.br, 1, OP.end]));
    this.open -= 1;
  }

  /**
   * Writes the counted loop from `i` to `end` (see {@link Counted}): its
   * slices end where its own test would go on, at a bound each slice sets,
   * so its iterations carry no counter. A loop tested at its top is turned
   * around first (its test once before it, then after its body), so both
   * shapes are written as one:
   *
   *     loop $slice
   *       full = a slice's iterations left, the step good
   *       countdown(full ? LOOP_SLICE + 1 : 1)
   *       lim = full ? i + LOOP_SLICE * step : (in range, no wrap ? LAST : NEVER)
   *       loop $L BODY (br_if $L (x INNER lim)) end      ;; the loop, its bound replaced
   *       br_if $slice (x CMP K)                          ;; its own test: a slice ended, not the loop
   *     end
   *
   * A full slice runs `LOOP_SLICE` iterations and no value wraps in it (its
   * bound is short of K). LAST is the loop's own bound as a strict
   * comparison's, taken only when the induction cannot wrap on its way past
   * it, so that slice ends within `LOOP_SLICE` iterations too. Anything else
   * (out of range, a step the wrong way, a bound at the type's edge) runs
   * one iteration against a bound no value passes (NEVER), and the next
   * slice looks again. For `!=` with a step of m: full when K is more than a
   * slice of steps away (or exactly a whole turn), LAST when K is fewer
   * steps away, and one step when the distance does not divide by m.
   */
  #folded(i: number, end: number, c: Counted): number {
    const { w, body, starts } = this;
    const bits = c.bits;
    const T = bits === 32 ? I32 : I64;
    const base = bits === 32 ? 0x46 : 0x51;
    const add = bits === 32 ? OP.i32_add : I64_ADD;
    const sub = bits === 32 ? OP.i32_sub : I64_SUB;
    const S = BigInt(LOOP_SLICE);
    const relation = c.relation;
    const { signed, strict, below } = readRelation(relation);
    const constantStep = c.step.constant;
    // The constant step's size (`!=` has one: `stepFits`).
    const m = constantStep === undefined ? undefined : constantStep < 0n ? -constantStep : constantStep;
    // Toward K: up for < and <=, down for > and >=; for != the way its step goes.
    const up = relation === NE ? (constantStep as bigint) > 0n : below;
    const max = signed ? (1n << BigInt(bits - 1)) - 1n : (1n << BigInt(bits)) - 1n;
    const min = signed ? -(1n << BigInt(bits - 1)) : 0n;
    if (this.full_slice < 0) this.full_slice = this.#local(I32);
    const full = this.full_slice;
    const lim = this.#local(T);
    // A step read from a local: its size toward K, which the slice checks is positive and small.
    const magnitude = constantStep === undefined ? this.#local(T) : -1;
    this.rw.counted += 1;
    const op = (o: number): void => w.byte(o);
    const get = (local: number): void => {
      w.byte(OP.local_get);
      w.u32(local);
    };
    const constant = (value: bigint): void => {
      if (bits === 32) {
        w.byte(OP.i32_const);
        w.s32(Number(BigInt.asIntN(32, value)));
      } else {
        w.byte(OP.i64_const);
        w.s64(value);
      }
    };
    const bound = (): void => {
      if (c.bound === undefined) constant(0n);
      else w.bytes(body.subarray(starts[c.bound] as number, this.#end(c.bound)));
    };
    const induction = (): void => get(c.induction);
    // `x relation K` on the induction as it is.
    const inRange = (): void => {
      induction();
      bound();
      op(base + relation);
    };
    // The loop's own test, as the module wrote it (an implicit `!= 0` as `!=`).
    const test = (): void => {
      if (c.bound === undefined) inRange();
      else {
        if (c.flipped) {
          bound();
          induction();
        } else {
          induction();
          bound();
        }
        op(c.cmp);
      }
    };
    // n steps' worth, toward K.
    const steps = (n: bigint): void => {
      if (m !== undefined) constant(n * m);
      else {
        get(magnitude);
        if (n > 1n) {
          constant(BigInt(Math.log2(Number(n))));
          op(bits === 32 ? I32_SHL : I64_SHL);
        }
      }
    };
    const stepGood = (): void => {
      get(magnitude);
      constant(0n);
      op(base + GT_S);
      get(magnitude);
      constant((1n << BigInt(bits - 1)) / S);
      op(base + LT_S);
      op(I32_AND);
    };
    // K - i going up, i - K going down.
    const distance = (): void => {
      if (up) {
        bound();
        induction();
      } else {
        induction();
        bound();
      }
      op(sub);
    };
    const divisible = (m: bigint): void => {
      distance();
      constant(m - 1n);
      op(bits === 32 ? I32_AND : I64_AND);
      constant(0n);
      op(base);
    };
    if (c.form === "top") {
      // The test once before the loop: a loop that does not start runs nothing.
      w.bytes(body.subarray(starts[i + 1] as number, starts[i + 4] as number));
      w.bytes(new Uint8Array([OP.if, EMPTY_BLOCK]));
      this.open += 1;
    }
    const guard = this.open - 1;
    const opening = body.subarray(starts[i] as number, this.#end(i));
    w.bytes(opening);
    this.open += 1;
    if (c.step.local !== undefined) {
      // The magnitude toward K of the step `(± p)`: p itself, or 0 - p.
      if (up === c.step.negated) {
        constant(0n);
        get(c.step.local);
        op(sub);
      } else get(c.step.local);
      w.byte(OP.local_set);
      w.u32(magnitude);
    }
    if (relation === NE && m !== undefined) {
      distance();
      constant(1n);
      op(sub);
      constant(S * m - 1n);
      op(base + GT_U);
      if (m > 1n) {
        divisible(m);
        op(I32_AND);
      }
    } else {
      distance();
      steps(S);
      if (!strict) {
        constant(1n);
        op(sub);
      }
      op(base + GT_U);
      inRange();
      op(I32_AND);
      if (constantStep === undefined) {
        stepGood();
        op(I32_AND);
      }
    }
    w.byte(OP.local_set);
    w.u32(full);
    const weigh = (): void => {
      w.byte(OP.i32_const);
      w.s32(LOOP_SLICE + 1);
      w.bytes(new Uint8Array([OP.i32_const, 1, OP.local_get]));
      w.u32(full);
      op(SELECT);
    };
    if (this.#guarded(i)) {
      // The slice adds its weight to the frame's count, which is taken off the budget once it makes a slice's worth.
      const n = this.#sliceCounter();
      get(n);
      weigh();
      op(OP.i32_add);
      w.byte(OP.local_set);
      w.u32(n);
      this.#visit(i, end, () => get(n), n, true);
    } else this.#visit(i, end, weigh);
    // lim: a full slice's bound, else LAST or NEVER.
    induction();
    steps(S);
    op(up ? add : sub);
    bound();
    if (relation === NE && m !== undefined) {
      if (m > 1n) {
        // The distance does not divide: one step.
        induction();
        constant(constantStep as bigint);
        op(add);
        divisible(m);
        op(SELECT);
      }
    } else {
      if (!strict) {
        constant(1n);
        op(up ? add : sub);
      }
      constant(up ? min : max);
      inRange();
      if (c.constant === undefined || constantStep === undefined) {
        // The last value tested, at most a step past K, must not wrap: K <= MAX + 1 - m (<= MAX - m), or K >= MIN - 1 + m (>= MIN + m).
        bound();
        constant(up ? max + (strict ? 1n : 0n) : min - (strict ? 1n : 0n));
        steps(1n);
        op(up ? sub : add);
        op(base + (up ? (signed ? LE_S : LE_U) : signed ? GE_S : GE_U));
        op(I32_AND);
      }
      if (constantStep === undefined) {
        stepGood();
        op(I32_AND);
      }
      op(SELECT);
    }
    get(full);
    op(SELECT);
    w.byte(OP.local_set);
    w.u32(lim);
    // The loop, the slice's bound in its test.
    const inner = relation === NE ? NE : up ? (signed ? LT_S : LT_U) : signed ? GT_S : GT_U;
    // One iteration, its test against lim last: the condition to go on is left on the stack.
    const iteration = (): void => {
      if (c.form === "top") {
        // A branch to the `if` leaves the loop: it goes to the end of the test before it.
        this.labels.push({ target: guard, closes: 0 });
        this.#range(i + 5, end - 2);
        this.labels.pop();
        induction();
        get(lim);
        op(base + inner);
      } else if (c.bound === undefined) {
        // (br_if 0 (local.tee $i ...)): the tee left on the stack, tested against lim.
        this.#range(i + 1, end - 1);
        get(lim);
        op(base + inner);
      } else if (c.flipped) {
        this.#range(i + 1, c.bound);
        get(lim);
        this.#range(c.bound + 1, end - 2);
        op(base + flip(inner));
      } else {
        this.#range(i + 1, c.bound);
        get(lim);
        op(base + inner);
      }
    };
    w.bytes(opening);
    this.open += 1;
    if (this.#unrollable(i, end)) {
      // Copies, as a small loop's (`_unroll.ts`): going on against lim is going on to the next copy.
      this.#copies(() => {
        iteration();
        w.bytes(new Uint8Array([OP.br_if, 0]));
      });
      w.byte(OP.end);
      this.open -= 1;
    } else {
      this.labels.push({ target: this.open - 1, closes: 0 });
      iteration();
      this.labels.pop();
      w.bytes(new Uint8Array([OP.br_if, 0, OP.end]));
      this.open -= 1;
    }
    test();
    w.bytes(new Uint8Array([OP.br_if, 0, OP.end]));
    this.open -= 1;
    if (c.form === "top") {
      op(OP.end);
      this.open -= 1;
    }
    return end;
  }

  /**
   * The loop from `i` to `end` when its back-edge is decided by one
   * induction local stepped by a constant or by a local, in one of the
   * shapes compilers write (LLVM's bottom test, AssemblyScript's top test):
   *
   *     loop ... (br_if 0 (CMP (local.tee $i (add|sub $i c)) K)) end
   *     loop ... (br_if 0 (local.tee $i (add|sub $i c))) end              ;; != 0
   *     loop (if (CMP $i K) (then ... (local.set $i (add|sub $i c)) ... (br 1)))) end
   *
   * (either operand order), with K a constant or a local the loop does not
   * write, c a constant or such a local, no other write of `$i` in the loop,
   * the top shape's step at its body's top level and no `else`, and nothing
   * else branching back. `==` is not counted; `!=` takes a constant step of
   * a power of two. What a constant step and bound decide (the step going
   * the wrong way, the induction able to wrap past K) is refused here; what
   * locals hold is checked by each slice.
   */
  #counted(i: number, end: number): Counted | undefined {
    const op = (k: number): number => this.ops[k] ?? -1;
    const { body, starts } = this;
    if (this.targeted.get(i) !== 1 || body[(starts[i] as number) + 1] !== EMPTY_BLOCK) return undefined;
    let form: Counted["form"];
    let at: number;
    let operands: [number, number] | undefined;
    let cmp: number;
    let step: Stepped | undefined;
    if (op(end - 1) === OP.br_if && this.#at(end - 1).u32() === 0) {
      form = "bottom";
      cmp = op(end - 2);
      if (cmp === OP.local_tee) {
        // (br_if 0 (local.tee $i ...)): going on while $i != 0.
        at = end - 2;
        step = this.#step(at, OP.local_tee);
        cmp = 0x47;
      } else {
        at = end - 3;
        step = this.#step(at, OP.local_tee);
        if (step !== undefined) operands = [end - 7, at];
        else {
          at = end - 4;
          step = this.#step(at, OP.local_tee);
          operands = [at, end - 3];
        }
      }
    } else if (op(i + 4) === OP.if && body[(starts[i + 4] as number) + 1] === EMPTY_BLOCK && this.match.get(i + 4) === end - 1 && op(end - 2) === OP.br && this.#at(end - 2).u32() === 1) {
      form = "top";
      cmp = op(i + 3);
      operands = [i + 1, i + 2];
      // The step: a `local.set` of a local the test reads, at the top level of the `if`'s body (which has no `else`).
      const read = operands.filter((k) => op(k) === OP.local_get).map((k) => this.#at(k).u32());
      at = -1;
      let depth = 0;
      for (let k = i + 5; k < end - 2; k += 1) {
        const o = op(k);
        if (o === OP.block || o === OP.loop || o === OP.if || o === OP.try) depth += 1;
        else if (o === OP.end || o === OP.delegate) depth -= 1;
        else if (depth === 0 && o === ELSE) return undefined;
        else if (depth === 0 && o === OP.local_set && step === undefined && read.includes(this.#at(k).u32())) {
          step = this.#step(k, OP.local_set);
          at = k;
        }
      }
    } else return undefined;
    if (step === undefined) return undefined;
    const bits = cmp >= 0x46 && cmp <= 0x4f ? 32 : cmp >= 0x51 && cmp <= 0x5a ? 64 : 0;
    if (bits !== step.bits) return undefined;
    const relation = cmp - (bits === 32 ? 0x46 : 0x51);
    if (relation === 0) return undefined;
    let flipped = false;
    let bound: number | undefined;
    let constant: bigint | undefined = 0n;
    let local: number | undefined;
    if (operands !== undefined) {
      // Which operand is the induction: the other is the bound.
      const isInduction = (k: number): boolean => (form === "bottom" ? k === at : op(k) === OP.local_get && this.#at(k).u32() === step.induction);
      const [first, second] = operands;
      if (isInduction(second) && !isInduction(first)) {
        flipped = true;
        bound = first;
      } else if (isInduction(first) && !isInduction(second)) bound = second;
      else return undefined;
      const k = this.#constant(bound);
      if (k !== undefined) {
        if (k.bits !== bits) return undefined;
        constant = k.value;
      } else if (op(bound) === OP.local_get) {
        local = this.#at(bound).u32();
        constant = undefined;
      } else return undefined;
    }
    // No other write of the induction, nor any of the bound or the step.
    for (let n = i + 1; n < end; n += 1) {
      const o = op(n);
      if (o !== OP.local_set && o !== OP.local_tee) continue;
      const target = this.#at(n).u32();
      if ((target === step.induction && n !== at) || target === local || target === step.step.local) return undefined;
    }
    const normal = flipped ? flip(relation) : relation;
    if (!stepFits(normal, step.step, constant, bits)) return undefined;
    return { form, induction: step.induction, bits, step: step.step, bound, constant, cmp, flipped, relation: normal };
  }

  /** At `at`, `(local.set|tee $i (add|sub $i c))` or `(add c $i)`, c a constant or another local: the induction, its step and width. */
  #step(at: number, setter: number): Stepped | undefined {
    const op = (k: number): number => this.ops[k] ?? -1;
    if (at < 3 || op(at) !== setter) return undefined;
    const induction = this.#at(at).u32();
    const arith = op(at - 1);
    const bits = arith === OP.i32_add || arith === OP.i32_sub ? 32 : arith === I64_ADD || arith === I64_SUB ? 64 : 0;
    if (bits === 0) return undefined;
    const isAdd = arith === OP.i32_add || arith === I64_ADD;
    const isGet = (k: number): boolean => op(k) === OP.local_get && this.#at(k).u32() === induction;
    let other: number;
    if (isGet(at - 3)) other = at - 2;
    else if (isAdd && isGet(at - 2)) other = at - 3;
    else return undefined;
    const c = this.#constant(other);
    if (c !== undefined) {
      if (c.bits !== bits) return undefined;
      const value = BigInt.asIntN(bits, c.value);
      return { induction, bits, step: { constant: isAdd ? value : -value, local: undefined, negated: false } };
    }
    if (op(other) !== OP.local_get) return undefined;
    const p = this.#at(other).u32();
    return p === induction ? undefined : { induction, bits, step: { constant: undefined, local: p, negated: !isAdd } };
  }

  /** Whether the loop from `i` to `end` is a small innermost one whose body can reach no safe point, falling off with no value. */
  #unrollable(i: number, end: number): boolean {
    if (this.body[(this.starts[i] as number) + 1] !== EMPTY_BLOCK || end - i - 1 > UNROLL_INSTRUCTIONS_MAX) return false;
    if (this.body.length > UNROLL_FUNCTION_BYTES_MAX) return false;
    for (let k = i + 1; k < end; k += 1) {
      const op = this.ops[k] as number;
      if (op === OP.call) {
        if (this.#reaches(this.#at(k).u32())) return false;
      } else if (REFUSED_IN_COPIES.has(op)) return false;
    }
    return true;
  }

  /**
   * Whether the loop from `i` to `end` provably runs at most `LOOP_SLICE`
   * iterations an entry and holds no call and no other loop (`_bounded.ts`):
   * an induction set to a constant right before it, and a back-edge at its
   * end taken while `(i = i ± step) CMP bound` holds, both constants.
   */
  #bounded(i: number, end: number): boolean {
    if (end - i > LOOP_SCAN_MAX || i < 2 || this.targeted.get(i) !== 1) return false;
    const op = (k: number): number => this.ops[k] ?? -1;
    if (op(end - 1) !== OP.br_if || this.#at(end - 1).u32() !== 0) return false;
    if (op(i - 1) !== OP.local_set) return false;
    const induction = this.#at(i - 1).u32();
    const start = this.#constant(i - 2);
    if (start === undefined) return false;
    const cmp = op(end - 2);
    const test = COMPARISONS.get(cmp);
    if (test === undefined) return false;
    const bits = cmp >= 0x51 ? 64 : 32;
    if (start.bits !== bits) return false;
    // (local.tee $i (add|sub $i c)), const K, cmp — or const K first and the tee last.
    const step = (at: number): { step: bigint; tee: number } | undefined => {
      const found = this.#step(at, OP.local_tee);
      if (found === undefined || found.induction !== induction || found.bits !== bits || found.step.constant === undefined) return undefined;
      return { step: found.step.constant, tee: at };
    };
    let found = step(end - 4);
    let bound = this.#constant(end - 3);
    let flipped = false;
    if (found === undefined || bound === undefined) {
      found = step(end - 3);
      bound = this.#constant(end - 7);
      flipped = true;
    }
    if (found === undefined || bound === undefined || bound.bits !== bits) return false;
    // The body: no call, no loop, nothing it cannot read, no other write to the induction.
    for (let k = i + 1; k < end; k += 1) {
      const o = op(k);
      if (o === OP.call || REFUSED_IN_COPIES.has(o)) return false;
      if ((o === OP.local_set || o === OP.local_tee) && k !== found.tee && this.#at(k).u32() === induction) return false;
    }
    let x = start.value;
    for (let iterations = 1; iterations <= LOOP_SLICE; iterations += 1) {
      x = BigInt.asUintN(bits, x + found.step);
      if (!test(flipped ? bound.value : x, flipped ? x : bound.value, bits)) return true;
    }
    return false;
  }

  /** The value of instruction `k` when it is an integer constant. */
  #constant(k: number): { value: bigint; bits: number } | undefined {
    const op = this.ops[k];
    if (op !== OP.i32_const && op !== OP.i64_const) return undefined;
    const r = this.#at(k);
    return { value: BigInt.asUintN(op === OP.i32_const ? 32 : 64, readSigned(r)), bits: op === OP.i32_const ? 32 : 64 };
  }
}

/** Instructions that keep a loop from being copied or bounded: other loops, indirect and tail calls, exceptions. */
const REFUSED_IN_COPIES = new Set<number>([OP.loop, OP.call_indirect, OP.return_call, OP.return_call_indirect, OP.try, 0x07, 0x08, OP.rethrow, OP.delegate, 0x19, 0x0a, OP.try_table]);

/** A counted loop's step: a constant (signed), or a local added (or subtracted). */
interface CountedStep {
  constant: bigint | undefined;
  local: number | undefined;
  negated: boolean;
}

/** What `#step` found: the induction, its width and step. */
interface Stepped {
  induction: number;
  bits: 32 | 64;
  step: CountedStep;
}

/** A counted loop, as {@link BodyWriter.#counted} found it. */
interface Counted {
  /** Tested after its body (`br_if 0` at the end) or before it (an `if` around it). */
  form: "bottom" | "top";
  induction: number;
  bits: 32 | 64;
  step: CountedStep;
  /** The bound's instruction (a constant, or a `local.get`); none for an implicit `!= 0`. */
  bound: number | undefined;
  /** The bound's value when a constant (0 for an implicit `!= 0`), as the module wrote it. */
  constant: bigint | undefined;
  /** The comparison's opcode, and whether it reads `K CMP x`. */
  cmp: number;
  flipped: boolean;
  /** The comparison as `x CMP K` (an index of INTEGER_COMPARISONS). */
  relation: number;
}

/** INTEGER_COMPARISONS' indices (an opcode less `i32.eq`'s or `i64.eq`'s). */
const NE = 1;
const LT_S = 2;
const LT_U = 3;
const GT_S = 4;
const GT_U = 5;
const LE_S = 6;
const LE_U = 7;
const GE_S = 8;
const GE_U = 9;
const ELSE = 0x05;
const SELECT = 0x1b;
const I32_AND = 0x71;
const I32_SHL = 0x74;
const I64_ADD = 0x7c;
const I64_SUB = 0x7d;
const I64_AND = 0x83;
const I64_SHL = 0x86;

/** How `x relation K` reads: going on while x is below K (else above), strictly, signed. */
function readRelation(relation: number): { below: boolean; strict: boolean; signed: boolean } {
  return {
    below: relation === LT_S || relation === LT_U || relation === LE_S || relation === LE_U,
    strict: relation !== LE_S && relation !== LE_U && relation !== GE_S && relation !== GE_U,
    signed: relation === LT_S || relation === LE_S || relation === GT_S || relation === GE_S,
  };
}

/** `K CMP x` as `x CMP' K`. */
function flip(relation: number): number {
  const swapped: Record<number, number> = { [LT_S]: GT_S, [LT_U]: GT_U, [GT_S]: LT_S, [GT_U]: LT_U, [LE_S]: GE_S, [LE_U]: GE_U, [GE_S]: LE_S, [GE_U]: LE_U };
  return swapped[relation] ?? relation;
}

/**
 * Whether a loop going on while `x relation K`, stepping by `step`, can be
 * sliced by its bound, as far as constants decide: a step toward K, a
 * slice's worth of steps well within the type, a power of two for `!=`, and
 * a constant K the induction cannot wrap past (a local K, or a local step,
 * is checked by each slice).
 */
function stepFits(relation: number, step: CountedStep, constant: bigint | undefined, bits: number): boolean {
  if (step.constant === undefined) return relation !== NE;
  const magnitude = step.constant < 0n ? -step.constant : step.constant;
  if (magnitude === 0n || magnitude * BigInt(LOOP_SLICE) >= 1n << BigInt(bits - 1)) return false;
  if (relation === NE) return (magnitude & (magnitude - 1n)) === 0n;
  const { below: up, strict, signed } = readRelation(relation);
  if (up !== step.constant > 0n) return false;
  if (constant === undefined) return true;
  const k = signed ? BigInt.asIntN(bits, constant) : BigInt.asUintN(bits, constant);
  const max = signed ? (1n << BigInt(bits - 1)) - 1n : (1n << BigInt(bits)) - 1n;
  const min = signed ? -(1n << BigInt(bits - 1)) : 0n;
  // The last value tested is at most a step past K: it must not wrap.
  if (up) return strict ? k <= max - magnitude + 1n : k <= max - magnitude;
  return strict ? k >= min + magnitude - 1n : k >= min + magnitude;
}

/** A signed LEB128 of up to 64 bits. */
function readSigned(r: Reader): bigint {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    const b = r.byte();
    result |= BigInt(b & 0x7f) << shift;
    shift += 7n;
    if ((b & 0x80) === 0) {
      if ((b & 0x40) !== 0) result -= 1n << shift;
      return result;
    }
  }
}

/** Integer comparisons by opcode (i32 then i64): `test(left, right, bits)`. */
const COMPARISONS = new Map<number, (x: bigint, k: bigint, bits: number) => boolean>();
INTEGER_COMPARISONS.forEach((test, k) => {
  COMPARISONS.set(0x46 + k, test);
  COMPARISONS.set(0x51 + k, test);
});
