/**
 * Functions that can run again from their start (issue 14's overhead):
 * examples/c/lookup.c spends its time in find() comparing strings with
 * strcmp(), and in checksum() over a buffer, none of which writes outside
 * its frame. The instrumenter gives each a fast copy with no safe point
 * (`src/instrument/_restart.ts`); a suspend asked while one runs makes it
 * leave and run again, from its start, in its instrumented copy, which
 * then unwinds. Moved at any moment, the guest must print what an
 * uninterrupted run prints, and what node:wasi prints.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { instrumentModule } from "../src/instrument/mod.js";
import { GuestProcess, type ProcessIo, type ProcessSpec } from "../src/runtime/mod.js";
import { EXAMPLES, nodeWasi } from "./_helpers.js";
import { collector, moveThroughImage } from "./_moves.js";

const MODULE = path.join(EXAMPLES, "c", "lookup.wasm");

function spec(args: string[]): ProcessSpec {
  return { wasm: fs.readFileSync(MODULE), module_path: MODULE, args: ["lookup", ...args], env: [], preopens: [] };
}

const move = (proc: GuestProcess, io: ProcessIo): Promise<GuestProcess> => moveThroughImage(proc, io, fs.readFileSync(MODULE));

describe("functions that can run again from their start", () => {
  it("are found in lookup.c (find, checksum, and the strcmp find calls)", async () => {
    const { info } = await instrumentModule(fs.readFileSync(MODULE), { name: "lookup.wasm" });
    assert.ok(info.restartable >= 3, `${info.restartable} functions given a fast copy`);
  });

  it("run as under node:wasi", async () => {
    const want = await nodeWasi([MODULE, "4", "2"]);
    const c = collector(null);
    const proc = await GuestProcess.start(spec(["4", "2"]), c.io);
    assert.deepEqual(await proc.exited, { kind: "exit", code: want.status });
    assert.equal(c.out(), want.stdout.toString());
  });

  it("left where a move comes and run again in their instrumented copy, give what an uninterrupted run gives", async () => {
    const args = ["10", "4"];
    const whole = collector(null);
    const plain = await GuestProcess.start(spec(args), whole.io);
    assert.deepEqual(await plain.exited, { kind: "exit", code: 0 });

    // Moved after each of rounds 0, 2, 4, 6 and 8 has printed: each suspend
    // comes a moment later, inside a lookup or a checksum, wherever the
    // guest's time goes.
    let out = "";
    let c = collector(null);
    let proc = await GuestProcess.start(spec(args), c.io);
    for (const round of [0, 2, 4, 6, 8]) {
      await c.seen(`round ${round}:`);
      const next = collector(null);
      proc = await move(proc, next.io);
      out += c.out();
      c = next;
    }
    assert.deepEqual(await proc.exited, { kind: "exit", code: 0 });
    assert.equal(out + c.out(), whole.out());
  });
});
