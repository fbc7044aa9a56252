/**
 * The official WASI conformance suite (WebAssembly/wasi-testsuite, preview1):
 * every test runs through `ferry exec`, on a fresh copy of its directories,
 * with the arguments, environment, preopens, exit code and stdout its .json
 * gives. A test that cannot pass by design is listed below with its reason,
 * and reported, never skipped in silence. The pass/fail table is printed at
 * the end.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, describe, it } from "node:test";
import { ROOT, ferry, tempDir } from "./_helpers.js";

/**
 * A checkout of the suite's prebuilt preview1 tests (LANG/NAME.wasm and
 * .json): FERRY_WASI_TESTSUITE, else the team's shared copy beside this
 * checkout.
 */
const SUITE = process.env["FERRY_WASI_TESTSUITE"] ?? path.join(ROOT, "..", "shared", "wasi-testsuite");

/** The suite's languages, as its folders are named. */
const LANGUAGES = ["assemblyscript", "c", "rust"] as const;

/** How many tests the suite's preview1 part has: a checkout with fewer is incomplete. */
const SUITE_TESTS = 72;

/**
 * Tests that cannot pass by design, by LANG/NAME, and why (the README's
 * "WASI conformance" section says the same). Such a test still runs: it must
 * fail, so the list cannot go stale.
 */
const EXPECTED_FAILURES: Readonly<Record<string, string>> = {};

/** What a test's .json may say (the suite's README). */
interface SuiteCase {
  args: string[];
  env: string[];
  dirs: string[];
  root: string | null;
  exit_code: number;
  stdout: string | null;
}

function readCase(json_path: string): SuiteCase {
  const none: SuiteCase = { args: [], env: [], dirs: [], root: null, exit_code: 0, stdout: null };
  if (!fs.existsSync(json_path)) return none;
  const raw: unknown = JSON.parse(fs.readFileSync(json_path, "utf8"));
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new Error(`${json_path}: not an object`);
  const o = raw as Record<string, unknown>;
  const strings = (v: unknown, what: string): string[] => {
    if (v === undefined) return [];
    if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) throw new Error(`${json_path}: ${what} is not a list of strings`);
    return v;
  };
  const env = o["env"] ?? {};
  if (typeof env !== "object" || env === null || Array.isArray(env)) throw new Error(`${json_path}: env is not an object`);
  return {
    args: strings(o["args"], "args"),
    env: Object.entries(env).map(([k, v]) => `${k}=${String(v)}`),
    dirs: strings(o["dirs"], "dirs"),
    root: typeof o["root"] === "string" ? o["root"] : null,
    exit_code: typeof o["exit_code"] === "number" ? o["exit_code"] : 0,
    stdout: typeof o["stdout"] === "string" ? o["stdout"] : null,
  };
}

/** Copies `from` to `to`, made writable: the suite's files are read-only, and tests write into their copies. */
function writableCopy(from: string, to: string): void {
  fs.cpSync(from, to, { recursive: true });
  const walk = (p: string): void => {
    const stat = fs.lstatSync(p);
    if (stat.isSymbolicLink()) return;
    fs.chmodSync(p, stat.isDirectory() ? 0o755 : 0o644);
    if (stat.isDirectory()) for (const name of fs.readdirSync(p)) walk(path.join(p, name));
  };
  walk(to);
}

/** Every test of the suite, as LANG/NAME, in order; empty when there is no checkout. */
function suiteTests(): string[] {
  const names: string[] = [];
  for (const lang of LANGUAGES) {
    const dir = path.join(SUITE, lang);
    if (!fs.existsSync(dir)) continue;
    for (const file of fs.readdirSync(dir).sort()) if (file.endsWith(".wasm")) names.push(`${lang}/${file.slice(0, -".wasm".length)}`);
  }
  return names;
}

/** Runs one test through `ferry exec`; the reason it failed, or null when it passed. */
async function runCase(name: string, work: string): Promise<string | null> {
  const lang = path.dirname(name);
  const c = readCase(path.join(SUITE, `${name}.json`));
  const grants: string[] = [];
  for (const d of c.dirs) {
    writableCopy(path.join(SUITE, lang, d), path.join(work, d));
    grants.push("--dir", `${path.join(work, d)}:${d}`);
  }
  if (c.root !== null) {
    writableCopy(path.join(SUITE, lang, c.root), path.join(work, "root"));
    grants.push("--dir", `${path.join(work, "root")}:/`);
  }
  const env = c.env.flatMap((e) => ["--env", e]);
  const r = await ferry(["exec", ...grants, ...env, path.join(SUITE, `${name}.wasm`), ...c.args]);
  const stderr = r.stderr.toString().trim().split("\n").slice(-3).join(" | ");
  if (r.status !== c.exit_code) return `exit ${String(r.status ?? r.signal)}, expected ${c.exit_code}${stderr === "" ? "" : `: ${stderr}`}`;
  if (c.stdout !== null && r.stdout.toString() !== c.stdout) return `stdout ${JSON.stringify(r.stdout.toString())}, expected ${JSON.stringify(c.stdout)}`;
  return null;
}

describe("the official WASI testsuite (preview1) through ferry exec", { concurrency: 2 }, () => {
  const tests = suiteTests();
  const missing = tests.length === 0 ? `no WASI testsuite at ${SUITE} (set FERRY_WASI_TESTSUITE to a checkout)` : null;
  const results = new Map<string, { passed: boolean; why: string | null }>();
  const work: string[] = [];

  after(() => {
    for (const d of work) fs.rmSync(d, { recursive: true, force: true });
    if (results.size === 0) return;
    const passed = [...results.values()].filter((r) => r.passed).length;
    const width = Math.max(...[...results.keys()].map((n) => n.length));
    const lines = [`WASI testsuite (preview1) through ferry exec: ${passed}/${tests.length} pass`];
    for (const name of tests) {
      const r = results.get(name);
      const state = r === undefined ? "not run" : r.passed ? "pass" : name in EXPECTED_FAILURES ? "expected failure" : "FAIL";
      lines.push(`  ${name.padEnd(width)}  ${state}${r?.why === null || r?.why === undefined ? "" : `  (${r.why})`}`);
    }
    process.stdout.write(`${lines.join("\n")}\n`);
  });

  it("the checkout is complete", { skip: missing ?? false }, () => {
    assert.equal(tests.length, SUITE_TESTS, `${SUITE} has ${tests.length} tests, expected ${SUITE_TESTS}`);
    for (const name of Object.keys(EXPECTED_FAILURES)) assert.ok(tests.includes(name), `${name} is listed as an expected failure but is not in the suite`);
  });

  for (const name of tests) {
    it(name, async () => {
      const dir = tempDir("wasi-testsuite");
      work.push(dir);
      const failure = await runCase(name, dir);
      const expected = EXPECTED_FAILURES[name];
      if (expected === undefined) {
        results.set(name, { passed: failure === null, why: failure });
        assert.equal(failure, null);
      } else {
        results.set(name, { passed: false, why: expected });
        assert.notEqual(failure, null, `${name} passes now: take it off the expected failures ("${expected}")`);
      }
    });
  }
});
