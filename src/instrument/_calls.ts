/**
 * The direct calls of every defined function, read straight from the code
 * section of a module's binary.
 *
 * Asking binaryen.js for every expression of every body (one call across
 * into its wasm per field) costs a few microseconds an expression: minutes
 * for a module of 50 MB of code. Decoding the bytes here is a linear scan
 * that only has to know how long each instruction's immediates are.
 */
import { Reader, REF, REF_NULLABLE, skipLimits, skipValType } from "./_reader.js";

/** What the scan found in one function body. */
export interface BodyCalls {
  /** Function indices (in the module's index space, imports first) called directly. */
  calls: number[];
  /**
   * The type index of each `call_indirect` (or `return_call_indirect`), once
   * each: such a call can only reach a function of that type that a table
   * holds (`_tables.ts` says which those are).
   */
  indirect: number[];
  /** Functions whose reference the body takes (`ref.func`): those may be put in a table. */
  refs: number[];
  /**
   * Whether the body may call a function it neither names nor calls through
   * a table: a `call_ref`, or an instruction this scanner does not know
   * (then the rest of the body is not read: assuming "may call anything" is
   * the safe answer).
   */
  opaque: boolean;
  /**
   * Whether the body may hold a loop (a `loop` instruction, or a part the
   * scanner could not read): only those need walking for polls.
   */
  loops: boolean;
  /**
   * Whether the body may change anything its frame does not own, or leave
   * other than by returning: a store of any kind, `global.set`, a table or
   * bulk memory write, `memory.grow`, an atomic other than a load, a tail
   * call, an exception, or a part the scanner could not read. A body
   * without (whose callees are without too) can be run again from its
   * start with the same arguments and give the same result
   * (`_restart.ts`).
   */
  writes: boolean;
}

/** What {@link scanCalls} returns. */
export interface ModuleCalls {
  imported: number;
  /** One entry per defined function, in order. */
  bodies: BodyCalls[];
}

const SECTION_IMPORT = 2;
const SECTION_CODE = 10;
const IMPORT_KIND_FUNC = 0;

function skipBlockType(r: Reader): void {
  const t = r.bytes[r.pos] ?? 0;
  if (t === REF_NULLABLE || t === REF) skipValType(r);
  // One byte that is a negative s33 is the empty type or a value type.
  else if ((t & 0xc0) === 0x40) r.skip(1);
  else r.skipLeb(); // a type index, as a signed 33-bit LEB
}

/** Alignment flag bit saying a memory index follows (multi-memory). */
const MEMARG_HAS_MEMORY = 0x40;

function skipMemArg(r: Reader): void {
  const align = r.u32();
  if ((align & MEMARG_HAS_MEMORY) !== 0) r.skipLeb();
  r.skipLeb();
}

/** Immediates of the 0xFC prefix (saturating truncation, bulk memory, tables), by sub-opcode. */
function skipMisc(r: Reader, op: number): boolean {
  if (op <= 7) return true; // trunc_sat
  if (op === 8 || op === 10 || op === 12 || op === 14) {
    r.skipLeb();
    r.skipLeb();
    return true;
  }
  if (op === 9 || op === 11 || op === 13 || (op >= 15 && op <= 17)) {
    r.skipLeb();
    return true;
  }
  return false;
}

/** Immediates of the 0xFD prefix (SIMD, relaxed SIMD), by sub-opcode. */
function skipSimd(r: Reader, op: number): boolean {
  if (op <= 11 || op === 92 || op === 93) skipMemArg(r);
  else if (op === 12 || op === 13) r.skip(16); // v128.const, i8x16.shuffle
  else if (op >= 21 && op <= 34) r.skip(1); // extract_lane, replace_lane
  else if (op >= 84 && op <= 91) {
    skipMemArg(r); // load_lane, store_lane
    r.skip(1);
  } else if (op > 0x113) return false;
  return true;
}

/** Immediates of the 0xFE prefix (atomics), by sub-opcode. */
function skipAtomic(r: Reader, op: number): boolean {
  if (op === 3) r.skip(1); // atomic.fence
  else if (op <= 2 || (op >= 0x10 && op <= 0x4e)) skipMemArg(r);
  else return false;
  return true;
}

/** Reads one body (from after its size to `end`). */
function scanBody(r: Reader, end: number): BodyCalls {
  const found: BodyCalls = { calls: [], indirect: [], refs: [], opaque: false, loops: false, writes: false };
  const groups = r.u32();
  for (let i = 0; i < groups; i += 1) {
    r.skipLeb();
    skipValType(r);
  }
  while (r.pos < end) {
    const op = r.byte();
    if (writesState(r, op)) found.writes = true;
    if (op === 0x10 || op === 0x12) {
      found.calls.push(r.u32()); // call, return_call
    } else if (op === 0x11 || op === 0x13) {
      const type = r.u32(); // call_indirect, return_call_indirect: type, table
      if (!found.indirect.includes(type)) found.indirect.push(type);
      r.skipLeb();
    } else if (op === 0xd2) {
      found.refs.push(r.u32()); // ref.func
    } else if (op === 0x14 || op === 0x15) {
      found.opaque = true; // call_ref, return_call_ref
      r.skipLeb();
    } else if (op === 0x03) {
      found.loops = true;
      skipBlockType(r);
    } else if (!skipImmediates(r, op)) {
      found.opaque = true;
      found.loops = true;
      found.writes = true;
      break;
    }
  }
  return found;
}

/**
 * Whether opcode `op` (its prefix's sub-opcode read ahead, not consumed)
 * writes state outside the frame or leaves the function other than by a
 * return (see {@link BodyCalls.writes}). Unknown opcodes are the caller's
 * (opaque, which counts as writing).
 */
function writesState(r: Reader, op: number): boolean {
  if (op >= 0x36 && op <= 0x3e) return true; // stores
  if (op === 0x24 || op === 0x26 || op === 0x40) return true; // global.set, table.set, memory.grow
  if (op === 0x12 || op === 0x13 || op === 0x15) return true; // tail calls
  if (op === 0x06 || op === 0x07 || op === 0x08 || op === 0x09 || op === 0x18 || op === 0x19 || op === 0x1f || op === 0x0a) return true; // exceptions
  if (op !== 0xfc && op !== 0xfd && op !== 0xfe) return false;
  const save = r.pos;
  const sub = r.u32();
  r.pos = save;
  if (op === 0xfc) return sub >= 8 && sub !== 16; // bulk memory and tables but table.size
  if (op === 0xfd) return sub === 11 || (sub >= 88 && sub <= 91); // v128.store, store_lane
  return !(sub === 3 || (sub >= 0x10 && sub <= 0x16)); // atomics: only fence and loads read alone
}

/** Skips the immediates of `op`; false for an opcode this scanner does not know. */
export function skipImmediates(r: Reader, op: number): boolean {
  if (op <= 0x01 || op === 0x05 || op === 0x0a || op === 0x0b || op === 0x0f || op === 0x19 || op === 0x1a || op === 0x1b) return true;
  if (op >= 0x45 && op <= 0xc4) return true; // numeric, sign extension
  if (op === 0xd1 || op === 0xd3 || op === 0xd4) return true; // ref.is_null, ref.eq, ref.as_non_null
  if (op >= 0x02 && op <= 0x04) {
    skipBlockType(r); // block, loop, if
    return true;
  }
  if (op === 0x06) {
    skipBlockType(r); // try (legacy exceptions)
    return true;
  }
  if (op === 0x1f) {
    skipBlockType(r); // try_table
    const catches = r.u32();
    for (let i = 0; i < catches; i += 1) {
      const kind = r.byte();
      if (kind <= 0x01) r.skipLeb(); // a tag, then the label
      r.skipLeb();
    }
    return true;
  }
  if (op === 0x07 || op === 0x08 || op === 0x09 || op === 0x18 || op === 0x0c || op === 0x0d || op === 0xd5 || op === 0xd6) {
    r.skipLeb(); // catch, throw, rethrow, delegate, br, br_if, br_on_null, br_on_non_null
    return true;
  }
  if (op === 0x0e) {
    const targets = r.u32(); // br_table
    for (let i = 0; i <= targets; i += 1) r.skipLeb();
    return true;
  }
  if (op === 0x1c) {
    const types = r.u32(); // select t*
    for (let i = 0; i < types; i += 1) skipValType(r);
    return true;
  }
  if ((op >= 0x20 && op <= 0x26) || op === 0x3f || op === 0x40 || op === 0x41 || op === 0x42 || op === 0xd0) {
    r.skipLeb(); // locals, globals, table.get/set, memory.size/grow, i32/i64.const, ref.null
    return true;
  }
  if (op >= 0x28 && op <= 0x3e) {
    skipMemArg(r);
    return true;
  }
  if (op === 0x43) {
    r.skip(4);
    return true;
  }
  if (op === 0x44) {
    r.skip(8);
    return true;
  }
  if (op === 0xfc) return skipMisc(r, r.u32());
  if (op === 0xfd) return skipSimd(r, r.u32());
  if (op === 0xfe) return skipAtomic(r, r.u32());
  return false; // GC (0xfb) and anything newer: the caller assumes the worst
}

/** Counts the imported functions of the import section at `r`. */
function importedFunctions(r: Reader): number {
  let functions = 0;
  const count = r.u32();
  for (let i = 0; i < count; i += 1) {
    r.name();
    r.name();
    const kind = r.byte();
    if (kind === IMPORT_KIND_FUNC) {
      functions += 1;
      r.skipLeb();
    } else if (kind === 1) {
      skipValType(r); // table: reftype, limits
      skipLimits(r);
    } else if (kind === 2) skipLimits(r);
    else if (kind === 3) {
      skipValType(r); // global: valtype, mutability
      r.skip(1);
    } else if (kind === 4) {
      r.skip(1); // tag: attribute, type index
      r.skipLeb();
    } else throw new RangeError(`unknown import kind ${kind}`);
  }
  return functions;
}


/**
 * The calls of every defined function of `wasm`. Throws a RangeError on a
 * binary too damaged to walk (Binaryen has read it by then, so it is not).
 */
export function scanCalls(wasm: Uint8Array): ModuleCalls {
  const r = new Reader(wasm, 8);
  let imported = 0;
  const bodies: BodyCalls[] = [];
  while (r.pos < wasm.length) {
    const id = r.byte();
    const size = r.u32();
    const end = r.pos + size;
    if (id === SECTION_IMPORT) imported = importedFunctions(r);
    else if (id === SECTION_CODE) {
      const count = r.u32();
      for (let i = 0; i < count; i += 1) {
        const bodySize = r.u32();
        const bodyEnd = r.pos + bodySize;
        bodies.push(scanBody(r, bodyEnd));
        r.pos = bodyEnd;
      }
    }
    r.pos = end;
  }
  return { imported, bodies };
}
