/**
 * Loading binaryen.js with a V8 code cache.
 *
 * binaryen.js is one 15 MB ES module that holds Binaryen's wasm build as a
 * string literal. V8 parses all of it when the module is compiled and again
 * when its factory function first runs: about a second of CPU on every cold
 * start, before any module is read. Node 20 keeps no compile cache for ES
 * modules, so the file is compiled here as a script (`vm.Script`) with
 * `cachedData`: the bytecode V8 made the first time, kept on disk, replaces
 * both parses (docs/runtime.md, "Instrumentation": figures).
 *
 * To run as a script, three spots of the file are rewritten: `import.meta.url`
 * and `import("node:module")` become arguments, and the closing top-level
 * `await` and `export` become a `return`. Anything else in the file is left as
 * it is. A file of another shape (a new binaryen version) is not rewritten at
 * all: it is imported as usual, and only the cache's gain is lost.
 */
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import nodeModule from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import vm from "node:vm";
import { v8FlagsSet } from "../v8_flags.js";
import type Binaryen from "binaryen";

/** The end of binaryen.js: its factory is awaited at top level and exported. */
const MODULE_TAIL = /var ([\w$]+)=await ([\w$]+)\(\),([\w$]+)=\1;export\{\3 as default\};\s*$/;
/** What the factory imports; given to the script as an argument instead. */
const MODULE_IMPORT = 'await import("node:module")';
/** SHA-256 in front of each cache file: V8 only checks a cache's version, flags and source length, not its bytes. */
const DIGEST_BYTES = 32;

/** Where the code cache is kept: `FERRY_CODE_CACHE_DIR`, else beside the instrumented modules; "" turns it off. */
export function codeCacheDir(): string | null {
  const fromEnv = process.env["FERRY_CODE_CACHE_DIR"];
  if (fromEnv !== undefined) return fromEnv === "" ? null : fromEnv;
  return path.join(os.homedir(), ".cache", "ferry", "code");
}

/** How binaryen.js was loaded, for measurements and tests. */
export type BinaryenLoad = "cache-hit" | "cache-written" | "script" | "import";

/** What {@link loadBinaryenModule} gives. */
export interface LoadedBinaryen {
  binaryen: typeof Binaryen;
  how: BinaryenLoad;
}

/**
 * Loads binaryen.js, from the code cache in `dir` when it holds one for this
 * file, this Node and these flags (and writes one when not). `dir` null:
 * compiled without a cache.
 */
export async function loadBinaryenModule(dir: string | null = codeCacheDir()): Promise<LoadedBinaryen> {
  const file = fileURLToPath(import.meta.resolve("binaryen"));
  let source: string;
  try {
    source = fs.readFileSync(file, "utf8");
  } catch {
    // Unreadable as a file (a bundle, a loader hook): the import finds it or says why.
    return { binaryen: (await import("binaryen")).default, how: "import" };
  }
  const script = asScript(source);
  if (script === undefined) return { binaryen: (await import("binaryen")).default, how: "import" };
  const cacheFile = dir === null ? undefined : path.join(dir, cacheName(file, source.length));
  const cached = cacheFile === undefined ? undefined : readCache(cacheFile);
  const compiled = new vm.Script(script, { filename: file, ...(cached !== undefined ? { cachedData: cached } : {}) });
  const factory = compiled.runInThisContext() as (url: string, module: typeof nodeModule) => Promise<typeof Binaryen>;
  const binaryen = await factory(import.meta.resolve("binaryen"), nodeModule);
  if (cacheFile === undefined) return { binaryen, how: "script" };
  if (cached !== undefined && compiled.cachedDataRejected !== true) return { binaryen, how: "cache-hit" };
  // Made after the factory ran, the cache holds its bytecode too (the second parse).
  return { binaryen, how: writeCache(cacheFile, compiled.createCachedData()) ? "cache-written" : "script" };
}

/** binaryen.js as the source of a script whose value is its factory, or undefined when the file is not of the shape known. */
function asScript(source: string): string | undefined {
  const tail = MODULE_TAIL.exec(source);
  const imports = source.split(MODULE_IMPORT).length - 1;
  if (tail === null || imports !== 1 || /\bimport\.meta\.(?!url\b)/.test(source) || /^\s*(import|export)\s/m.test(source.slice(0, tail.index))) return undefined;
  const body = source.slice(0, tail.index).replaceAll("import.meta.url", "__ferry_url").replace(MODULE_IMPORT, "__ferry_module");
  return `(async function (__ferry_url, __ferry_module) {${body}\nreturn await ${tail[2]}();\n})`;
}

/** One cache file per binaryen.js, Node build and V8 flags (given on the command line or set since): V8 rejects a cache made under others. */
function cacheName(file: string, length: number): string {
  const key = createHash("sha256").update(JSON.stringify([file, length, process.version, process.arch, process.execArgv, v8FlagsSet()])).digest("hex").slice(0, 16);
  return `binaryen-${key}.v8cache`;
}

function readCache(file: string): Buffer | undefined {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch {
    // No cache yet (the usual first run): one is written after the load.
    return undefined;
  }
  const data = bytes.subarray(DIGEST_BYTES);
  // A damaged cache could feed V8 bad bytecode: it is never used, and is written anew.
  if (bytes.length <= DIGEST_BYTES || !createHash("sha256").update(data).digest().equals(bytes.subarray(0, DIGEST_BYTES))) return undefined;
  return data;
}

function writeCache(file: string, data: Buffer): boolean {
  const tmp = `${file}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(tmp, Buffer.concat([createHash("sha256").update(data).digest(), data]));
    fs.renameSync(tmp, file);
    return true;
  } catch {
    // A read-only or full cache folder costs the next start time, not correctness.
    fs.rmSync(tmp, { force: true });
    return false;
  }
}
