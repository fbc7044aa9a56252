#!/usr/bin/env node
// Runs every compiled test file (unit tests `*_test.js` beside the code,
// integration tests `test/*.test.js`) with Node's built-in runner. Node 20's
// runner takes no globs, and its directory search would also run helpers.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..", "dist");
const files = [];
const walk = (dir) => {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) walk(full);
    else if (/(_test|\.test)\.js$/.test(entry.name)) files.push(full);
  }
};
walk(root);
files.sort();
const args = ["--test", "--test-concurrency=2", ...process.argv.slice(2), ...files];
const result = spawnSync(process.execPath, args, { stdio: "inherit" });
process.exit(result.status ?? 1);
