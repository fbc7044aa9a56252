/**
 * The process worker's entry when it runs the bundle (`_worker_code.ts`):
 * compiles the bundle as a script with the code cache V8 made of it in an
 * earlier worker, and runs it. A fresh isolate otherwise compiles each
 * function the first time it is called: the bundle's top level at every
 * boot, and during the guest's run every host call and poll it makes the
 * first time (flite, timed in the worker: its WASI calls 2.5-3.8 ms
 * without the cache and 1.2-1.7 with it, its polls 0.9-1.3 and 0.4-0.6;
 * the compile at boot 4-5.4 ms and 1.3-1.5).
 * V8 checks the cache against the source, its own version and its flags,
 * and compiles as usual when it does not fit (`cachedDataRejected`); the
 * worker then makes a new one for its controller.
 */
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import vm from "node:vm";
import { workerData } from "node:worker_threads";
import { WORKER_SCRIPT_KEY, type WorkerBoot, type WorkerScriptState } from "./_protocol.js";

const given = (workerData as WorkerBoot).script;
if (given === undefined) throw new Error("the process worker's script entry started without a script to run");
// CommonJS's own wrapper: the bundle is a CommonJS file (scripts/build-worker.mjs).
const source = `(function (exports, require, module, __filename, __dirname) {${fs.readFileSync(given.file, "utf8")}\n})`;
const script = new vm.Script(source, given.cached_data === undefined ? { filename: given.file } : { filename: given.file, cachedData: given.cached_data });
const state: WorkerScriptState = { script, cache_wanted: given.cached_data === undefined || script.cachedDataRejected === true };
(globalThis as Record<symbol, unknown>)[WORKER_SCRIPT_KEY] = state;
const module = { exports: {} };
const run = script.runInThisContext() as (exports: object, require: NodeJS.Require, module: object, filename: string, dirname: string) => void;
run(module.exports, createRequire(given.file), module, given.file, path.dirname(given.file));
