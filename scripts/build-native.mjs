#!/usr/bin/env node
// Builds the optional native addon (kernel-assisted page tracking) with
// node-gyp. It is optional: where it cannot be built (no compiler, no Node
// headers, not Linux), Ferry runs with its portable tracker and says so.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const gyp = path.join(root, "node_modules", "node-gyp", "bin", "node-gyp.js");
if (process.platform !== "linux") {
  console.log("ferry: native page tracker skipped (Linux only); the portable tracker will be used");
  process.exit(0);
}
if (!existsSync(gyp)) {
  console.log("ferry: node-gyp is not installed; the portable page tracker will be used");
  process.exit(0);
}
// Offline machines build against installed headers instead of downloading them.
const nodedir = process.env.npm_config_nodedir || (existsSync("/usr/include/node/node_api.h") ? "/usr" : "");
const args = [gyp, "rebuild", "--directory", path.join(root, "native"), ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
const r = spawnSync(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" });
if (r.status !== 0) {
  console.log(`ferry: could not build the native page tracker; the portable one will be used.\n${(r.stderr || r.stdout).split("\n").slice(-15).join("\n")}`);
  process.exit(0);
}
console.log("ferry: native page tracker built");
