#!/usr/bin/env node
// Run a WASI preview1 module with Node's own (uninstrumented) node:wasi.
//
// Usage: node examples/run-node-wasi.mjs [--dir HOSTDIR] [--stack-mb N] [--time] MODULE.wasm [ARGS...]
//   --dir HOSTDIR  preopen HOSTDIR as /data inside the guest (default: none)
//   --stack-mb N   native stack of the thread running the guest, in MiB
//                  (default 64; recurse at depth 100000 needs about 8)
//   --time         print the wall-clock run time to stderr after the guest exits
//                  (off by default so stderr stays deterministic)
// The guest runs in a worker thread (so its native stack can be large) and
// uses this process's stdin/stdout/stderr directly; the environment is empty;
// argv[0] is the module's base name without .wasm. Exits with the guest's
// exit status (or 70 if it traps or node:wasi throws).
import { readFileSync } from "node:fs";
import { basename, resolve } from "node:path";
import { setFlagsFromString } from "node:v8";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";

// node:wasi prints an ExperimentalWarning; drop it so stderr holds only guest output.
process.removeAllListeners("warning");
process.on("warning", (w) => {
  if (w.name !== "ExperimentalWarning") process.stderr.write(`${w.name}: ${w.message}\n`);
});

if (isMainThread) {
  // Node 20's node:wasi has "fast API call" bindings that can crash the process
  // (SIGSEGV / V8 fatal error) once the guest has grown its memory and calls
  // WASI functions repeatedly (nodejs/node#46777, #53087); memhog hits it
  // reliably. Turning fast API calls off before any code is compiled avoids it.
  setFlagsFromString("--no-turbo-fast-api-calls");

  const argv = process.argv.slice(2);
  let dir = null;
  let stackMb = 64;
  let time = false;
  const usage = () => {
    process.stderr.write(
      "usage: node run-node-wasi.mjs [--dir HOSTDIR] [--stack-mb N] [--time] MODULE.wasm [ARGS...]\n",
    );
    process.exit(64);
  };
  while (argv.length > 0 && argv[0].startsWith("--")) {
    const opt = argv.shift();
    if (opt === "--dir" && argv.length > 0) dir = resolve(argv.shift());
    else if (opt === "--stack-mb" && /^\d+$/.test(argv[0] ?? "")) stackMb = Number(argv.shift());
    else if (opt === "--time") time = true;
    else if (opt === "--") break;
    else usage();
  }
  if (argv.length < 1) usage();
  const file = argv.shift();
  const t0 = process.hrtime.bigint();
  const worker = new Worker(new URL(import.meta.url), {
    workerData: { file, args: argv, dir },
    resourceLimits: { stackSizeMb: stackMb },
    stdin: false,
    stdout: false,
    stderr: false,
  });
  let code = 70;
  worker.on("message", (m) => {
    code = m;
  });
  worker.on("error", (e) => {
    process.stderr.write(`run-node-wasi: ${e && e.stack ? e.stack : e}\n`);
    code = 70;
  });
  worker.on("exit", () => {
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (time) process.stderr.write(`[run-node-wasi] ${basename(file)} exit=${code} ${ms.toFixed(0)} ms\n`);
    process.exitCode = code;
  });
} else {
  const { WASI } = await import("node:wasi");
  const { file, args, dir } = workerData;
  const wasi = new WASI({
    version: "preview1",
    args: [basename(file, ".wasm"), ...args],
    env: {},
    preopens: dir === null ? {} : { "/data": dir },
    returnOnExit: true,
  });
  // Ferry's own imports (docs/links.md) as `ferry exec` answers them outside a
  // cluster: no pid, ENOSYS for the rest. A guest that can be held for a test
  // (examples/c/hold.h) imports recv, and runs here as it does there.
  const ENOSYS = 52;
  const ferry = { pid: () => 0, send: () => ENOSYS, recv: () => ENOSYS, migrate: () => ENOSYS };
  const { instance } = await WebAssembly.instantiate(readFileSync(file), { ...wasi.getImportObject(), ferry });
  parentPort.postMessage(wasi.start(instance));
}
