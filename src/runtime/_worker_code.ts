/**
 * Which code a process worker runs, and V8's code cache of it.
 *
 * `npm run build` bundles the worker into one CommonJS file
 * (scripts/build-worker.mjs): one file loads in about 60 ms less CPU than its
 * ~50 modules, paid by every start and every incoming move. It is used while
 * none of the modules that went into it is newer than it; the modules
 * themselves otherwise (a build without that step, or a module rebuilt
 * since).
 *
 * A worker compiles the bundle as a script (`_worker_script.ts`) with the
 * code cache the first worker that ran a guest made: the functions the
 * guest's run compiled come from it instead of being compiled again in each
 * new isolate. The cache is kept in memory for the workers this process
 * starts, and in the code cache folder (`code_cache.ts`) for the next
 * process, named after the bundle's contents, Node's version and flags.
 * It is read only from a folder and a file of this user's that nobody else
 * may write: its contents are code this process runs.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { bundleIsFresh } from "../bundle.js";
import { codeCacheDir, readChecked, writeChecked } from "../code_cache.js";
import type { WorkerScript } from "./_protocol.js";

const BUNDLE_URL = new URL("../process_worker.cjs", import.meta.url);
/** The bundle's entry: compiles it with the code cache. */
const SCRIPT_ENTRY_URL = new URL("./_worker_script.js", import.meta.url);
const MODULES_URL = new URL("./_worker.js", import.meta.url);

/** What a worker is started with. */
export interface WorkerEntry {
  url: URL;
  /** For the bundle's entry; absent for the modules. */
  script?: WorkerScript;
}

/** The cache for this process: its file (null: no folder to keep it in) and its bytes once read or made. */
interface Kept {
  file: string | null;
  bytes: Uint8Array | undefined;
  how: "none" | "read" | "made";
}

let bundled: boolean | undefined;
let kept: Kept | undefined;
/** Caches workers made: one per process when none was kept, or when V8 refused the one given. */
let made = 0;

function runsBundle(): boolean {
  bundled ??= bundleIsFresh(BUNDLE_URL, new URL("../process_worker.inputs.json", import.meta.url), new URL("../", import.meta.url));
  return bundled;
}

/** Which code process workers run: the bundle, or the modules (the bundle missing or stale). */
export function workerCode(): "bundle" | "modules" {
  return runsBundle() ? "bundle" : "modules";
}

/** The entry and script of the next worker to start. */
export function workerEntry(): WorkerEntry {
  if (!runsBundle()) return { url: MODULES_URL };
  const file = fileURLToPath(BUNDLE_URL);
  const bytes = keptCache().bytes;
  return { url: SCRIPT_ENTRY_URL, script: bytes === undefined ? { file } : { file, cached_data: bytes } };
}

/** A worker's code cache (a `code-cache` message): the next workers get it, and it is written for the next process. */
export function keepCodeCache(bytes: Uint8Array): void {
  made += 1;
  const k = keptCache();
  k.bytes = bytes;
  k.how = "made";
  if (k.file !== null && writeChecked(k.file, bytes)) removeOthers(k.file);
}

/** The worker's code, where its code cache came from, and how many caches workers made in this process. */
export function workerCodeCache(): { code: "bundle" | "modules"; cache: "none" | "read" | "made"; made: number } {
  return { code: workerCode(), cache: kept?.how ?? "none", made };
}

function keptCache(): Kept {
  if (kept !== undefined) return kept;
  const dir = codeCacheDir();
  let file: string | null = null;
  let bytes: Uint8Array | undefined;
  try {
    if (dir !== null) {
      const key = createHash("sha256").update(fs.readFileSync(BUNDLE_URL)).update(JSON.stringify([process.version, process.arch, process.execArgv])).digest("hex").slice(0, 16);
      file = path.join(dir, `worker-${key}.v8`);
      if (privateToUs(dir) && privateToUs(file)) bytes = readChecked(file);
    }
  } catch {
    // The bundle unreadable (removed since it was checked): its worker fails to start and says why; no cache to keep.
    file = null;
  }
  kept = { file, bytes, how: bytes === undefined ? "none" : "read" };
  return kept;
}

/** Whether `file` is this user's and only this user may write it. */
function privateToUs(file: string): boolean {
  try {
    const s = fs.statSync(file);
    return (process.getuid === undefined || s.uid === process.getuid()) && (s.mode & 0o022) === 0;
  } catch {
    // Not there yet: nothing to read.
    return false;
  }
}

/** Caches of other builds kept besides this one's: another install, or Node started with other flags, on the same machine. */
const OTHERS_KEPT_MAX = 3;

/** Removes the oldest caches of other builds (one per bundle, Node and flags; ~130 KB each) beyond {@link OTHERS_KEPT_MAX}. */
function removeOthers(file: string): void {
  const dir = path.dirname(file);
  try {
    const others = fs
      .readdirSync(dir)
      .filter((name) => /^worker-[0-9a-f]{16}\.v8$/.test(name) && name !== path.basename(file))
      .map((name) => ({ name, mtime_ms: fs.statSync(path.join(dir, name)).mtimeMs }))
      .sort((a, b) => b.mtime_ms - a.mtime_ms);
    for (const { name } of others.slice(OTHERS_KEPT_MAX)) fs.rmSync(path.join(dir, name), { force: true });
  } catch {
    // The folder or a file went meanwhile (another process tidying it): what is left is tidied next time.
  }
}
