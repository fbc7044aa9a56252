/** Shared helpers of the integration tests: run the CLI, seeded randomness, temp dirs. */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Prng } from "../src/_prng.js";

// Each test process keeps its keys and credentials in a Ferry home of its
// own (children inherit it), never in the user's ~/.ferry.
if (process.env["FERRY_HOME"] === undefined || process.env["FERRY_HOME"] === "") {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-home-"));
  process.env["FERRY_HOME"] = home;
  process.on("exit", () => fs.rmSync(home, { recursive: true, force: true }));
}

/** The repository root (tests run from dist/test). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
/** The ferry command. */
export const FERRY = path.join(ROOT, "bin", "ferry.js");
/** The example guests. */
export const EXAMPLES = path.join(ROOT, "examples");

/** What a command did. */
export interface RunResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
}

/**
 * The Ferry home of this test process (keys that `ferry exec` makes, the
 * test CA and client credential land here, never in the user's ~/.ferry):
 * one temporary directory per test file, removed when it ends. Every
 * `ferry()` uses it unless told another.
 */
export function testHome(): string {
  return process.env["FERRY_HOME"] as string;
}

/**
 * Runs `ferry ARGS...` as a fresh OS process; `stdin` is written then closed.
 * FERRY_HOME is {@link testHome} unless `env` sets it.
 */
export function ferry(args: readonly string[], options: { stdin?: string | Buffer; env?: NodeJS.ProcessEnv; timeout_ms?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [FERRY, ...args], {
      stdio: [options.stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      env: { ...process.env, FERRY_HOME: testHome(), ...options.env },
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on("data", (c: Buffer) => out.push(c));
    child.stderr?.on("data", (c: Buffer) => err.push(c));
    if (options.stdin !== undefined && child.stdin !== null) child.stdin.end(options.stdin);
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeout_ms ?? 120_000);
    child.on("error", reject);
    child.on("close", (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err) });
    });
  });
}

/**
 * Runs a module under Node's own node:wasi (examples/run-node-wasi.mjs):
 * `args` are that script's (options, MODULE.wasm, the program's arguments);
 * `stdin`, when given, is written then closed. The reference the tests
 * compare `ferry exec` with. Killed after two minutes, as `ferry()` is.
 */
export function nodeWasi(args: readonly string[], stdin?: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(EXAMPLES, "run-node-wasi.mjs"), ...args], { stdio: [stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on("data", (c: Buffer) => out.push(c));
    child.stderr?.on("data", (c: Buffer) => err.push(c));
    if (stdin !== undefined) child.stdin?.end(stdin);
    // Bounded as `ferry()` is: a run that hangs ends killed (signal SIGKILL) instead of holding the test.
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.on("error", reject);
    child.on("close", (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err) });
    });
  });
}

/**
 * Polls `check` until it gives a value (anything but undefined or false),
 * failing after `timeout_ms` with `what`: tests wait on observable state,
 * never on a sleep.
 */
export async function until<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeout_ms = 60_000): Promise<T> {
  const deadline = Date.now() + timeout_ms;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A seeded generator of numbers in [0, 1), so a failing run can be replayed. */
export function prng(seed: number): () => number {
  const p = new Prng(seed);
  return () => p.float();
}

/** The seed of this run: FERRY_TEST_SEED or a fresh one (printed by callers). */
export function testSeed(): number {
  const env = process.env["FERRY_TEST_SEED"];
  return env !== undefined && env !== "" ? Number(env) : Math.floor(Math.random() * 2 ** 31);
}

/** A fresh temporary directory. */
export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `ferry-${prefix}-`));
}

/** Every regular file below `dir`, as relative path → contents. */
export function readTree(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (rel: string): void => {
    for (const entry of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = path.join(rel, entry.name);
      if (entry.isDirectory()) walk(r);
      else if (entry.isFile()) out.set(r, fs.readFileSync(path.join(dir, r)));
    }
  };
  walk("");
  return out;
}
