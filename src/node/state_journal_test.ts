import assert from "node:assert/strict";
import { pbkdf2 } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { Prng } from "../_prng.js";
import { FerryError } from "../errors.js";
import { NODE_STATE_VERSION, NodeStateFile, type NodeState, type SavedHome, type SavedRunning } from "./node_state.js";
import { StateJournal } from "./_state_journal.js";
import { savedHome } from "./_state_testing.js";

const isStateError = (err: unknown): boolean => err instanceof FerryError && err.code === "ERR_STATE_FILE";

const home = savedHome;

/** A table as the process table keeps it, reduced to what is saved: the journal's model. */
class Model {
  next_pid = 1;
  readonly homes = new Map<string, SavedHome>();
  readonly running = new Map<string, SavedRunning[]>();

  whole(): NodeState {
    return { version: NODE_STATE_VERSION, node: "n1", next_pid: this.next_pid, homes: [...this.homes.values()], running: [...this.running.values()].flat() };
  }

  of(pid: string): { pid: string; home: SavedHome | null; running: SavedRunning[] } {
    return { pid, home: this.homes.get(pid) ?? null, running: this.running.get(pid) ?? [] };
  }
}

function withDir(f: (dir: string) => void): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-journal-"));
  try {
    f(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** What a restarted node reads, compared without the order of running entries (the journal groups them by pid). */
function loaded(dir: string): NodeState | null {
  const s = new StateJournal(dir, "n1").load();
  return s === null ? null : sorted(s);
}

function sorted(s: NodeState): NodeState {
  return { ...s, running: [...s.running].sort((a, b) => a.pid.localeCompare(b.pid) || a.moves - b.moves) };
}

describe("node state journal", () => {
  it("a node that dies after any change (never closed, during or between compactions) reads back every change, its pids in order, over random seeds", () => {
    for (const seed of [1, 2, 3, 4]) {
      withDir((dir) => {
        const rng = new Prng(seed);
        const model = new Model();
        // Small, so that the run crosses many compactions.
        let journal = new StateJournal(dir, "n1", { journal_bytes_min: 2048 });
        assert.equal(journal.load(), null, "a new data directory has no state");
        let compactions = 0;
        for (let step = 0; step < 300; step += 1) {
          const pids = [...model.homes.keys()];
          const roll = rng.int(10);
          let pid: string | undefined;
          if (roll < 3 || pids.length === 0) {
            // A start: the counter first, then the record and its running entry.
            pid = `n1-${model.next_pid}`;
            model.next_pid += 1;
            journal.record({ next_pid: model.next_pid }, () => model.whole());
            model.homes.set(pid, home(pid));
            model.running.set(pid, [{ pid, home: "n1", moves: 0 }]);
          } else if (roll < 6) {
            pid = rng.pick(pids);
            const h = model.homes.get(pid) as SavedHome;
            model.homes.set(pid, { ...h, state: "exited", exit: { kind: "exit", code: rng.int(3) } });
            model.running.delete(pid);
          } else if (roll < 8) {
            pid = rng.pick(pids);
            const h = model.homes.get(pid) as SavedHome;
            model.homes.set(pid, { ...h, node: "n2", previous: h.node, moves: h.moves + 1 });
            model.running.set(pid, [{ pid, home: "n1", moves: h.moves + 1, moving_to: "n2" }, { pid, home: "n1", moves: h.moves }]);
          } else if (roll < 9) {
            // A start that failed: the record is dropped again.
            pid = rng.pick(pids);
            model.homes.delete(pid);
            model.running.delete(pid);
          } else {
            // A process of another home arriving here.
            pid = `n2-${step}`;
            model.running.set(pid, [{ pid, home: "n2", moves: 3 }]);
          }
          journal.record({ next_pid: model.next_pid, pid: model.of(pid) }, () => model.whole());
          if (rng.chance(0.05)) {
            // A crash: nothing closed, the next run reads what is on disk.
            compactions += journal.compactions;
            assert.deepEqual(loaded(dir), sorted(model.whole()), `seed ${seed}, step ${step}`);
            journal = new StateJournal(dir, "n1", { journal_bytes_min: 2048 });
            const back = journal.load() as NodeState;
            assert.deepEqual([...back.homes.map((h) => h.pid)], [...model.homes.keys()], "home records in the order they were made");
          }
        }
        compactions += journal.compactions;
        assert.ok(compactions > 5, `the run crossed compactions (${compactions})`);
        assert.deepEqual(loaded(dir), sorted(model.whole()));
        const files = fs.readdirSync(path.join(dir, "state")).sort();
        assert.equal(files.length, 2, `one snapshot and its journal: ${files.join(", ")}`);
      });
    }
  });

  it("recordSoon appends in order with record, across compactions; a journal left behind closes only once its syncs are done", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-journal-"));
    const fds = (): number => fs.readdirSync("/proc/self/fd").length;
    try {
      const before = fds();
      const rng = new Prng(7);
      const model = new Model();
      const journal = new StateJournal(dir, "n1", { journal_bytes_min: 2048 });
      journal.load();
      const syncs: Promise<void>[] = [];
      for (let step = 0; step < 300; step += 1) {
        const pid = `n1-${1 + rng.int(40)}`;
        if (rng.chance(0.5)) model.homes.set(pid, { ...home(pid), moves: step });
        else model.homes.delete(pid);
        model.next_pid = Math.max(model.next_pid, step);
        const change = { next_pid: model.next_pid, pid: model.of(pid) };
        // Mostly soon, so that compactions fall while syncs are under way on the journal they leave behind.
        if (rng.chance(0.8)) syncs.push(journal.recordSoon(change, () => model.whole()));
        else journal.record(change, () => model.whole());
      }
      assert.ok(journal.compactions > 3, `the run crossed compactions (${journal.compactions})`);
      // A close with syncs under way: they complete, on a descriptor still open.
      syncs.push(journal.recordSoon({ next_pid: model.next_pid }, () => model.whole()));
      journal.close();
      await Promise.all(syncs);
      assert.equal(fds(), before, "every journal descriptor closed");
      assert.deepEqual(loaded(dir), sorted(model.whole()));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a compaction while a sync waits in libuv's pool leaves the old journal open until that sync is done", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-journal-"));
    try {
      const model = new Model();
      const journal = new StateJournal(dir, "n1");
      journal.load();
      // Every thread of the pool busy for a while: the sync below waits in its queue.
      const threads = Number(process.env["UV_THREADPOOL_SIZE"] ?? 4);
      const busy = Array.from({ length: threads }, () => new Promise((r) => pbkdf2(Buffer.alloc(8), Buffer.alloc(8), 200_000, 32, "sha256", r)));
      model.homes.set("n1-1", home("n1-1"));
      model.next_pid = 2;
      const synced = journal.recordSoon({ next_pid: 2, pid: model.of("n1-1") }, () => model.whole());
      journal.compact(model.whole());
      await Promise.all([synced, ...busy]);
      journal.close();
      assert.deepEqual(loaded(dir), sorted(model.whole()));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("drops a last line cut short, and refuses a damaged line before it with ERR_STATE_FILE naming the journal", () => {
    withDir((dir) => {
      const journal = new StateJournal(dir, "n1");
      journal.load();
      const model = new Model();
      for (let i = 1; i <= 3; i += 1) {
        model.next_pid = i + 1;
        model.homes.set(`n1-${i}`, home(`n1-${i}`));
        journal.record({ next_pid: model.next_pid, pid: model.of(`n1-${i}`) }, () => model.whole());
      }
      const file = journal.journalPath();
      const text = fs.readFileSync(file, "utf8");
      // The third append cut short by a crash: the first two stay.
      fs.writeFileSync(file, text.slice(0, text.length - 20));
      const back = new StateJournal(dir, "n1").load();
      assert.deepEqual(back?.homes.map((h) => h.pid), ["n1-1", "n1-2"]);
      assert.equal(back?.next_pid, 3);

      // That load started a new generation; damage the snapshot's journal in its middle.
      const again = new StateJournal(dir, "n1");
      again.load();
      model.homes.set("n1-4", home("n1-4"));
      again.record({ next_pid: 5, pid: model.of("n1-4") }, () => model.whole());
      again.record({ next_pid: 6 }, () => model.whole());
      const lines = fs.readFileSync(again.journalPath(), "utf8").split("\n");
      fs.writeFileSync(again.journalPath(), [lines[0]?.replace('"next_pid":5', '"next_pid":-5'), ...lines.slice(1)].join("\n"));
      assert.throws(
        () => new StateJournal(dir, "n1").load(),
        (err: unknown) => isStateError(err) && (err as Error).message.includes(again.journalPath()) && /line 1/.test((err as Error).message),
      );
    });
  });

  it("reads a version 1 state file (no journal) and a journal a crash during a compaction left behind", () => {
    withDir((dir) => {
      const v1 = { version: 1, node: "n1", next_pid: 3, homes: [home("n1-1"), home("n1-2")], running: [{ pid: "n1-2", home: "n1", moves: 0 }] } as NodeState;
      new NodeStateFile(dir).save(v1);
      const journal = new StateJournal(dir, "n1");
      assert.deepEqual(journal.load(), { ...v1, version: NODE_STATE_VERSION });
      const saved = JSON.parse(fs.readFileSync(new NodeStateFile(dir).path, "utf8")) as { version: number; journal: number };
      assert.equal(saved.version, NODE_STATE_VERSION, "rewritten in the new layout");
      // A crash after the next generation's journal was made, before the snapshot naming it was written.
      fs.writeFileSync(journal.journalPath(saved.journal + 1), '{"next_pid":99}\n');
      const back = new StateJournal(dir, "n1").load();
      assert.equal(back?.next_pid, 3, "a journal the snapshot does not name is not read");
      assert.equal(new StateJournal(dir, "n1").load()?.next_pid, 3, "nor once a new generation took its name");
      assert.equal(fs.readdirSync(path.join(dir, "state")).length, 2, "one snapshot and its journal");
    });
  });
});
