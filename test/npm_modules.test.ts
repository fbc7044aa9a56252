/**
 * Issue 14 part 3: large WASI command modules published on npm (a speech
 * synthesizer, a logic-synthesis tool, a document converter) run under
 * `ferry exec` and print what they print under node:wasi. Fetched by
 * `_npm_modules.ts` (skipped, with the reason, when the registry cannot be
 * reached). Each is instrumented from scratch, in a cache folder of the
 * test's own.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ferry, nodeWasi, tempDir } from "./_helpers.js";
import { fetchNpmModule, NPM_MODULES } from "./_npm_modules.js";

/**
 * Instrumenting from scratch on two cores: flite a few seconds, pandoc
 * (58.6 MB, 620,000 functions) about half a minute, yosys (30.8 MB, 34,000
 * functions) one to two minutes (docs/runtime.md, "Large modules").
 */
const RUN_TIMEOUT_MS = 5 * 60_000;

describe("large WASI modules from npm", { timeout: 3 * RUN_TIMEOUT_MS }, () => {
  const cache = tempDir("npm-instrumented");
  for (const fixture of NPM_MODULES) {
    it(`${fixture.name} ${fixture.args.join(" ")} prints what it prints under node:wasi`, { timeout: RUN_TIMEOUT_MS }, async (t) => {
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
