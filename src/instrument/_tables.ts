/**
 * What an indirect call can reach, read from a module's binary.
 *
 * A `call_indirect` of type T traps unless the table slot it reads holds a
 * function of type T, so it can only reach a function of that signature that
 * some table may hold. With no table coming from outside, what a table may
 * ever hold is what the module itself can name as a reference: the functions
 * of its element segments (active, passive or declared), of a `ref.func` in
 * its code or in a global's initializer, and, when a table or a reference
 * crosses its exports, the functions it exports (the only references a host
 * can hold besides those). Anything this reader cannot account for (an
 * imported table, a reference coming in through an import, a type section
 * with GC types, an initializer it does not know) turns the narrowing off:
 * then an indirect call may reach any function, as before.
 */
import { Reader, REF, REF_NULLABLE, skipLimits, skipValType } from "./_reader.js";

/** What {@link readTables} returns. */
export interface IndirectTargets {
  /** Why indirect calls cannot be narrowed; undefined when they can. */
  unnarrowed: string | undefined;
  /** Imported functions, by function index: "module.name". */
  imports: string[];
  /**
   * A signature number for every function (imports first), by function
   * index: two functions have the same number when a `call_indirect` may
   * call either with the same type.
   */
  function_sig: Int32Array;
  /** The signature number of every type index (-1 for a type that is no function type). */
  type_sig: Int32Array;
  /** 1 for every function (by index) that a table may hold at run time. */
  addressable: Uint8Array;
}

const SECTION_TYPE = 1;
const SECTION_IMPORT = 2;
const SECTION_FUNCTION = 3;
const SECTION_TABLE = 4;
const SECTION_GLOBAL = 6;
const SECTION_EXPORT = 7;
const SECTION_ELEMENT = 9;
const SECTION_CODE = 10;

const KIND_FUNC = 0;
const KIND_TABLE = 1;
const KIND_MEMORY = 2;
const KIND_GLOBAL = 3;
const KIND_TAG = 4;

const TYPE_FUNC = 0x60;
const FUNCREF = 0x70;
const EXTERNREF = 0x6f;

/** Thrown inside the reader for what turns the narrowing off. */
class Unnarrowed extends Error {}

function isRef(t: number): boolean {
  return t === FUNCREF || t === EXTERNREF || t === REF_NULLABLE || t === REF || (t >= 0x69 && t <= 0x74);
}

/** Reads a value type; true when it is a reference type. */
function valType(r: Reader): boolean {
  const t = r.byte();
  if (t === REF_NULLABLE || t === REF) {
    r.skipLeb();
    return true;
  }
  return isRef(t);
}

/**
 * Reads a constant expression up to its `end`, adding the functions it
 * names (`ref.func`) to `refs`. Only the instructions a constant expression
 * holds in practice are known; anything else turns the narrowing off.
 */
function constExpr(r: Reader, refs: number[]): void {
  for (;;) {
    const op = r.byte();
    if (op === 0x0b) return;
    if (op === 0x41 || op === 0x42 || op === 0x23) r.skipLeb(); // i32/i64.const, global.get
    else if (op === 0x43) r.skip(4);
    else if (op === 0x44) r.skip(8);
    else if (op === 0xd0) r.skipLeb(); // ref.null heap type
    else if (op === 0xd2) refs.push(r.u32()); // ref.func
    else if ((op >= 0x6a && op <= 0x6c) || (op >= 0x7c && op <= 0x7e)) continue; // extended constants
    else if (op === 0xfd && r.u32() === 12) r.skip(16); // v128.const
    else throw new Unnarrowed(`a constant expression holds opcode 0x${op.toString(16)}`);
  }
}

/** Reads the element section: every function it names is in `refs`. */
function elements(r: Reader, refs: number[]): void {
  const count = r.u32();
  for (let i = 0; i < count; i += 1) {
    const flags = r.u32();
    if (flags > 7) throw new Unnarrowed(`element segment kind ${flags}`);
    const passiveOrDeclared = (flags & 0x01) !== 0;
    const explicitTable = (flags & 0x02) !== 0;
    const expressions = (flags & 0x04) !== 0;
    if (!passiveOrDeclared) {
      if (explicitTable) r.skipLeb();
      constExpr(r, []); // the offset
    }
    if (passiveOrDeclared || explicitTable) {
      if (expressions) skipValType(r);
      else if (r.byte() !== 0x00) throw new Unnarrowed("an element segment of a kind other than functions");
    }
    const items = r.u32();
    for (let k = 0; k < items; k += 1) {
      if (expressions) constExpr(r, refs);
      else refs.push(r.u32());
    }
  }
}

/**
 * Reads the type, import, function, table, global, export and element
 * sections; `code_refs` are the `ref.func` targets of the code (from
 * `_calls.ts`). Never throws on a module it cannot narrow: it says why in
 * `unnarrowed` instead.
 */
export function readTables(wasm: Uint8Array, code_refs: Iterable<number>): IndirectTargets {
  const r = new Reader(wasm, 8);
  const imports: string[] = [];
  const function_types: number[] = []; // type index of every function, imports first
  let type_sig: Int32Array = new Int32Array(0);
  const refs: number[] = [...code_refs];
  const exported: number[] = [];
  let unnarrowed: string | undefined;
  let refs_cross_exports = false;
  const global_is_ref: boolean[] = [];
  try {
    while (r.pos < wasm.length) {
      const id = r.byte();
      const size = r.u32();
      const end = r.pos + size;
      if (id === SECTION_TYPE) type_sig = types(r);
      else if (id === SECTION_IMPORT) {
        const count = r.u32();
        for (let i = 0; i < count; i += 1) {
          const module = r.text();
          const name = r.text();
          const kind = r.byte();
          if (kind === KIND_FUNC) {
            imports.push(`${module}.${name}`);
            function_types.push(r.u32());
          } else if (kind === KIND_TABLE) throw new Unnarrowed(`the module imports a table (${module}.${name})`);
          else if (kind === KIND_MEMORY) skipLimits(r);
          else if (kind === KIND_GLOBAL) {
            if (valType(r)) throw new Unnarrowed(`the module imports a reference global (${module}.${name})`);
            global_is_ref.push(false);
            r.skip(1);
          } else if (kind === KIND_TAG) {
            r.skip(1);
            r.skipLeb();
          } else throw new Unnarrowed(`import kind ${kind}`);
        }
      } else if (id === SECTION_FUNCTION) {
        const count = r.u32();
        for (let i = 0; i < count; i += 1) function_types.push(r.u32());
      } else if (id === SECTION_TABLE) {
        const count = r.u32();
        for (let i = 0; i < count; i += 1) {
          if (r.bytes[r.pos] === 0x40) throw new Unnarrowed("a table with an initializer");
          skipValType(r);
          skipLimits(r);
        }
      } else if (id === SECTION_GLOBAL) {
        const count = r.u32();
        for (let i = 0; i < count; i += 1) {
          global_is_ref.push(valType(r));
          r.skip(1);
          constExpr(r, refs);
        }
      } else if (id === SECTION_EXPORT) {
        const count = r.u32();
        for (let i = 0; i < count; i += 1) {
          r.name();
          const kind = r.byte();
          const index = r.u32();
          if (kind === KIND_FUNC) exported.push(index);
          else if (kind === KIND_TABLE) refs_cross_exports = true;
          else if (kind === KIND_GLOBAL && global_is_ref[index] === true) refs_cross_exports = true;
        }
      } else if (id === SECTION_ELEMENT) elements(r, refs);
      else if (id === SECTION_CODE) break; // nothing after the code matters here
      r.pos = end;
    }
  } catch (err: unknown) {
    if (!(err instanceof Unnarrowed)) throw err;
    unnarrowed = err.message;
  }
  const function_sig = new Int32Array(function_types.length);
  function_types.forEach((t, i) => {
    function_sig[i] = type_sig[t] ?? -1;
  });
  if (unnarrowed === undefined) {
    // A function taking or returning references: the host may hand in one it holds.
    for (let i = 0; i < imports.length; i += 1) {
      if ((function_sig[i] as number) < 0) unnarrowed = `the import ${imports[i] ?? ""} has a type that is no plain function type`;
    }
    for (const f of exported) if ((function_sig[f] as number) < 0) refs_cross_exports = true;
  }
  const addressable = new Uint8Array(function_types.length);
  for (const f of refs) if (f < addressable.length) addressable[f] = 1;
  if (refs_cross_exports) for (const f of exported) addressable[f] = 1;
  return { unnarrowed, imports, function_sig, type_sig, addressable };
}

/**
 * Numbers the function types by their shape: types with the same parameters
 * and results get the same number (a `call_indirect` compares them so).
 * A type with a reference in its signature gets -1 (a reference may come
 * from the host; the caller treats such imports as unnarrowable); a type
 * section with GC types (recursion groups, subtypes) turns narrowing off.
 */
function types(r: Reader): Int32Array {
  const count = r.u32();
  const out = new Int32Array(count);
  const numbers = new Map<string, number>();
  for (let i = 0; i < count; i += 1) {
    const form = r.byte();
    if (form !== TYPE_FUNC) throw new Unnarrowed(`the type section holds a type of form 0x${form.toString(16)} (GC types)`);
    const start = r.pos;
    let refs = false;
    for (let side = 0; side < 2; side += 1) {
      const n = r.u32();
      for (let k = 0; k < n; k += 1) if (valType(r)) refs = true;
    }
    if (refs) {
      out[i] = -1;
      continue;
    }
    const key = Array.from(r.bytes.subarray(start, r.pos)).join(",");
    let sig = numbers.get(key);
    if (sig === undefined) {
      sig = numbers.size;
      numbers.set(key, sig);
    }
    out[i] = sig;
  }
  return out;
}
