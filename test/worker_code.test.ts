/**
 * V8's code cache of the process worker (`src/runtime/_worker_code.ts`): the
 * first guest's worker makes it, later workers of the same process and the
 * next process's take it from memory and from the code cache folder, and a
 * damaged file, or one another user could have written, is not used.
 * Each case runs in a process of its own: the cache is kept per process.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { wat } from "../src/instrument/_wat.js";
import { workerCode } from "../src/runtime/mod.js";

/** Prints "ran" and exits 0. */
const GUEST = wat(`(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "ran\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 4))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))`);

const RUNTIME = new URL("../src/runtime/mod.js", import.meta.url).href;

/** Runs the guest `runs` times, one after another, in a new Node process; what each printed, and where its workers' code cache came from. */
async function runProcess(cache_dir: string, guest_file: string, runs: number, options: { collect?: boolean } = {}): Promise<{ outputs: string[]; cache: string; made: number; code: string }> {
  const script = `
    import fs from "node:fs";
    const { collectNow, GuestProcess, workerCodeCache } = await import(${JSON.stringify(RUNTIME)});
    const wasm = fs.readFileSync(${JSON.stringify(guest_file)});
    const outputs = [];
    for (let i = 0; i < ${runs}; i += 1) {
      let out = "";
      const io = { stdin: null, stdout: { kind: "callback", write: (b) => (out += Buffer.from(b).toString()) }, stderr: { kind: "callback", write: () => {} }, cache_dir: null };
      const proc = await GuestProcess.start({ wasm, module_path: "guest.wasm", args: ["guest"], env: [], preopens: [] }, io);
      const status = await proc.exited;
      outputs.push(out + " " + JSON.stringify(status));
      ${options.collect === true ? "collectNow();" : ""}
    }
    console.log(JSON.stringify({ outputs, ...workerCodeCache() }));
  `;
  const file = path.join(path.dirname(guest_file), "child.mjs");
  fs.writeFileSync(file, script);
  const { stdout } = await promisify(execFile)(process.execPath, [file], { env: { ...process.env, FERRY_CODE_CACHE_DIR: cache_dir } });
  return JSON.parse(stdout) as { outputs: string[]; cache: string; made: number; code: string };
}

describe("the process worker's code cache", () => {
  let dir: string;
  let guest_file: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-worker-code-"));
    guest_file = path.join(dir, "guest.wasm");
    fs.writeFileSync(guest_file, GUEST);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const cacheFiles = (cache_dir: string): string[] => fs.readdirSync(cache_dir).filter((n) => /^worker-[0-9a-f]{16}\.v8$/.test(n));
  /** The cache file a first process made in a new folder `name`. */
  const madeOnce = async (name: string): Promise<{ cache_dir: string; file: string }> => {
    const cache_dir = path.join(dir, name);
    await runProcess(cache_dir, guest_file, 1);
    const [made] = cacheFiles(cache_dir);
    assert.ok(made !== undefined, "the first process kept a cache");
    return { cache_dir, file: path.join(cache_dir, made) };
  };
  const ran = (outputs: string[]): void => {
    for (const o of outputs) assert.equal(o, `ran\n ${JSON.stringify({ kind: "exit", code: 0 })}`);
  };

  it("is made once by the first guest's worker, kept for the next workers and read by the next process", async (t) => {
    if (workerCode() !== "bundle") return t.skip("workers run the modules (no fresh bundle): run npm run build");
    const cache_dir = path.join(dir, "first");
    const first = await runProcess(cache_dir, guest_file, 3);
    ran(first.outputs);
    // One cache made: the second and third workers took the one the first made, and V8 accepted it (else they make another).
    assert.deepEqual({ cache: first.cache, made: first.made }, { cache: "made", made: 1 });
    assert.equal(cacheFiles(cache_dir).length, 1);
    assert.equal(fs.statSync(cache_dir).mode & 0o077, 0, "the folder is private");
    const second = await runProcess(cache_dir, guest_file, 2);
    ran(second.outputs);
    assert.deepEqual({ cache: second.cache, made: second.made }, { cache: "read", made: 0 });
  });

  it("is still taken after the process asked V8 for a collection (V8's flags are left as they were)", async (t) => {
    if (workerCode() !== "bundle") return t.skip("workers run the modules (no fresh bundle): run npm run build");
    const cache_dir = path.join(dir, "collected");
    // A collection after each guest: the first one exposes V8's collector, which takes a flag of V8's.
    const collected = await runProcess(cache_dir, guest_file, 3, { collect: true });
    ran(collected.outputs);
    assert.deepEqual({ cache: collected.cache, made: collected.made }, { cache: "made", made: 1 });
  });

  it("is made again when the file kept is damaged", async (t) => {
    if (workerCode() !== "bundle") return t.skip("workers run the modules (no fresh bundle): run npm run build");
    const { cache_dir, file } = await madeOnce("damaged");
    const bytes = fs.readFileSync(file);
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 100) ^ 0xff, bytes.length - 100);
    fs.writeFileSync(file, bytes);
    const after_damage = await runProcess(cache_dir, guest_file, 2);
    ran(after_damage.outputs);
    assert.deepEqual({ cache: after_damage.cache, made: after_damage.made }, { cache: "made", made: 1 });
    assert.notDeepEqual(fs.readFileSync(file), bytes, "the damaged file was replaced");
  });

  it("is not read from a file others may write", async (t) => {
    if (workerCode() !== "bundle") return t.skip("workers run the modules (no fresh bundle): run npm run build");
    const { cache_dir, file } = await madeOnce("shared");
    fs.chmodSync(file, 0o666);
    const shared = await runProcess(cache_dir, guest_file, 1);
    ran(shared.outputs);
    assert.deepEqual({ cache: shared.cache, made: shared.made }, { cache: "made", made: 1 });
  });
});
