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
// Longest first, so that the two lanes end together: the integration tests
// (test/) run before the unit tests beside the code (src/), which are short
// and fill the gaps at the end, and the slowest integration tests lead. The
// list only orders; a file missing from it still runs.
const SLOW_FIRST = ["large_module", "chain", "failover", "failover_logs", "postcopy", "migrate", "checkpoints", "netns", "cli_cluster"];
const integration = path.join(root, "test") + path.sep;
const rank = (file) => {
  if (!file.startsWith(integration)) return SLOW_FIRST.length + 1;
  const slow = SLOW_FIRST.indexOf(path.basename(file, ".test.js"));
  return slow >= 0 ? slow : SLOW_FIRST.length;
};
files.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
// A file that hangs fails, and then ends even if it left something open, so
// one hang cannot hold the whole run (and CI) hostage. Node 20 applies
// --test-timeout to each file as a whole, not to each test in it: the bound
// is past the longest file on a busy machine (chain took over ten minutes
// here under load; npm_modules allows itself fifteen), or a slow file that
// would pass is cancelled.
const FILE_TIMEOUT_MS = 30 * 60_000;
const args = ["--test", "--test-concurrency=2", `--test-timeout=${FILE_TIMEOUT_MS}`, "--test-force-exit", ...process.argv.slice(2), ...files];
const result = spawnSync(process.execPath, args, { stdio: "inherit" });
process.exit(result.status ?? 1);
