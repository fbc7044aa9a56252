/**
 * Hibernation through the runtime's API: a guest blocked in a long wait
 * leaves its worker, and wakes where it was when the wait ends (its
 * deadline, its input, a suspend, a kill), with the same clocks, output and
 * exit status as a run that never hibernated.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { PassThrough } from "node:stream";
import { describe, it } from "node:test";
import { wat } from "../src/instrument/_wat.js";
import { GuestProcess, type ProcessIo, type ProcessSpec } from "../src/runtime/mod.js";
import { dataGuest } from "./_data_guest.js";
import { EXAMPLES, until } from "./_helpers.js";

function spec(module: string, args: string[]): ProcessSpec {
  const file = path.join(EXAMPLES, module);
  return { wasm: fs.readFileSync(file), module_path: file, args: [path.basename(module), ...args], env: [], preopens: [] };
}

function collector(stdin: ProcessIo["stdin"] = null): { io: ProcessIo; out: () => string } {
  const out: Uint8Array[] = [];
  return {
    io: { stdin, stdout: { kind: "callback", write: (b) => out.push(b) }, stderr: { kind: "callback", write: () => undefined } },
    out: () => Buffer.concat(out).toString(),
  };
}

/**
 * Reads both clocks, sleeps SLEEP_NS in poll_oneoff, reads them again, and
 * exits 0 when the monotonic clock moved at least the sleep and kept pace
 * with the wall clock (within a second either way): 1 when it slept short,
 * 2 when its clock lost the time it slept, 3 when it ran ahead.
 */
function clockGuest(sleep_ns: bigint): Uint8Array {
  return wat(`(module
    (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
    (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
    (memory (export "memory") 1)
    (func (export "_start") (local $mono i64) (local $real i64)
      (drop (call $clock (i32.const 1) (i64.const 1) (i32.const 256)))
      (drop (call $clock (i32.const 0) (i64.const 1) (i32.const 264)))
      (i32.store (i32.const 16) (i32.const 1))
      (i64.store (i32.const 24) (i64.const ${sleep_ns}))
      (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
      (drop (call $clock (i32.const 1) (i64.const 1) (i32.const 272)))
      (drop (call $clock (i32.const 0) (i64.const 1) (i32.const 280)))
      (local.set $mono (i64.sub (i64.load (i32.const 272)) (i64.load (i32.const 256))))
      (local.set $real (i64.sub (i64.load (i32.const 280)) (i64.load (i32.const 264))))
      (if (i64.lt_s (local.get $mono) (i64.const ${sleep_ns})) (then (call $exit (i32.const 1))))
      (if (i64.gt_s (i64.sub (local.get $real) (local.get $mono)) (i64.const 1000000000)) (then (call $exit (i32.const 2))))
      (if (i64.gt_s (i64.sub (local.get $mono) (local.get $real)) (i64.const 1000000000)) (then (call $exit (i32.const 3))))
      (call $exit (i32.const 0))))`);
}

/** What `sleeper SLEEP STEPS` prints with its input at its end. */
function sleeperTicks(sleep_ms: number, steps: number): string {
  const lines = [`sleeper: sleep_ms=${sleep_ms} steps=${steps}`, "eof after 0 lines"];
  for (let s = 1; s <= steps; s++) lines.push(`tick ${s}`);
  lines.push(`done lines=0 ticks=${steps}`);
  return lines.join("\n") + "\n";
}

describe("hibernation", () => {
  it("takes a sleeping guest out of its worker and wakes it at its deadline, its monotonic clock counting the time it slept", async () => {
    const wasm = clockGuest(5_000_000_000n);
    const proc = await GuestProcess.start({ wasm, module_path: "clock.wasm", args: ["clock"], env: [], preopens: [] }, { ...collector().io, cache_dir: null, hibernate_after_ms: 200 });
    await until("the guest to hibernate", () => proc.hibernated);
    assert.throws(() => proc.memory, { code: "ERR_PROCESS_STATE" });
    assert.equal(proc.memory_bytes, 65536);
    assert.ok(proc.hibernated_bytes < proc.memory_bytes, `kept ${proc.hibernated_bytes} bytes of a ${proc.memory_bytes}-byte memory`);
    assert.deepEqual(await proc.exited, { kind: "exit", code: 0 });
    assert.equal(proc.hibernations, 1);
  });

  it("gives the same output and status as a run that never hibernates, hibernating in its sleeps", async () => {
    const c = collector();
    const proc = await GuestProcess.start(spec("c/sleeper.wasm", ["3000", "3"]), { ...c.io, hibernate_after_ms: 100 });
    assert.deepEqual(await proc.exited, { kind: "exit", code: 0 });
    assert.equal(c.out(), sleeperTicks(3000, 3));
    // A sleep is slept through in the worker when what is left of it is short next to a wake (on a very loaded machine).
    assert.ok(proc.hibernations >= 1, "it never hibernated");
  });

  it("wakes a guest blocked on standard input when a line arrives, and again at the input's end", async () => {
    const stdin = new PassThrough();
    const c = collector(stdin);
    const proc = await GuestProcess.start(spec("c/sleeper.wasm", ["0", "3"]), { ...c.io, hibernate_after_ms: 100 });
    await until("the reader to hibernate", () => proc.hibernated);
    stdin.write("hello\n");
    await until("the line to be read", () => c.out().includes("line 1: HELLO (len 5)"));
    await until("the reader to hibernate again", () => proc.hibernated && proc.hibernations === 2);
    stdin.end();
    assert.deepEqual(await proc.exited, { kind: "exit", code: 0 });
    assert.equal(c.out(), "sleeper: sleep_ms=0 steps=3\nline 1: HELLO (len 5)\neof after 1 lines\ntick 2\ntick 3\ndone lines=1 ticks=2\n");
  });

  it("wakes a guest whose module holds large data segments with its memory as it left it, not as the segments say", async () => {
    // Sleeps 3 s in poll_oneoff, long enough to hibernate; its wake's standby starts from zero memory.
    const wasm = dataGuest({
      imports: `(import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))`,
      code: `(i32.store (i32.const 16) (i32.const 1))
        (i64.store (i32.const 24) (i64.const 3000000000))
        (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))`,
    });
    const proc = await GuestProcess.start({ wasm, module_path: "data.wasm", args: ["data"], env: [], preopens: [] }, { ...collector().io, cache_dir: null, hibernate_after_ms: 100 });
    await until("the guest to hibernate", () => proc.hibernated);
    assert.deepEqual(await proc.exited, { kind: "exit", code: 0 });
    assert.equal(proc.hibernations, 1);
  });

  it("ends a hibernated guest at once when killed", async () => {
    const proc = await GuestProcess.start(spec("c/sleeper.wasm", ["60000", "2"]), { ...collector().io, hibernate_after_ms: 100 });
    await until("the guest to hibernate", () => proc.hibernated);
    await proc.terminate();
    assert.deepEqual(await proc.exited, { kind: "killed" });
  });

  it("wakes a hibernated guest for a suspend, whose state is its sleep's, and resumes it in place to finish as usual", async () => {
    const c = collector();
    const proc = await GuestProcess.start(spec("c/sleeper.wasm", ["4000", "2"]), { ...c.io, hibernate_after_ms: 100 });
    await until("the guest to hibernate", () => proc.hibernated);
    const suspension = await proc.suspend();
    assert.ok(suspension !== null, "the guest ended instead");
    const wasi = suspension.state.wasi as { pending?: { import: string } };
    assert.equal(wasi.pending?.import, "poll_oneoff");
    assert.equal(proc.hibernated, false);
    assert.ok(proc.memory.buffer.byteLength > 0);
    await proc.resume();
    assert.deepEqual(await proc.exited, { kind: "exit", code: 0 });
    assert.equal(c.out(), sleeperTicks(4000, 2));
  });

  it("drops its empty message rings while hibernated, has no connection slots without sockets, and wakes for a message through fresh rings", async () => {
    const sent: { to: string; data: string }[] = [];
    const io: ProcessIo = {
      ...collector().io,
      hibernate_after_ms: 100,
      links: { pid: "h-1", bind: () => undefined, send: (to, data) => sent.push({ to, data: Buffer.from(data).toString() }), migrate: () => undefined, room: () => undefined },
      net: { bind: () => undefined, send: () => undefined, shutdown: () => undefined, close: () => undefined, unlisten: () => undefined, read: () => undefined },
    };
    // `pong 1` waits in ferry.recv, with no deadline, for one "ping 1", answers it and exits.
    const proc = await GuestProcess.start(spec("c/pingpong.wasm", ["pong", "1"]), io);
    const awake_bytes = proc.shared_bytes;
    assert.ok(awake_bytes >= 512 * 1024, `awake, it holds its rings: ${awake_bytes} bytes`);
    await until("the guest to hibernate", () => proc.hibernated);
    // Its control block, input mailbox and counters only (64 KiB and some bytes): no rings, no 4 MiB of connection slots.
    assert.ok(proc.shared_bytes < 128 * 1024, `hibernated, it holds ${proc.shared_bytes} bytes of shared buffers`);
    assert.equal(proc.deliver("h-2", Buffer.from("ping 1")), true);
    assert.deepEqual(await proc.exited, { kind: "exit", code: 0 });
    assert.deepEqual(sent, [{ to: "h-2", data: "pong 1" }]);
    assert.equal(proc.hibernations, 1);
  });

  it("keeps a guest awake, and its memory in place, while something holds it", async () => {
    const proc = await GuestProcess.start(spec("c/sleeper.wasm", ["60000", "2"]), { ...collector().io, hibernate_after_ms: 100 });
    await until("the guest to hibernate", () => proc.hibernated);
    const release = await proc.stayAwake();
    assert.equal(proc.hibernated, false);
    const usage_before = proc.usage().busy_ms;
    // It waits in its worker now; held, it does not hibernate however long it waits (the worker looks every 100 ms).
    await until("the guest to wait again", () => proc.usage().blocked);
    assert.ok(proc.memory.buffer.byteLength > 0);
    assert.ok(proc.usage().busy_ms >= usage_before);
    release();
    await until("the guest to hibernate once let go", () => proc.hibernated);
    assert.equal(proc.hibernations, 2);
    await proc.terminate();
  });
});
