/** The BULK stream's receiver on its own: pieces split anywhere, headers checked before a byte is written. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import { FerryError } from "../errors.js";
import { sparsePages } from "../image/mod.js";
import { BULK_RUN_PAGES_MAX, BulkReceiver, pageRunsInTurns } from "./_bulk.js";

const PAGE = 4096;

function run(first: number, count: number, fill: number): Uint8Array {
  const out = Buffer.alloc(8 + count * PAGE, fill);
  out.writeUInt32LE(first, 0);
  out.writeUInt32LE(count, 4);
  return out;
}

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (err: unknown) {
    return err instanceof FerryError ? err.code : String(err);
  }
  return undefined;
}

describe("BulkReceiver", () => {
  it("places runs split at any point and hashes exactly the stream", async () => {
    const stream = Buffer.concat([run(0, 1, 1), run(3, 2, 2), run(9, 1, 3)]);
    for (const cut of [1, 5, 8, 9, 4100, 4104, 7000]) {
      const memory = new Uint8Array(new SharedArrayBuffer(16 * PAGE));
      const rx = new BulkReceiver((at, data) => {
        memory.set(data, at);
        return memory.subarray(at, at + data.length);
      }, memory.length);
      for (let at = 0; at < stream.length; at += cut) rx.push(stream.subarray(at, at + cut));
      assert.equal(await rx.finish(), createHash("sha256").update(stream).digest("hex"), `cut every ${cut} bytes`);
      assert.equal(rx.pages, 4);
      assert.deepEqual([memory[0], memory[PAGE], memory[3 * PAGE], memory[5 * PAGE - 1], memory[5 * PAGE], memory[9 * PAGE]], [1, 0, 2, 2, 0, 3]);
    }
  });

  it("refuses a bad run header before writing any of it", () => {
    const cases: [string, Uint8Array[]][] = [
      ["no pages", [run(0, 1, 1).subarray(0, 8).fill(0)]],
      ["too many pages", [Buffer.from([0, 0, 0, 0, ...new Uint8Array(new Uint32Array([BULK_RUN_PAGES_MAX + 1]).buffer)])]],
      ["runs out of order", [run(4, 1, 1), run(2, 1, 1)]],
      ["overlapping runs", [run(4, 2, 1), run(5, 1, 1)]],
      ["past the memory cap", [run(15, 2, 1)]],
    ];
    for (const [what, pieces] of cases) {
      let writes = 0;
      const rx = new BulkReceiver(() => void (writes += 1), 16 * PAGE);
      const before = pieces.slice(0, -1);
      for (const p of before) rx.push(p);
      const written = writes;
      assert.equal(code(() => rx.push(pieces.at(-1) as Uint8Array)), "ERR_MIGRATION_PROTOCOL", what);
      assert.equal(writes, written, `${what}: nothing of the bad run was written`);
      rx.drop();
    }
  });

  it("a stream that ends inside a run is refused; an empty one has no digest", async () => {
    const rx = new BulkReceiver(() => undefined, 16 * PAGE);
    rx.push(run(0, 1, 1).subarray(0, 100));
    await assert.rejects(rx.finish(), (err: unknown) => err instanceof FerryError && err.code === "ERR_MIGRATION_PROTOCOL");
    assert.equal(await new BulkReceiver(() => undefined, 16 * PAGE).finish(), null);
  });
});

describe("pageRunsInTurns", () => {
  const PAGE = 4096;
  const pagesOf = (runs: Iterable<{ first: number; data: Uint8Array }>): Map<number, string> => {
    const out = new Map<number, string>();
    for (const r of runs) for (let p = 0; p * PAGE < r.data.length; p += 1) out.set(r.first + p, createHash("sha256").update(r.data.subarray(p * PAGE, (p + 1) * PAGE)).digest("hex"));
    return out;
  };

  it("finds the pages sparsePages finds, in order, across the ends of its slices", async () => {
    // 12 MiB: three slices; runs over the first slice's end and up to the memory's end.
    const m = new Uint8Array(new SharedArrayBuffer(12 * 1024 * 1024));
    for (const [first, count] of [[0, 2], [1000, 200], [1023, 2], [2040, 20], [3071, 1]] as const) {
      for (let p = first; p < first + count; p += 1) m.fill((p % 251) + 1, p * PAGE, p * PAGE + 100);
    }
    const runs: { first: number; data: Uint8Array }[] = [];
    for await (const r of pageRunsInTurns(m)) runs.push(r);
    for (let i = 1; i < runs.length; i += 1) assert.ok((runs[i] as { first: number }).first >= (runs[i - 1] as { first: number }).first, "runs increase");
    assert.ok(runs.every((r) => r.data.length > 0 && r.data.length <= BULK_RUN_PAGES_MAX * PAGE));
    const expected = pagesOf((sparsePages(m).pageRuns as () => Iterable<{ first: number; data: Uint8Array }>)());
    assert.deepEqual([...pagesOf(runs)], [...expected]);
  });

  it("gives the event loop turns while it scans a memory of zeros", async () => {
    // 256 MiB of zeros scan in tens of milliseconds in one go; an immediate set before must run before the scan ends.
    const m = new Uint8Array(new SharedArrayBuffer(256 * 1024 * 1024));
    m[m.length - 1] = 1;
    let ran = false;
    setImmediate(() => (ran = true));
    let ran_before_last = false;
    for await (const r of pageRunsInTurns(m)) ran_before_last = ran && r.first === m.length / PAGE - 1;
    assert.equal(ran_before_last, true);
  });
});
