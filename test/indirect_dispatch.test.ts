/**
 * Safe points reached only through an indirect call (issue 14): the
 * instrumenter narrows what a `call_indirect` may reach to the table's
 * functions of its signature, and leaves uninstrumented what can reach no
 * safe point. examples/c/dispatch.c calls its blocking and looping
 * operations only through a function-pointer table whose signature it
 * shares with functions that never poll; suspended there, it must unwind
 * through the dispatcher and rewind into it, and finish as an uninterrupted
 * run does, under node:wasi too.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { PassThrough } from "node:stream";
import { describe, it } from "node:test";
import { GuestProcess, type ProcessIo, type ProcessSpec } from "../src/runtime/mod.js";
import { EXAMPLES, nodeWasi } from "./_helpers.js";
import { collector, moveThroughImage } from "./_moves.js";

const MODULE = path.join(EXAMPLES, "c", "dispatch.wasm");
const INPUT = "5\n11\n3\n";

function spec(args: string[]): ProcessSpec {
  return { wasm: fs.readFileSync(MODULE), module_path: MODULE, args: ["dispatch", ...args], env: [], preopens: [] };
}

const move = (proc: GuestProcess, io: ProcessIo): Promise<GuestProcess> => moveThroughImage(proc, io, fs.readFileSync(MODULE));

describe("a safe point reached only through an indirect call", () => {
  it("runs as under node:wasi", async () => {
    const want = await nodeWasi([MODULE, "3", "1000"], INPUT);
    const c = collector(PassThrough.from([INPUT]));
    const proc = await GuestProcess.start(spec(["3", "1000"]), c.io);
    assert.deepEqual(await proc.exited, { kind: "exit", code: want.status });
    assert.equal(c.out(), want.stdout.toString());
  });

  it("blocked reading input inside the dispatched call, moves and reads what comes after", async () => {
    const whole = collector(PassThrough.from([INPUT]));
    const plain = await GuestProcess.start(spec(["3", "1000"]), whole.io);
    assert.deepEqual(await plain.exited, { kind: "exit", code: 0 });

    // No input yet: the guest prints its first prompt from ask(), then blocks in fd_read.
    const first = collector(new PassThrough());
    const proc = await GuestProcess.start(spec(["3", "1000"]), first.io);
    await first.seen("? ");
    const second = collector(PassThrough.from([INPUT]));
    const restored = await move(proc, second.io);
    assert.deepEqual(await restored.exited, { kind: "exit", code: 0 });
    assert.equal(first.out() + second.out(), whole.out());
  });

  it("computing inside the dispatched call, moves and finishes as an uninterrupted run does", async () => {
    // Each round spends its time in churn(), called through the table.
    const args = ["3", "10000000"];
    const whole = collector(PassThrough.from([INPUT]));
    const plain = await GuestProcess.start(spec(args), whole.io);
    assert.deepEqual(await plain.exited, { kind: "exit", code: 0 });

    const first = collector(PassThrough.from([INPUT]));
    const proc = await GuestProcess.start(spec(args), first.io);
    await first.seen("round 0:");
    const second = collector(null);
    const restored = await move(proc, second.io);
    assert.deepEqual(await restored.exited, { kind: "exit", code: 0 });
    assert.equal(first.out() + second.out(), whole.out());
  });
});
