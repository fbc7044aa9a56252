#!/usr/bin/env node
// Bundles the process worker (dist/src/runtime/_worker.js and the ~50
// modules it imports) into one CommonJS file, dist/src/process_worker.cjs,
// with the list of what went into it beside it. A node starts a worker
// thread per process and per incoming migration; loading one file instead
// of the module graph takes about 60 ms of CPU off each (measured: 7 workers
// at once, 1,080 → 670 ms of the process's CPU). CommonJS, so that the
// worker's entry (src/runtime/_worker_script.ts) can compile it as a script
// with V8's code cache, which Node 20 has no way to give an ES module. The
// runtime uses the bundle only while no input is newer than it
// (src/runtime/_worker_code.ts), so a `tsc` without this step never runs a
// stale worker. Same directory depth as dist/src/native.js: paths it
// resolves from its own location still hold.
import { build } from "esbuild";
import { rmSync, writeFileSync } from "node:fs";
import path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const outfile = path.join(root, "dist", "src", "process_worker.cjs");
// The ES module bundle earlier builds made: nothing runs it any more.
rmSync(path.join(root, "dist", "src", "process_worker.js"), { force: true });
const result = await build({
  entryPoints: [path.join(root, "dist", "src", "runtime", "_worker.js")],
  outfile,
  bundle: true,
  platform: "node",
  format: "cjs",
  target: ["node20"],
  // The modules' own URL (the native addon is found from it): the bundle's, as they sit at its depth.
  define: { "import.meta.url": "__ferry_bundle_url" },
  banner: { js: 'var __ferry_bundle_url = require("node:url").pathToFileURL(__filename).href;' },
  // npm packages load from node_modules as before (none is imported today; one would have to offer require()).
  packages: "external",
  metafile: true,
  logLevel: "warning",
  // import.meta.resolve() in src/instrument/_load.ts, which the worker imports
  // only for constants of the instrumenter's: tree-shaken out of the bundle.
  logOverride: { "empty-import-meta": "silent" },
});
// Inputs relative to dist/src, where the runtime looks for them.
const inputs = Object.keys(result.metafile.inputs).map((p) => path.relative(path.join(root, "dist", "src"), path.join(root, p)));
writeFileSync(path.join(root, "dist", "src", "process_worker.inputs.json"), JSON.stringify({ inputs }) + "\n");
