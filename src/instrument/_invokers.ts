/**
 * Binaryen's C++ exceptions, caught without a trip through JavaScript.
 *
 * binaryen.js is built with Emscripten's JavaScript exceptions: a C++ call
 * that may throw through a handler or a destructor leaves the wasm for an
 * `invoke_*` import, a JavaScript function that saves the stack pointer,
 * calls the callee back through the wasm table inside a `try`, and on a C++
 * exception restores the pointer and sets the flag the caller's landing pad
 * reads (`setThrew(1, 0)`). Binaryen makes such calls all the time, and
 * throws in its ordinary work too (the interpreter behind `precompute` does,
 * for every expression it cannot fold): the two crossings cost a fifth of
 * Asyncify's time (docs/runtime.md, "Instrumentation": figures).
 *
 * {@link planInvokers} builds a small wasm module with one function of the
 * same type for each of those imports, doing the same with wasm's own
 * exception handling (`try`/`catch_all`, which catches JavaScript
 * exceptions too) and a copy of Binaryen's table. A `catch_all` does not see
 * what was thrown, so the JavaScript functions that throw C++ exceptions
 * (those that make the exception objects: `__cxa_throw`, rethrow, resume) are
 * wrapped to raise a flag first; an exception caught without the flag (an
 * abort, a stack overflow) is thrown on, as the JavaScript `invoke_*` does.
 *
 * All of it is found from the glue's source and the module's binary; if
 * anything is not as expected, there is no plan and the module is
 * instantiated as Emscripten would.
 */
import { sections, writeU32Leb as leb } from "./_binary.js";
import { Reader, skipLimits, skipValType } from "./_reader.js";

/** What is done with the module's imports, and what to do once it is instantiated. */
export interface InvokerPlan {
  /** The imports to instantiate Binaryen with. */
  imports: WebAssembly.Imports;
  /** Fills the invokers' table from the instance's; false (and the instance must not be used) if it is not as planned. */
  link(instance: WebAssembly.Instance): boolean;
}

/** A function type of numbers only: the only kind the invokers handle. */
interface FuncType {
  params: number[];
  results: number[];
}

const I32 = 0x7f;
const NUMBERS = new Set([0x7f, 0x7e, 0x7d, 0x7c]);

/**
 * The shape of Emscripten's `invoke_*`: the stack pointer saved, the callee
 * called through the table, and on a C++ exception the pointer restored and
 * `setThrew(1, 0)`. Groups: stackSave, stackRestore, the C++ exception class,
 * setThrew.
 */
const INVOKE = /^function [\w$]*\(([\w$]+)(?:,[\w$]+)*\)\{var ([\w$]+)=([\w$]+)\(\);try\{(?:return )?[\w$]+\(\1\)\([\w$,]*\)\}catch\(([\w$]+)\)\{if\(([\w$]+)\(\2\),!\(\4 instanceof ([\w$]+)\)\)throw \4;([\w$]+)\(1,0\)\}\}$/;

/** A plan for `imports` of `module` (binary `wasm`, glue source `glue`), or undefined if anything is not as expected. */
export function planInvokers(glue: string, wasm: Uint8Array, imports: WebAssembly.Imports): InvokerPlan | undefined {
  let binary: Binary;
  try {
    binary = readSections(wasm);
  } catch {
    // Not the binary expected (a type or an import of another kind): Emscripten's own imports serve.
    return undefined;
  }
  const invokers: { module: string; name: string; type: FuncType }[] = [];
  let names: { save: string; restore: string; cppClass: string; setThrew: string } | undefined;
  for (const imp of binary.functionImports) {
    const value = imports[imp.module]?.[imp.name];
    if (typeof value !== "function") continue;
    const shape = INVOKE.exec(Function.prototype.toString.call(value));
    if (shape === null) continue;
    const [, , , save, , restore, cppClass, setThrew] = shape as unknown as [string, string, string, string, string, string, string, string];
    if (names === undefined) names = { save, restore, cppClass, setThrew };
    else if (names.save !== save || names.restore !== restore || names.cppClass !== cppClass || names.setThrew !== setThrew) return undefined;
    const type = binary.types[imp.type];
    if (type === undefined || type.params[0] !== I32 || type.results.length > 1 || ![...type.params, ...type.results].every((t) => NUMBERS.has(t))) return undefined;
    invokers.push({ module: imp.module, name: imp.name, type });
  }
  if (names === undefined) return undefined;
  // The glue takes the helpers from the instance's exports: `R=j.OB`.
  const exported = (jsName: string, type: FuncType): string | undefined => {
    const found = [...glue.matchAll(new RegExp(`[,;{\\s]${escape(jsName)}=[\\w$]+\\.([\\w$]+)(?=[,;}])`, "g"))].map((m) => m[1] as string);
    const name = found.length === 1 ? found[0] : undefined;
    const index = name === undefined ? undefined : binary.functionExports.get(name);
    const actual = index === undefined ? undefined : binary.types[binary.functionTypes[index - binary.functionImports.length] ?? -1];
    return actual !== undefined && sameType(actual, type) ? name : undefined;
  };
  const save = exported(names.save, { params: [], results: [I32] });
  const restore = exported(names.restore, { params: [I32], results: [] });
  const setThrew = exported(names.setThrew, { params: [I32, I32], results: [] });
  if (save === undefined || restore === undefined || setThrew === undefined || binary.tableExport === undefined) return undefined;
  // What makes C++ exceptions: the subclasses of the class the invokers check.
  const subclasses = [...glue.matchAll(new RegExp(`class ([\\w$]+) extends ${escape(names.cppClass)}\\b`, "g"))].map((m) => m[1] as string);
  if (subclasses.length === 0) return undefined;
  const throwing = new RegExp(`new (?:${subclasses.map(escape).join("|")})\\(`);

  const length = binary.tableMin;
  if (length === undefined) return undefined;
  const flag = new WebAssembly.Global({ value: "i32", mutable: true }, 0);
  const table = new WebAssembly.Table({ element: "anyfunc", initial: length + 3 });
  const invokerExports = new WebAssembly.Instance(new WebAssembly.Module(invokerModule(invokers.map((i) => i.type), length)), { env: { table, flag } }).exports;
  const planned: WebAssembly.Imports = {};
  for (const [module, fields] of Object.entries(imports)) {
    const copy: Record<string, WebAssembly.ImportValue> = { ...fields };
    for (const [name, value] of Object.entries(fields)) {
      if (typeof value !== "function" || !throwing.test(Function.prototype.toString.call(value))) continue;
      const original = value as (...args: unknown[]) => unknown;
      copy[name] = function (this: unknown, ...args: unknown[]): unknown {
        try {
          return original.apply(this, args);
        } catch (err: unknown) {
          // A C++ exception is not an Error; an abort on the way (a RuntimeError) is not one to catch.
          if (!(err instanceof Error)) flag.value = 1;
          throw err;
        }
      };
    }
    planned[module] = copy;
  }
  invokers.forEach((inv, i) => {
    const fields = planned[inv.module] as Record<string, WebAssembly.ImportValue>;
    fields[inv.name] = invokerExports[`i${i}`] as WebAssembly.ImportValue;
  });
  const tableExport = binary.tableExport;
  return {
    imports: planned,
    link(instance) {
      const theirs = instance.exports[tableExport];
      const helpers = [save, restore, setThrew].map((n) => instance.exports[n]);
      if (!(theirs instanceof WebAssembly.Table) || theirs.length !== length || !helpers.every((h) => typeof h === "function")) return false;
      for (let i = 0; i < length; i += 1) table.set(i, theirs.get(i));
      helpers.forEach((h, i) => table.set(length + i, h));
      return true;
    },
  };
}

function escape(name: string): string {
  return name.replace(/\$/g, "\\$");
}

function sameType(a: FuncType, b: FuncType): boolean {
  return a.params.join() === b.params.join() && a.results.join() === b.results.join();
}

interface Binary {
  types: FuncType[];
  functionImports: { module: string; name: string; type: number }[];
  /** Type index of each function defined (after the imported ones). */
  functionTypes: number[];
  functionExports: Map<string, number>;
  tableExport: string | undefined;
  /** The size the module's own table starts at. */
  tableMin: number | undefined;
}

/** The sections of `wasm` the plan needs: types (numbers only; others left undefined), imports, functions, table, exports. */
function readSections(wasm: Uint8Array): Binary {
  const out: Binary = { types: [], functionImports: [], functionTypes: [], functionExports: new Map(), tableExport: undefined, tableMin: undefined };
  for (const section of sections(wasm)) {
    const r = new Reader(wasm, section.payload);
    const id = section.id;
    if (id === 1) {
      for (let n = r.u32(), i = 0; i < n; i += 1) {
        if (r.byte() !== 0x60) throw new RangeError("not a function type");
        const params = vector(r);
        const results = vector(r);
        out.types.push({ params, results });
      }
    } else if (id === 2) {
      for (let n = r.u32(), i = 0; i < n; i += 1) {
        const module = r.text();
        const name = r.text();
        const kind = r.byte();
        if (kind === 0) out.functionImports.push({ module, name, type: r.u32() });
        else if (kind === 1) {
          skipValType(r);
          skipLimits(r);
        } else if (kind === 2) skipLimits(r);
        else if (kind === 3) {
          skipValType(r);
          r.skip(1);
        } else throw new RangeError(`import kind ${kind}`);
      }
    } else if (id === 3) {
      for (let n = r.u32(), i = 0; i < n; i += 1) out.functionTypes.push(r.u32());
    } else if (id === 4) {
      // One table, Binaryen's: its limits.
      if (r.u32() !== 1 || r.byte() !== 0x70) throw new RangeError("not one function table");
      r.byte();
      out.tableMin = r.u32();
    } else if (id === 7) {
      for (let n = r.u32(), i = 0; i < n; i += 1) {
        const name = r.text();
        const kind = r.byte();
        const index = r.u32();
        if (kind === 0) out.functionExports.set(name, index);
        else if (kind === 1 && index === 0) out.tableExport = name;
      }
    }
  }
  return out;
}

/** A vector of value types, kept only when every one is a number type (else a marker that no plan accepts). */
function vector(r: Reader): number[] {
  const types: number[] = [];
  for (let n = r.u32(), i = 0; i < n; i += 1) {
    const at = r.pos;
    skipValType(r);
    types.push(r.pos === at + 1 ? (r.bytes[at] as number) : -1);
  }
  return types;
}

/**
 * The invokers' module: it imports the table (`tableLength` entries of
 * Binaryen's, then stackSave, stackRestore and setThrew) and the flag, and
 * exports `i0`, `i1`... for `types`.
 */
export function invokerModule(types: readonly FuncType[], tableLength: number): Uint8Array {
  const typeList: FuncType[] = [];
  const typeIndex = (t: FuncType): number => {
    let i = typeList.findIndex((x) => sameType(x, t));
    if (i < 0) i = typeList.push(t) - 1;
    return i;
  };
  const save = typeIndex({ params: [], results: [I32] });
  const restore = typeIndex({ params: [I32], results: [] });
  const setThrew = typeIndex({ params: [I32, I32], results: [] });
  const bodies = types.map((t) => {
    const callee = typeIndex({ params: t.params.slice(1), results: t.results });
    const sp = t.params.length;
    const code: number[] = [1, 1, I32]; // one local: the stack pointer saved
    code.push(0x41, 0, 0x24, 0); // flag = 0: one left raised by an exception that reached JavaScript is stale
    code.push(0x41, ...sleb(tableLength), 0x11, ...leb(save), 0, 0x21, ...leb(sp));
    code.push(0x06, t.results[0] ?? 0x40); // try
    for (let i = 1; i < t.params.length; i += 1) code.push(0x20, ...leb(i));
    code.push(0x20, 0, 0x11, ...leb(callee), 0);
    code.push(0x19); // catch_all
    code.push(0x23, 0, 0x45, 0x04, 0x40, 0x09, 1, 0x0b); // not a C++ exception: rethrow
    code.push(0x41, 0, 0x24, 0);
    code.push(0x20, ...leb(sp), 0x41, ...sleb(tableLength + 1), 0x11, ...leb(restore), 0);
    code.push(0x41, 1, 0x41, 0, 0x41, ...sleb(tableLength + 2), 0x11, ...leb(setThrew), 0);
    const result = t.results[0];
    if (result !== undefined) code.push(...zero(result));
    code.push(0x0b, 0x0b);
    return [...leb(code.length), ...code];
  });
  const funcTypes = types.map((t) => typeIndex(t));
  const section = (id: number, items: number[][]): number[] => {
    const body = [...leb(items.length), ...items.flat()];
    return [id, ...leb(body.length), ...body];
  };
  const name = (s: string): number[] => [...leb(s.length), ...Buffer.from(s, "utf8")];
  const vec = (ts: number[]): number[] => [...leb(ts.length), ...ts];
  return new Uint8Array([
    0, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, typeList.map((t) => [0x60, ...vec(t.params), ...vec(t.results)])),
    ...section(2, [
      [...name("env"), ...name("table"), 1, 0x70, 0, ...leb(tableLength + 3)],
      [...name("env"), ...name("flag"), 3, I32, 1],
    ]),
    ...section(3, funcTypes.map((t) => leb(t))),
    ...section(7, types.map((_, i) => [...name(`i${i}`), 0, ...leb(i)])),
    ...section(10, bodies),
  ]);
}

function zero(type: number): number[] {
  if (type === 0x7e) return [0x42, 0];
  if (type === 0x7d) return [0x43, 0, 0, 0, 0];
  if (type === 0x7c) return [0x44, 0, 0, 0, 0, 0, 0, 0, 0];
  return [0x41, 0];
}

/** A non-negative number as a signed LEB128 (an `i32.const`'s immediate). */
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n === 0 && (b & 0x40) === 0) return [...out, b];
    out.push(b | 0x80);
  }
}
