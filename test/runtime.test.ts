/**
 * The runtime's suspend/resume contract through its API: a process can be
 * suspended wherever it is (compute loop, sleeping, blocked on input), resumed
 * in place or restored from its image, and nothing it read or wrote is lost.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { PassThrough } from "node:stream";
import { describe, it } from "node:test";
import { wat } from "../src/instrument/_wat.js";
import { decodeImage, encodeImage, trustKeys, writeMemory } from "../src/image/mod.js";
import { GuestProcess, type ProcessIo, type ProcessSpec } from "../src/runtime/mod.js";
import { EXAMPLES, until } from "./_helpers.js";

function spec(module: string, args: string[]): ProcessSpec {
  const file = path.join(EXAMPLES, module);
  return { wasm: fs.readFileSync(file), module_path: file, args: [path.basename(module), ...args], env: [], preopens: [] };
}

/** Collects a process's output in memory. */
function collector(stdin: ProcessIo["stdin"] = null): { io: ProcessIo; out: () => string; err: () => string } {
  const out: Uint8Array[] = [];
  const err: Uint8Array[] = [];
  return {
    io: { stdin, stdout: { kind: "callback", write: (b) => out.push(b) }, stderr: { kind: "callback", write: (b) => err.push(b) } },
    out: () => Buffer.concat(out).toString(),
    err: () => Buffer.concat(err).toString(),
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));


/** The key these tests sign their images with. */
const signer = { key: generateKeyPairSync("ed25519").privateKey };

/** Writes `image`'s memory into a standby, as a restore does before it activates it. */
function writeImageMemory(standby: GuestProcess, image: ReturnType<typeof decodeImage>): void {
  standby.growTo(image.memory.size_bytes);
  writeMemory(image, new Uint8Array(standby.memory.buffer));
}

function roundTrip(proc: GuestProcess, suspension: NonNullable<Awaited<ReturnType<GuestProcess["suspend"]>>>): ReturnType<typeof decodeImage> {
  const chunks = [...encodeImage(proc.image(suspension), { signer })].map((c) => Buffer.from(c));
  return decodeImage(Buffer.concat(chunks), { trust: trustKeys([signer.key]) });
}

describe("runtime", () => {
  it("asked to suspend after it ended, a process answers null, as when it ends while the request is on its way", async () => {
    const proc = await GuestProcess.start(spec("c/compute.wasm", ["1", "3"]), collector().io);
    assert.deepEqual(await proc.exited, { kind: "exit", code: 3 });
    assert.equal(await proc.suspend(), null);
  });

  it("restores a process in this thread's process from its image and finishes as an uninterrupted run does", async () => {
    const whole = collector();
    const plain = await GuestProcess.start(spec("c/compute.wasm", ["8", "5"]), whole.io);
    assert.deepEqual(await plain.exited, { kind: "exit", code: 5 });

    const first = collector();
    const proc = await GuestProcess.start(spec("c/compute.wasm", ["8", "5"]), first.io);
    // Suspended once it is under way, however fast or busy the machine: after its first round, with rounds left.
    await until("compute's first round", () => first.out().includes("round 1/"));
    const suspension = await proc.suspend();
    assert.ok(suspension !== null, "compute ended before the suspend");
    const image = roundTrip(proc, suspension);
    await proc.terminate();
    const second = collector();
    const restored = await GuestProcess.restore(image, spec("c/compute.wasm", []).wasm, second.io, { preopens: [] });
    assert.deepEqual(await restored.exited, { kind: "exit", code: 5 });
    assert.equal(first.out() + second.out(), whole.out());
    assert.equal(first.err() + second.err(), whole.err());
  });

  it("suspends a process sleeping in poll_oneoff, keeping the rest of its sleep", async () => {
    const c = collector();
    const proc = await GuestProcess.start(spec("c/sleeper.wasm", ["5000", "2"]), c.io);
    // Its first blocking call is its sleep: suspended once it waits there, not after a while that a busy machine may not give it.
    await until("the sleeper to wait in its sleep", () => proc.usage().blocked);
    const suspension = await proc.suspend();
    assert.ok(suspension !== null);
    const wasi = suspension.state.wasi as { pending: { import: string; clocks: { deadline_ns: string }[] } | null };
    assert.equal(wasi.pending?.import, "poll_oneoff", "the guest was not suspended inside its sleep");
    await proc.terminate();
  });

  it("suspends a process blocked reading stdin, and it reads what comes after resuming", async () => {
    const input = new PassThrough();
    const c = collector(input);
    const proc = await GuestProcess.start(spec("c/sleeper.wasm", ["0", "2"]), c.io);
    await sleep(150);
    const suspension = await proc.suspend();
    assert.ok(suspension !== null);
    await proc.resume();
    input.end("hello\nworld\n");
    assert.deepEqual(await proc.exited, { kind: "exit", code: 0 });
    assert.match(c.out(), /line 1: HELLO/);
    assert.match(c.out(), /line 2: WORLD/);
  });

  it("carries input read ahead but not yet consumed in the image", async () => {
    const lines = "alpha\nbeta\ngamma\n";
    const whole = collector(PassThrough.from([lines]));
    const plain = await GuestProcess.start(spec("c/sleeper.wasm", ["300", "6"]), whole.io);
    await plain.exited;

    const first = collector(PassThrough.from([lines]));
    const proc = await GuestProcess.start(spec("c/sleeper.wasm", ["300", "6"]), first.io);
    // Suspended as soon as it waits in its first sleep: before it reads a line, even on a busy machine.
    await until("the sleeper to wait in its first sleep", () => proc.usage().blocked);
    const suspension = await proc.suspend();
    assert.ok(suspension !== null);
    assert.equal(Buffer.from(suspension.state.stdin_pending).toString(), lines);
    assert.equal(suspension.state.stdin_eof, true);
    const image = roundTrip(proc, suspension);
    await proc.terminate();
    const second = collector(null);
    const restored = await GuestProcess.restore(image, spec("c/sleeper.wasm", []).wasm, second.io, { preopens: [] });
    await restored.exited;
    assert.equal(first.out() + second.out(), whole.out());
  });

  it("suspends a tight loop that calls nothing, again after a restore", async () => {
    const wasm = wat(`(module (memory (export "memory") 1)
      (global $n (mut i64) (i64.const 0))
      (func (export "_start") (loop $l (global.set $n (i64.add (global.get $n) (i64.const 1))) (br $l))))`);
    const c = collector();
    const s: ProcessSpec = { wasm, module_path: "spin.wasm", args: ["spin"], env: [], preopens: [] };
    const proc = await GuestProcess.start({ ...s }, { ...c.io, cache_dir: null });
    // Its CPU time counts at its loop's polls: the loop has run once some is counted.
    await until("the loop to run", () => proc.usage().busy_ms > 0);
    const first = await proc.suspend();
    assert.ok(first !== null);
    const counter = first.state.globals.find((g) => g.type === "i64");
    assert.ok(counter !== undefined && counter.bits > 0n, "the loop did not run");
    const image = roundTrip(proc, first);
    await proc.terminate();
    const restored = await GuestProcess.restore(image, wasm, { ...c.io, cache_dir: null }, { preopens: [] });
    await until("the restored loop to run", () => restored.usage().busy_ms > 0);
    const second = await restored.suspend();
    assert.ok(second !== null);
    const later = second.state.globals.find((g) => g.type === "i64");
    assert.ok(later !== undefined && later.bits > counter.bits, "the loop did not continue from where it was");
    await restored.terminate();
  });

  it("writes a module's large data segments itself at a fresh start, leaves a standby's memory zero, and a restore brings them back", async () => {
    // 320 KiB of data: enough that the runtime, not the instantiation, writes it (_compiled.ts, HELD_DATA_BYTES_MIN).
    const text = "ferry-data".repeat(32 * 1024);
    const wasm = wat(`(module (memory (export "memory") 8)
      (data (i32.const 4096) "${text}")
      (data (i32.const 400000) "tail")
      (global $n (mut i64) (i64.const 0))
      (func (export "_start") (loop $l (global.set $n (i64.add (global.get $n) (i64.const 1))) (br $l))))`);
    const expected = Buffer.alloc(400_004);
    expected.write(text, 4096, "latin1");
    expected.write("tail", 400_000, "latin1");
    const seen = (p: GuestProcess): Buffer => Buffer.from(new Uint8Array(p.memory.buffer, 0, expected.length));
    const io = { ...collector().io, cache_dir: null };
    const proc = await GuestProcess.start({ wasm, module_path: "data.wasm", args: ["data"], env: [], preopens: [] }, io);
    await until("the loop to run", () => proc.usage().busy_ms > 0);
    assert.ok(seen(proc).equals(expected), "a fresh start's memory is not what its data segments say");
    const suspension = await proc.suspend();
    assert.ok(suspension !== null);
    const image = roundTrip(proc, suspension);
    await proc.terminate();
    const standby = await GuestProcess.standby(wasm, io);
    assert.ok(new Uint8Array(standby.memory.buffer).every((b) => b === 0), "a standby's memory is not zero");
    await standby.terminate();
    const restored = await GuestProcess.restore(image, wasm, io, { preopens: [] });
    await until("the restored loop to run", () => restored.usage().busy_ms > 0);
    assert.ok(seen(restored).equals(expected), "a restored process's memory is not the image's");
    await restored.terminate();
  });

  it("a gated activation rewinds only once the gate opens, and a terminate meanwhile rewinds nothing", async () => {
    // Spins until the word at 0 is set, then exits with it: what the controller wrote before opening the gate is what it reads.
    const wasm = wat(`(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start") (loop $l (br_if $l (i32.eqz (i32.load (i32.const 0))))) (call $exit (i32.load (i32.const 0)))))`);
    const io = { ...collector().io, cache_dir: null };
    const proc = await GuestProcess.start({ wasm, module_path: "gate.wasm", args: ["gate"], env: [], preopens: [] }, io);
    await until("the loop to run", () => proc.usage().busy_ms > 0);
    const suspension = await proc.suspend();
    assert.ok(suspension !== null);
    const image = roundTrip(proc, suspension);
    await proc.terminate();

    const gated = await GuestProcess.standby(wasm, io);
    try {
      writeImageMemory(gated, image);
      let ran = false;
      const running = gated.activate(image, { preopens: [] }, { gated: true }).then(() => (ran = true));
      await until("the worker to wait at its gate", () => gated.atGate);
      assert.equal(ran, false, "the guest rewound before its gate opened");
      new Int32Array(gated.memory.buffer)[0] = 7;
      gated.openGate();
      await running;
      assert.deepEqual(await gated.exited, { kind: "exit", code: 7 });
    } finally {
      await gated.terminate();
    }

    const dropped = await GuestProcess.standby(wasm, io);
    writeImageMemory(dropped, image);
    const never = dropped.activate(image, { preopens: [] }, { gated: true });
    never.catch(() => undefined);
    await until("the worker to wait at its gate", () => dropped.atGate);
    await dropped.terminate();
    assert.deepEqual(await dropped.exited, { kind: "killed" });
    await assert.rejects(never);
  });

  it("gives the guest a wall clock finer than Date.now()'s whole milliseconds", async () => {
    // Reads the realtime clock until two readings differ by something other than whole milliseconds (exit 0), or
    // 200,000 readings did not (exit 1: a millisecond clock, as the worker's was).
    const wasm = wat(`(module
      (import "wasi_snapshot_preview1" "clock_time_get" (func $time (param i32 i64 i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start") (local $i i32) (local $last i64) (local $now i64)
        (drop (call $time (i32.const 0) (i64.const 1000) (i32.const 16)))
        (local.set $last (i64.load (i32.const 16)))
        (loop $l
          (drop (call $time (i32.const 0) (i64.const 1000) (i32.const 16)))
          (local.set $now (i64.load (i32.const 16)))
          (if (i64.ne (i64.rem_u (i64.sub (local.get $now) (local.get $last)) (i64.const 1000000)) (i64.const 0)) (then (call $exit (i32.const 0))))
          (local.set $last (local.get $now))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (i32.const 200000))))
        (call $exit (i32.const 1))))`);
    const proc = await GuestProcess.start({ wasm, module_path: "clock.wasm", args: ["clock"], env: [], preopens: [] }, { ...collector().io, cache_dir: null });
    assert.deepEqual(await proc.exited, { kind: "exit", code: 0 });
  });

  it("reports a trap as a value", async () => {
    const wasm = wat(`(module (memory (export "memory") 1) (func (export "_start") unreachable))`);
    const proc = await GuestProcess.start({ wasm, module_path: "trap.wasm", args: ["trap"], env: [], preopens: [] }, { ...collector().io, cache_dir: null });
    const status = await proc.exited;
    assert.equal(status.kind, "trap");
    assert.match(status.kind === "trap" ? status.message : "", /unreachable/);
  });
});
