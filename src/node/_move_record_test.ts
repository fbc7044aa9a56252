/**
 * A committed move's source drops its copy only once the directory has
 * taken the move, or refused it for good; either failure is published as
 * `migration.unrecorded`; the home is told once the directory has
 * answered for good.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { logger } from "../log/mod.js";
import type { MoveRecord } from "./cluster_directory.js";
import type { NodeEventBody } from "./events.js";
import { recordMove, type CommittedMove, type MoveRecordHost } from "./_move_record.js";

const MOVE: CommittedMove = { pid: "a-1", home: "a", to: "b", moves: 1 };

/** A host whose directory answers each `moved` with the next of `answers` (the last one repeated). */
function host(answers: MoveRecord[]): MoveRecordHost & { told: CommittedMove[]; events: NodeEventBody[]; tries: () => number; stop: () => void } {
  const told: CommittedMove[] = [];
  const events: NodeEventBody[] = [];
  let tries = 0;
  let stopping = false;
  return {
    cluster: {
      moved: () => Promise.resolve(answers[Math.min(tries++, answers.length - 1)] as MoveRecord),
      get stopping() {
        return stopping;
      },
    },
    tellHome: (m) => {
      told.push(m);
      return Promise.resolve();
    },
    publish: (e) => void events.push(e),
    log: logger().child({ test: "move record" }),
    told,
    events,
    tries: () => tries,
    stop: () => {
      stopping = true;
    },
  };
}

/** Whether `p` has settled, after the microtasks queued so far. */
async function settled(p: Promise<void>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  return done;
}

describe("recording a committed move", () => {
  it("tells the home and lets the copy go once the directory takes it", async () => {
    const h = host([{ kind: "recorded" }]);
    const outcome = await recordMove(h, MOVE);
    assert.equal(outcome.record, "recorded");
    assert.ok(await settled(outcome.copy_may_go));
    assert.deepEqual(h.told, [MOVE]);
    assert.deepEqual(h.events, []);
  });

  it("regression, a refused record was only logged: the refusal is published, the copy goes, and the home is told (its own rules judge it)", async () => {
    const current = { pid: "a-1", home: "a", runner: "c", state: "running" as const, moves: 1, last_checkpoint: null, reason: null, exit_code: null, updated_unix_ms: 0 };
    const h = host([{ kind: "refused", reason: "stale", current }]);
    const outcome = await recordMove(h, MOVE);
    assert.equal(outcome.record, "refused");
    assert.ok(await settled(outcome.copy_may_go));
    assert.deepEqual(h.told, [MOVE]);
    assert.equal(h.events.length, 1);
    const e = h.events[0];
    assert.ok(e?.type === "migration.unrecorded");
    assert.equal(e.reason, "stale");
    assert.equal(e.source_copy, "dropped");
    assert.match(e.detail, /move 1, on c/);
  });

  it("keeps the copy while the directory does not answer, and lets it go once the record is taken at last", async () => {
    const h = host([{ kind: "unrecorded", detail: "the directory is down" }, { kind: "unrecorded", detail: "the directory is down" }, { kind: "recorded" }]);
    const outcome = await recordMove(h, MOVE);
    assert.equal(outcome.record, "unrecorded");
    const e = h.events[0];
    assert.ok(e?.type === "migration.unrecorded");
    assert.equal(e.reason, "unavailable");
    assert.equal(e.source_copy, "kept");
    assert.deepEqual(h.told, []);
    await outcome.copy_may_go;
    assert.equal(h.tries(), 3);
    assert.deepEqual(h.told, [MOVE]);
  });

  it("lets a kept copy go when the node stops before the record is taken", async () => {
    const h = host([{ kind: "unrecorded", detail: "the directory is down" }]);
    const outcome = await recordMove(h, MOVE);
    assert.equal(outcome.record, "unrecorded");
    h.stop();
    await outcome.copy_may_go;
    assert.deepEqual(h.told, []);
  });

  it("without a directory, tells the home and lets the copy go", async () => {
    const h = { ...host([]), cluster: null };
    const outcome = await recordMove(h, MOVE);
    assert.equal(outcome.record, "recorded");
    assert.deepEqual(h.told, [MOVE]);
  });
});
