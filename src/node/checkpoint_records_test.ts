import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { FerryError } from "../errors.js";
import { FileCheckpointRecords, isNewer, type CheckpointRecord } from "./_checkpoint_records.js";

function record(over: Partial<CheckpointRecord> = {}): CheckpointRecord {
  return {
    pid: "n1-1",
    keeper: "n3",
    chain: "n2.abc.def",
    seq: 1,
    runner: "n2",
    moves: 1,
    bytes: 100,
    pages: 2,
    pause_ms: 1.5,
    memory_bytes: 65536,
    stdout_bytes: 10,
    stderr_bytes: 0,
    created_unix_ms: 1,
    ...over,
  };
}

describe("checkpoint records", () => {
  it("a record wins only if it is newer: a later move, later in the same chain, or a new chain of the same move", () => {
    const r = record({ seq: 3 });
    assert.equal(isNewer(undefined, r), true);
    assert.equal(isNewer(r, record({ seq: 4 })), true);
    assert.equal(isNewer(r, record({ seq: 3 })), false, "a repeat");
    assert.equal(isNewer(r, record({ seq: 2 })), false);
    assert.equal(isNewer(r, record({ chain: "n2.new.chain", seq: 1 })), true);
    assert.equal(isNewer(r, record({ moves: 2, seq: 1, runner: "n3" })), true);
    assert.equal(isNewer(record({ moves: 2 }), record({ moves: 1, seq: 9 })), false, "from a runner the process has left");
  });

  it("are kept in the data directory across a restart; a stale one is refused and changes nothing", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-records-"));
    try {
      const a = new FileCheckpointRecords(dir);
      assert.equal(a.put(record()), undefined);
      assert.equal(a.put(record({ seq: 2, stdout_bytes: 20 }))?.seq, 1);
      assert.throws(() => a.put(record({ seq: 1 })), (e: unknown) => e instanceof FerryError && e.code === "ERR_LOCATION_STALE");
      a.put(record({ pid: "n1-2" }));
      await a.durable();
      const b = new FileCheckpointRecords(dir);
      assert.equal(b.last("n1-1")?.stdout_bytes, 20);
      assert.equal(b.all().length, 2);
      assert.equal(b.drop("n1-2")?.pid, "n1-2");
      await b.durable();
      assert.equal(new FileCheckpointRecords(dir).last("n1-2"), undefined);
      // A damaged file costs the records, never the node.
      fs.writeFileSync(path.join(dir, "checkpoints.json"), "{not json");
      assert.deepEqual(new FileCheckpointRecords(dir).all(), []);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("are written off the event loop, coalesced; durable() waits for the changes made before it, not for those after", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-records-"));
    try {
      const a = new FileCheckpointRecords(dir);
      for (let i = 1; i <= 200; i += 1) a.put(record({ pid: `n1-${i}` }));
      assert.equal(fs.existsSync(path.join(dir, "checkpoints.json")), false, "put() does not write in its own step");
      await a.durable();
      assert.equal(new FileCheckpointRecords(dir).all().length, 200);
      // A stream of changes (as a home with many checkpointed processes sees) does not hold up a wait for the earlier ones.
      let stop = false;
      let n = 0;
      const pump = (async (): Promise<void> => {
        while (!stop && n < 100_000) {
          n += 1;
          a.put(record({ pid: "n1-1", seq: 1 + n }));
          await new Promise((resolve) => setImmediate(resolve));
        }
      })();
      await a.durable();
      stop = true;
      await pump;
      assert.ok(n < 100_000, "durable() resolved while changes went on");
      await a.durable();
      assert.equal(new FileCheckpointRecords(dir).last("n1-1")?.seq, 1 + n);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
