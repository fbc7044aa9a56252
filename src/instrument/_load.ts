/**
 * Loading binaryen.js, with its wasm kept apart from its JavaScript.
 *
 * binaryen.js is one 15 MB ES module; 14.7 MB of it is a template literal
 * holding Binaryen's wasm build, which V8 must parse, and then turn into
 * bytes, on every start: 0.55 s even with a V8 code cache, 1 s without,
 * before any module is read. So the first load on a machine splits the file
 * in two, kept in `~/.cache/ferry/code`: the wasm's bytes, and the rest
 * (180 KB of JavaScript: Emscripten's glue and Binaryen's API) with an empty
 * literal in place of the bytes. Later loads compile the glue as a script
 * and give it the bytes through Emscripten's `instantiateWasm` hook: 0.17 s
 * (docs/runtime.md, "Instrumentation": figures).
 *
 * To run as a script, three spots of the file are rewritten: `import.meta.url`
 * and `import("node:module")` become arguments, and the closing top-level
 * `await` and `export` become a `return`. Anything else in the file is left
 * as it is. A file of another shape (a new binaryen version) is imported as
 * usual, and only the gain is lost.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import nodeModule from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import vm from "node:vm";
import type Binaryen from "binaryen";
import { codeCacheDir, readChecked, writeChecked } from "../code_cache.js";
import { planInvokers } from "./_invokers.js";

/** The end of binaryen.js: its factory is awaited at top level and exported. */
const MODULE_TAIL = /var ([\w$]+)=await ([\w$]+)\(\),([\w$]+)=\1;export\{\3 as default\};\s*$/;
/** What the factory imports; given to the script as an argument instead. */
const MODULE_IMPORT = 'await import("node:module")';
/** Where the wasm's literal starts: decoded into the bytes only when the module has no `instantiateWasm`. */
const WASM_LITERAL = /\?\?=[\w$]+\(`/;
/** What the cache folder held before: a V8 code cache of the whole file, one per path. */
const OBSOLETE = /^binaryen-[0-9a-f]{16}\.v8cache$/;

/**
 * How binaryen.js was loaded, for measurements and tests: from the files
 * kept, split now and kept, split now and not kept (no folder, or it could
 * not be written), or imported as it is (a file of another shape).
 */
export type BinaryenLoad = "cache-hit" | "cache-written" | "split" | "import";

/** What {@link loadBinaryenModule} gives. */
export interface LoadedBinaryen {
  binaryen: typeof Binaryen;
  how: BinaryenLoad;
  /** Whether its C++ exceptions are caught in wasm (`_invokers.ts`) rather than by Emscripten's JavaScript. */
  wasm_invokers: boolean;
}

/** Options of {@link loadBinaryenModule}. */
export interface LoadOptions {
  /** Catch Binaryen's C++ exceptions in wasm where its glue allows (default true; false for comparisons). */
  wasm_invokers?: boolean;
}

/** binaryen.js in two parts. */
interface Split {
  /** A script whose value is the factory, taking its URL, `node:module` and the Emscripten module's options. */
  glue: string;
  wasm: Uint8Array;
}

/**
 * Loads binaryen.js, from the files split from it in `dir` when there are
 * some for this build (and writes them when not). `dir` null: split in
 * memory, nothing written.
 */
export async function loadBinaryenModule(dir: string | null = codeCacheDir(), options: LoadOptions = {}): Promise<LoadedBinaryen> {
  const invokers = options.wasm_invokers ?? true;
  const url = import.meta.resolve("binaryen");
  const file = fileURLToPath(url);
  let size: number;
  try {
    size = fs.statSync(file).size;
  } catch {
    // Not a file (a bundle, a loader hook): the import finds it or says why.
    return { binaryen: (await import("binaryen")).default, how: "import", wasm_invokers: false };
  }
  const kept = dir === null ? undefined : keptFiles(dir, file, size);
  if (kept !== undefined) {
    const glue = readChecked(kept.glue);
    const wasm = glue === undefined ? undefined : readChecked(kept.wasm);
    if (glue !== undefined && wasm !== undefined) {
      try {
        return { ...(await start({ glue: glue.toString("utf8"), wasm }, file, url, invokers)), how: "cache-hit" };
      } catch {
        // Made from another build of the same size and version, or beyond what a digest sees: split again below.
      }
    }
  }
  const split = splitSource(fs.readFileSync(file, "utf8"));
  if (split === undefined) return { binaryen: (await import("binaryen")).default, how: "import", wasm_invokers: false };
  const started = await start(split, file, url, invokers);
  if (dir === null || kept === undefined) return { ...started, how: "split" };
  const written = writeChecked(kept.glue, Buffer.from(split.glue, "utf8")) && writeChecked(kept.wasm, split.wasm);
  if (written) removeObsolete(dir);
  return { ...started, how: written ? "cache-written" : "split" };
}

/** Runs the glue's factory with `split.wasm` as its module; rejects if the wasm does not compile or link. */
async function start(split: Split, file: string, url: string, invokers: boolean): Promise<{ binaryen: typeof Binaryen; wasm_invokers: boolean }> {
  // Compiled off this thread while the glue is compiled and set up.
  const compiling = WebAssembly.compile(split.wasm);
  let failed!: (err: unknown) => void;
  const failure = new Promise<never>((_, reject) => (failed = reject));
  compiling.catch(failed);
  const factory = new vm.Script(split.glue, { filename: file }).runInThisContext() as (url: string, module: typeof nodeModule, options: object) => Promise<typeof Binaryen>;
  let planned = false;
  const options = {
    // Emscripten's hook: it waits for `receive`, and has no way to be told of a failure, so the race below is.
    instantiateWasm(imports: WebAssembly.Imports, receive: (instance: WebAssembly.Instance) => void): object {
      const plan = invokers ? planInvokers(split.glue, split.wasm, imports) : undefined;
      compiling
        .then(async (module) => {
          const instance = await WebAssembly.instantiate(module, plan?.imports ?? imports);
          planned = plan?.link(instance) ?? false;
          // Not as planned: an instance of Emscripten's own making instead.
          return plan === undefined || planned ? instance : await WebAssembly.instantiate(module, imports);
        })
        // `receive` throws for a module that is not Binaryen's (it looks for its exports).
        .then(receive)
        .catch(failed);
      return {};
    },
  };
  const binaryen = await Promise.race([factory(url, nodeModule, options), failure]);
  return { binaryen, wasm_invokers: planned };
}

/**
 * binaryen.js split into the script and the wasm's bytes, or undefined when
 * the file is not of the shape known.
 */
function splitSource(source: string): Split | undefined {
  const literal = WASM_LITERAL.exec(source);
  if (literal === null) return undefined;
  const start = literal.index + literal[0].length - 1;
  const end = literalEnd(source, start);
  if (end === undefined) return undefined;
  const wasm = latin1(vm.runInThisContext(source.slice(start, end)) as unknown);
  // The wasm's magic and version: anything else is not the literal looked for.
  if (wasm === undefined || wasm.length < 8 || !Buffer.from(wasm.subarray(0, 8)).equals(Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]))) return undefined;
  // An empty literal in its place: never evaluated, since the module is given `instantiateWasm`.
  const rest = source.slice(0, start + 1) + source.slice(end - 1);
  const tail = MODULE_TAIL.exec(rest);
  const imports = rest.split(MODULE_IMPORT).length - 1;
  if (tail === null || imports !== 1 || /\bimport\.meta\.(?!url\b)/.test(rest) || /^\s*(import|export)\s/m.test(rest.slice(0, tail.index))) return undefined;
  const body = rest.slice(0, tail.index).replaceAll("import.meta.url", "__ferry_url").replace(MODULE_IMPORT, "__ferry_module");
  return { glue: `(async function (__ferry_url, __ferry_module, __ferry_options) {${body}\nreturn await ${tail[2]}(__ferry_options);\n})`, wasm };
}

/** The index just past the template literal whose backquote is at `start`, or undefined if it holds a substitution or never ends. */
function literalEnd(source: string, start: number): number | undefined {
  for (let i = start + 1; i < source.length; i += 1) {
    const c = source.charCodeAt(i);
    if (c === 0x5c) i += 1; // a backslash: the next character is escaped
    else if (c === 0x60) return i + 1;
    else if (c === 0x24 && source.charCodeAt(i + 1) === 0x7b) return undefined; // "${"
  }
  return undefined;
}

/** A string of byte-sized characters as those bytes; undefined for anything else. */
function latin1(value: unknown): Uint8Array | undefined {
  if (typeof value !== "string") return undefined;
  const bytes = Buffer.from(value, "latin1");
  // latin1 keeps the low byte of a wider character: checked on the way back.
  return bytes.toString("latin1") === value ? bytes : undefined;
}

/** The two files kept for this binaryen.js: named after its version and size, so that every copy of one build shares them. */
function keptFiles(dir: string, file: string, size: number): { glue: string; wasm: string } {
  let version = "";
  try {
    version = String((JSON.parse(fs.readFileSync(path.join(path.dirname(file), "package.json"), "utf8")) as { version?: unknown }).version);
  } catch {
    // No package.json beside it: the size alone names the files, and a wrong pair fails to link and is split again.
  }
  const key = createHash("sha256").update(JSON.stringify([version, size])).digest("hex").slice(0, 16);
  return { glue: path.join(dir, `binaryen-${key}.js`), wasm: path.join(dir, `binaryen-${key}.wasm`) };
}

/** Removes the code caches earlier versions kept (10 MB each, one per copy of binaryen.js). */
function removeObsolete(dir: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    // The folder went between the write and now: nothing of it is left to remove.
    return;
  }
  for (const name of names) if (OBSOLETE.test(name)) fs.rmSync(path.join(dir, name), { force: true });
}
