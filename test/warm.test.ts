/**
 * Warm process workers (issue 15, setup): a process started while a warm
 * worker waits takes it, runs exactly as in a new worker, and another one
 * starts warming; turning warming off ends the idle ones.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { wat } from "../src/instrument/_wat.js";
import { claimWarm, GuestProcess, keepWarm, refillWarm, warmWorkers, workerCode, type ProcessIo } from "../src/runtime/mod.js";
import { takeWorker } from "../src/runtime/_warm.js";
import { RECLAIM_MEMORIES_MAX, reclaimPending } from "../src/runtime/_reclaim.js";
import type { WorkerInit } from "../src/runtime/_protocol.js";
import { nativeAddon } from "../src/native.js";
import { until } from "./_helpers.js";

/** Prints "warm" and exits 3. */
const GUEST = wat(`(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "warm\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 5))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $exit (i32.const 3))))`);

/** Sleeps 1.5 s in poll_oneoff (long enough to hibernate), prints "slept" and exits 0. */
const SLEEPER = wat(`(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 512) "slept\\n")
  (func (export "_start")
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 1500000000))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
    (i32.store (i32.const 256) (i32.const 512))
    (i32.store (i32.const 260) (i32.const 6))
    (drop (call $write (i32.const 1) (i32.const 256) (i32.const 1) (i32.const 264)))
    (call $exit (i32.const 0))))`);

function io(): { io: ProcessIo; out: () => string } {
  const out: Uint8Array[] = [];
  return { io: { stdout: { kind: "callback", write: (b) => out.push(b) }, stderr: { kind: "callback", write: () => undefined }, cache_dir: null }, out: () => Buffer.concat(out).toString() };
}

describe("warm process workers", () => {
  after(() => keepWarm(0));

  it("a process takes the warm worker, runs as in a new one, and a new one warms up after it", async () => {
    keepWarm(1);
    await until("a worker is warm", () => warmWorkers().idle === 1);
    const taken = warmWorkers().taken;
    const a = io();
    const proc = await GuestProcess.start({ wasm: GUEST, module_path: "guest.wasm", args: ["guest"], env: [], preopens: [] }, a.io);
    assert.equal(warmWorkers().taken, taken + 1, "the warm worker was not taken");
    assert.deepEqual(await proc.exited, { kind: "exit", code: 3 });
    assert.equal(a.out(), "warm\n");
    await until("another worker is warm", () => warmWorkers().idle === 1);
    // A standby too: it gets its init the same way, and its memory is fresh.
    const b = io();
    const standby = await GuestProcess.standby(GUEST, b.io);
    assert.equal(warmWorkers().taken, taken + 2);
    assert.equal(new Uint8Array(standby.memory.buffer)[64], 0, "a standby's memory is not all zero");
    await standby.terminate();
  });

  it("without warm workers a process still starts, in a new worker; keepWarm(0) ends the idle ones", async () => {
    keepWarm(1);
    await until("a worker is warm", () => warmWorkers().idle === 1);
    keepWarm(0);
    assert.equal(warmWorkers().idle, 0);
    const taken = warmWorkers().taken;
    const a = io();
    const proc = await GuestProcess.start({ wasm: GUEST, module_path: "guest.wasm", args: ["guest"], env: [], preopens: [] }, a.io);
    assert.deepEqual(await proc.exited, { kind: "exit", code: 3 });
    assert.equal(a.out(), "warm\n");
    assert.equal(warmWorkers().taken, taken, "a worker was taken with none warm");
    assert.throws(() => keepWarm(-1), RangeError);
  });

  it("warms one worker at a time: the next starts once the last runs", async () => {
    keepWarm(0);
    keepWarm(3);
    assert.deepEqual([warmWorkers().idle, warmWorkers().warming], [1, 1], "more than one worker started warming at once");
    // Each comes after the one before it is up, until the pool is full.
    await until("three workers are warm", () => warmWorkers().idle === 3 && warmWorkers().warming === 0);
    keepWarm(0);
  });

  it("a take passes over the worker still booting while one that is up waits", async () => {
    keepWarm(0);
    keepWarm(1);
    await until("a worker is up", () => warmWorkers().idle === 1 && warmWorkers().warming === 0);
    // A second starts booting at once; it is the newest in the pool.
    keepWarm(2);
    assert.deepEqual([warmWorkers().idle, warmWorkers().warming], [2, 1]);
    // Not a real init: the worker only has to be taken (it fails on this one, and is ended here).
    const w = takeWorker({} as WorkerInit);
    w.on("error", () => undefined);
    assert.deepEqual([warmWorkers().idle, warmWorkers().warming], [1, 1], "the take took the worker still booting");
    await w.terminate();
    keepWarm(0);
  });

  it("nodes in one process share the pool: it keeps the most any claim asks for, and one node's release leaves the others' workers", async () => {
    const first = claimWarm(2);
    const second = claimWarm(1);
    await until("two workers are warm", () => warmWorkers().idle === 2);
    first();
    assert.equal(warmWorkers().idle, 1, "the remaining claim keeps its worker");
    first(); // a second release changes nothing
    assert.equal(warmWorkers().idle, 1);
    second();
    assert.equal(warmWorkers().idle, 0);
    assert.throws(() => claimWarm(9), RangeError);
  });

  it("a claimant with no core to spare gets no new warm worker until it has one", async () => {
    let spare = false;
    const release = claimWarm(1, () => spare);
    try {
      refillWarm();
      assert.equal(warmWorkers().idle, 0, "a worker warmed while its claimant's cores were all wanted");
      spare = true;
      refillWarm();
      await until("a worker is warm once a core is spare", () => warmWorkers().idle === 1);
      // Taken while busy: no worker boots until there is room again (the one taken comes back when its guest ends: that costs no boot).
      spare = false;
      const spawned = warmWorkers().spawned;
      const proc = await GuestProcess.start({ wasm: GUEST, module_path: "guest.wasm", args: ["guest"], env: [], preopens: [] }, io().io);
      assert.equal(warmWorkers().idle, 0);
      refillWarm();
      assert.equal(warmWorkers().spawned, spawned, "a worker booted while its claimant's cores were all wanted");
      assert.deepEqual(await proc.exited, { kind: "exit", code: 3 });
      await until("the worker comes back", () => warmWorkers().idle === 1);
      assert.equal(warmWorkers().spawned, spawned, "the pool refilled by booting a worker");
    } finally {
      release();
    }
  });

  it("a worker whose guest ended goes back to the pool, and the next process in it runs as in a new one", async () => {
    keepWarm(1);
    await until("a worker is warm", () => warmWorkers().idle === 1 && warmWorkers().warming === 0);
    const before = warmWorkers();
    // Writes a mark into its memory at run time, then prints and exits.
    const marker = wat(`(module
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start") (i32.store (i32.const 4096) (i32.const 0x5ec2e7)) (call $exit (i32.const 5))))`);
    const first = await GuestProcess.start({ wasm: marker, module_path: "marker.wasm", args: ["marker"], env: [], preopens: [] }, io().io);
    assert.deepEqual(await first.exited, { kind: "exit", code: 5 });
    await until("its worker is back in the pool", () => warmWorkers().recycled === before.recycled + 1 && warmWorkers().idle === 1);
    // The next ones take it: no worker was started for them, each gets a memory of its own, and runs as in a new worker.
    const standby = await GuestProcess.standby(marker, io().io);
    assert.equal(new DataView(standby.memory.buffer).getUint32(4096, true), 0, "a memory with the last guest's mark");
    await standby.terminate();
    await until("the pool is full again", () => warmWorkers().idle === 1 && warmWorkers().warming === 0);
    const a = io();
    const next = await GuestProcess.start({ wasm: GUEST, module_path: "guest.wasm", args: ["guest"], env: [], preopens: [] }, a.io);
    assert.deepEqual(await next.exited, { kind: "exit", code: 3 });
    assert.equal(a.out(), "warm\n");
    await until("the last process's worker comes back too", () => warmWorkers().recycled === before.recycled + 2);
    // The standby was stopped (its worker ended), so one boot refilled the pool for the last process; the first's worker served the standby.
    assert.ok(warmWorkers().spawned <= before.spawned + 1, `${warmWorkers().spawned - before.spawned} workers started for 3 processes`);
    keepWarm(0);
  });

  it("a guest that hibernates gives its worker back, and wakes in a pooled one", async () => {
    keepWarm(1);
    await until("a worker is warm", () => warmWorkers().idle === 1 && warmWorkers().warming === 0);
    const before = warmWorkers();
    const c = io();
    const proc = await GuestProcess.start({ wasm: SLEEPER, module_path: "sleeper.wasm", args: ["sleeper"], env: [], preopens: [] }, { ...c.io, hibernate_after_ms: 100 });
    await until("it hibernates", () => proc.hibernated);
    await until("its worker is back in the pool", () => warmWorkers().recycled === before.recycled + 1);
    assert.deepEqual(await proc.exited, { kind: "exit", code: 0 });
    assert.equal(c.out(), "slept\n");
    assert.ok(warmWorkers().taken >= before.taken + 2, "the wake took a pooled worker");
    keepWarm(0);
  });

  it("a suspended guest's worker goes back to the pool when its process ends there (it moved away), and the next process in it runs as in a new one", async () => {
    keepWarm(1);
    await until("a worker is warm", () => warmWorkers().idle === 1 && warmWorkers().warming === 0);
    const before = warmWorkers();
    // Marks its memory, then counts in a loop (a safe point at each turn) until stopped.
    const spinner = wat(`(module
      (memory (export "memory") 1)
      (global $n (mut i64) (i64.const 0))
      (func (export "_start")
        (i32.store (i32.const 4096) (i32.const 0x5ec2e7))
        (loop $l (global.set $n (i64.add (global.get $n) (i64.const 1))) (br $l))))`);
    const proc = await GuestProcess.start({ wasm: spinner, module_path: "spinner.wasm", args: ["spinner"], env: [], preopens: [] }, io().io);
    assert.equal(warmWorkers().taken, before.taken + 1);
    const suspension = await proc.suspend();
    assert.ok(suspension !== null, "the guest did not suspend");
    const kept = new DataView(proc.memory.buffer);
    // What the source of a move does once the destination runs the process.
    await proc.terminate();
    assert.deepEqual(await proc.exited, { kind: "killed" });
    await until("its worker is back in the pool", () => warmWorkers().recycled === before.recycled + 1 && warmWorkers().idle === 1);
    assert.equal(kept.getUint32(4096, true), 0x5ec2e7, "not asked to discard its memory, the worker left it as it was");
    const standby = await GuestProcess.standby(spinner, io().io);
    assert.equal(new DataView(standby.memory.buffer).getUint32(4096, true), 0, "a memory with the last guest's mark");
    await standby.terminate();
    const a = io();
    const next = await GuestProcess.start({ wasm: GUEST, module_path: "guest.wasm", args: ["guest"], env: [], preopens: [] }, a.io);
    assert.deepEqual(await next.exited, { kind: "exit", code: 3 });
    assert.equal(a.out(), "warm\n");
    keepWarm(0);
  });

  it("a process that exits gives its memory's pages back to the kernel from its worker, and waits for a collection only for its address space", { skip: "addon" in nativeAddon() ? false : "the native addon is not built" }, async () => {
    keepWarm(1);
    await until("a worker is warm", () => warmWorkers().idle === 1 && warmWorkers().warming === 0);
    // Marks a page in each of its 64 MiB, then waits (a safe point at each turn) for a word this thread writes, and returns.
    const marker = wat(`(module
      (memory (export "memory") 1024)
      (func (export "_start") (local $at i32)
        (loop $mark
          (i32.store (local.get $at) (i32.const 0x5ec2e7))
          (local.set $at (i32.add (local.get $at) (i32.const 4096)))
          (br_if $mark (i32.lt_u (local.get $at) (i32.const 0x4000000))))
        (loop $wait (br_if $wait (i32.eqz (i32.load (i32.const 8)))))))`);
    const proc = await GuestProcess.start({ wasm: marker, module_path: "marker.wasm", args: ["marker"], env: [], preopens: [] }, io().io);
    const memory = new Uint32Array(proc.memory.buffer);
    await until("the guest marked its pages", () => memory[(0x4000000 - 4096) / 4] === 0x5ec2e7);
    const before = reclaimPending();
    memory[8 / 4] = 1;
    assert.deepEqual(await proc.exited, { kind: "exit", code: 0 });
    // Counted as a memory waiting for its address space, not as 64 MiB of pages: no collection for it alone.
    const after = reclaimPending();
    assert.equal(after.bytes, before.bytes, "its pages were counted as waiting for a collection");
    assert.ok(after.memories === before.memories + 1 || (after.due && before.memories + 1 >= RECLAIM_MEMORIES_MAX), `memories waiting: ${before.memories} then ${after.memories}`);
    await until("its first and last pages read zero", () => memory[0] === 0 && memory[(0x4000000 - 4096) / 4] === 0);
    for (let at = 4096; at < 0x4000000; at += 4096) assert.equal(memory[at / 4], 0, `the page at ${at} kept its contents`);
    keepWarm(0);
  });

  it("a process that moved away gives its memory's pages back to the kernel when it ends, not at a collection", { skip: "addon" in nativeAddon() ? false : "the native addon is not built" }, async () => {
    keepWarm(1);
    await until("a worker is warm", () => warmWorkers().idle === 1 && warmWorkers().warming === 0);
    // Marks a page in each of its 64 MiB, then counts in a loop until stopped.
    const marker = wat(`(module
      (memory (export "memory") 1024)
      (global $n (mut i64) (i64.const 0))
      (func (export "_start") (local $at i32)
        (loop $mark
          (i32.store (local.get $at) (i32.const 0x5ec2e7))
          (local.set $at (i32.add (local.get $at) (i32.const 4096)))
          (br_if $mark (i32.lt_u (local.get $at) (i32.const 0x4000000))))
        (loop $l (global.set $n (i64.add (global.get $n) (i64.const 1))) (br $l))))`);
    const proc = await GuestProcess.start({ wasm: marker, module_path: "marker.wasm", args: ["marker"], env: [], preopens: [] }, io().io);
    const memory = new Uint32Array(proc.memory.buffer);
    await until("the guest marked its pages", () => memory[(0x4000000 - 4096) / 4] === 0x5ec2e7);
    assert.ok((await proc.suspend()) !== null, "the guest did not suspend");
    // The move's source, committed: the destination has every page.
    await proc.terminate(undefined, { discard: true });
    // Its worker drops the pages before it joins the pool (or ends, if the pool refilled meanwhile).
    await until("its first and last pages read zero", () => memory[0] === 0 && memory[(0x4000000 - 4096) / 4] === 0);
    // This thread still holds the memory (the object is not collected), but its pages are gone: every one reads zero again.
    for (let at = 0; at < 0x4000000; at += 4096) assert.equal(memory[at / 4], 0, `the page at ${at} kept its contents`);
    keepWarm(0);
  });

  it("workers run the bundle the build makes (one file loads faster than the module graph)", () => {
    // `npm test` builds first; a `tsc` alone since leaves the bundle stale, and the modules run instead.
    assert.equal(workerCode(), "bundle", "dist/src/process_worker.cjs is missing or older than a module in it: run npm run build");
  });
});
