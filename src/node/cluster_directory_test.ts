/**
 * What nodes do when a member is declared dead, over one in-memory
 * directory and tables of home records kept in memory: exactly one node
 * marks each uncheckpointed process `lost` (its home if alive, else the
 * first alive member), its home ends it too, and checkpointed ones are left
 * to the onNodeDead subscribers, or marked lost when there are none.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MemoryDirectory, type CasResult, type ProcessChange } from "../directory/mod.js";
import { FerryError } from "../errors.js";
import { logger } from "../log/mod.js";
import { NodeDirectory, type NodeDeadEvent } from "./cluster_directory.js";
import { EventHub } from "./events.js";
import type { HomeRecord, ProcessStatus } from "./process_table.js";

const TTL_MS = 300;

/** A home record with what NodeDirectory looks at. */
function home(pid: string, node: string): HomeRecord {
  return { pid, home: pid.split("-")[0] as string, node, exit: null, state: "running", moves: 0 } as unknown as HomeRecord;
}

/** A node's directory part over `directory`, with a table of `records`; returns it with what its table was told. */
function member(directory: MemoryDirectory, name: string, records: HomeRecord[]): { nd: NodeDirectory; finished: Map<string, ProcessStatus>; events: EventHub } {
  const finished = new Map<string, ProcessStatus>();
  const events = new EventHub(name);
  const table = {
    homes: () => records,
    home: (pid: string) => records.find((r) => r.pid === pid),
    finish: (record: HomeRecord, status: ProcessStatus) => {
      if (record.exit !== null) return;
      record.exit = status;
      finished.set(record.pid, status);
    },
  };
  const nd = new NodeDirectory({ name, address: `127.0.0.1:${name.charCodeAt(0)}`, table, events, log: logger().child({ node: name }), addPeers: () => undefined }, directory, TTL_MS);
  return { nd, finished, events };
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeout_ms = 10_000): Promise<void> {
  const deadline = Date.now() + timeout_ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("a member declared dead", () => {
  it("has what it ran marked lost once, by the home or the first alive node, and the checkpointed ones handed to onNodeDead", async () => {
    const d = new MemoryDirectory();
    // a-1: home a, moved to b. b-1: home b, runs on b. b-2: home b, runs on b, has a checkpoint. c-1: home c, runs on c.
    const a_homes = [home("a-1", "b")];
    const b_homes = [home("b-1", "b"), home("b-2", "b")];
    const c_homes = [home("c-1", "c")];
    const a = member(d, "a", a_homes);
    const b = member(d, "b", b_homes);
    const c = member(d, "c", c_homes);
    const told: { on: string; event: NodeDeadEvent }[] = [];
    a.nd.onNodeDead.add((event) => void told.push({ on: "a", event }));
    c.nd.onNodeDead.add((event) => void told.push({ on: "c", event }));
    const writes: string[] = [];
    await d.watch((change) => {
      if (change.kind === "process" && change.record.state === "lost") writes.push(change.record.pid);
    });
    try {
      for (const m of [a, b, c]) await m.nd.start();
      for (const pid of ["a-1", "b-1", "b-2", "c-1"]) {
        const owner = [a, b, c].find((m) => m.nd.membership.name === pid[0]);
        owner?.nd.started(pid);
        await owner?.nd.written(pid);
      }
      await a.nd.moved("a-1", "b", 1);
      assert.ok((await d.updateProcess("b-2", 0, { last_checkpoint: { node: "c", seq: 3, moves: 0 } })).ok);
      await until("everyone to see everyone alive", () => [a, b, c].every((m) => m.nd.membership.members().filter((x) => x.state === "alive").length === 3));

      // b stops renewing (as a crash would): no leave, its lease runs out.
      await b.nd.membership.stop(false);
      await until("a and c to be told of b's death", () => told.length === 2);
      await until("the losses to be written", () => writes.length === 2);

      // One write each: a-1 by its home a, b-1 (home b dead) by a, the first alive member.
      assert.deepEqual(writes.sort(), ["a-1", "b-1"]);
      assert.equal(a.finished.get("a-1")?.kind, "lost");
      assert.match((a.finished.get("a-1") as { message: string }).message, /node b was declared dead .* while a-1 ran there; it had no checkpoint/);
      assert.deepEqual([...c.finished.keys()], []);
      assert.equal((await d.process("b-2"))?.state, "running", "the checkpointed one is left for failover");
      assert.equal((await d.process("c-1"))?.state, "running");
      const on_a = told.find((t) => t.on === "a")?.event;
      assert.deepEqual([on_a?.name, on_a?.lost.sort(), on_a?.checkpointed.map((r) => r.pid)], ["b", ["a-1", "b-1"], ["b-2"]]);
      assert.deepEqual(told.find((t) => t.on === "c")?.event.lost, []);
      // The event hub says so, with the reason.
      const dead = a.events.recent().find((e) => e.type === "node.dead");
      assert.ok(dead !== undefined && dead.type === "node.dead" && dead.peer === "b" && /did not renew its lease/.test(dead.reason));
    } finally {
      for (const m of [a, c]) await m.nd.membership.stop(true);
      await d.close();
    }
  });

  it("marks checkpointed processes lost too while nothing subscribes to onNodeDead (no failover)", async () => {
    const d = new MemoryDirectory();
    const a = member(d, "a", [home("a-1", "b")]);
    const b = member(d, "b", []);
    try {
      await a.nd.start();
      await b.nd.start();
      a.nd.started("a-1");
      await a.nd.written("a-1");
      await a.nd.moved("a-1", "b", 1);
      assert.ok((await d.updateProcess("a-1", 1, { last_checkpoint: { node: "a", seq: 1, moves: 1 } })).ok);
      await until("a to see b", () => a.nd.membership.member("b")?.state === "alive");
      await b.nd.membership.stop(false);
      await until("a-1 lost", async () => (await d.process("a-1"))?.state === "lost");
      assert.match((await d.process("a-1"))?.reason ?? "", /there is no failover here to restart it/);
      assert.equal(a.finished.get("a-1")?.kind, "lost");
    } finally {
      await a.nd.membership.stop(true);
      await d.close();
    }
  });
});

/** A directory that does not answer process updates while `down` is true. */
class FlakyDirectory extends MemoryDirectory {
  down = false;
  updates = 0;
  override updateProcess(pid: string, expect_moves: number, change: ProcessChange): Promise<CasResult> {
    this.updates += 1;
    if (this.down) return Promise.reject(new FerryError("ERR_DIRECTORY_UNAVAILABLE", "the test's directory is down"));
    return super.updateProcess(pid, expect_moves, change);
  }
}

describe("a move's record", () => {
  it("is refused at once when the directory holds a later move (a takeover's)", async () => {
    const d = new MemoryDirectory();
    const a = member(d, "a", [home("a-1", "a")]);
    try {
      a.nd.started("a-1");
      await a.nd.written("a-1");
      // While a moved it to b, the directory recorded a takeover that restarted it on c as move 1.
      assert.ok((await d.updateProcess("a-1", 0, { runner: "c", moves: 1 })).ok);
      const r = await a.nd.moved("a-1", "b", 1);
      assert.equal(r.kind, "refused");
      assert.ok(r.kind === "refused" && r.reason === "stale" && r.current?.runner === "c");
      assert.equal((await d.process("a-1"))?.runner, "c");
    } finally {
      await d.close();
    }
  });

  it("is tried while the directory does not answer, and taken once it does", async () => {
    const d = new FlakyDirectory();
    const a = member(d, "a", [home("a-1", "a")]);
    try {
      a.nd.started("a-1");
      await a.nd.written("a-1");
      d.down = true;
      const recorded = a.nd.moved("a-1", "b", 1);
      await until("a few tries", () => d.updates >= 3);
      d.down = false;
      assert.deepEqual(await recorded, { kind: "recorded" });
      assert.equal((await d.process("a-1"))?.runner, "b");
    } finally {
      await d.close();
    }
  });

  it("waits for the record it follows (the previous move's, still on its way), then is taken", async () => {
    const d = new FlakyDirectory();
    const a = member(d, "a", [home("a-1", "a")]);
    try {
      a.nd.started("a-1");
      await a.nd.written("a-1");
      // Move 2 (b to a) is recorded by a before move 1 (a to b), written by another node, has arrived.
      const recorded = a.nd.moved("a-1", "a", 2);
      const tries = d.updates;
      await until("a second try", () => d.updates >= tries + 2);
      assert.ok((await d.updateProcess("a-1", 0, { runner: "b", moves: 1 })).ok);
      assert.deepEqual(await recorded, { kind: "recorded" });
      assert.equal((await d.process("a-1"))?.moves, 2);
    } finally {
      await d.close();
    }
  });

  it("is refused when the record it follows has not come by the give-up time (the directory answers all along)", async () => {
    const d = new FlakyDirectory();
    const a = member(d, "a", [home("a-1", "a")]);
    try {
      a.nd.started("a-1");
      await a.nd.written("a-1");
      const r = await a.nd.moved("a-1", "a", 2, { give_up_ms: 200 });
      assert.equal(r.kind, "refused");
      assert.ok(r.kind === "refused" && r.reason === "stale" && r.current?.moves === 0);
      const missing = await a.nd.moved("a-9", "b", 1, { give_up_ms: 200 });
      assert.ok(missing.kind === "refused" && missing.reason === "missing");
    } finally {
      await d.close();
    }
  });

  it("says it is not recorded when the directory stays down past the give-up time", async () => {
    const d = new FlakyDirectory();
    const a = member(d, "a", [home("a-1", "a")]);
    try {
      a.nd.started("a-1");
      await a.nd.written("a-1");
      d.down = true;
      const r = await a.nd.moved("a-1", "b", 1, { give_up_ms: 200 });
      assert.equal(r.kind, "unrecorded");
      assert.match(r.kind === "unrecorded" ? r.detail : "", /down/);
    } finally {
      d.down = false;
      await d.close();
    }
  });
});
