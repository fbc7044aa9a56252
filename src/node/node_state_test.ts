import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { FerryError } from "../errors.js";
import { LOAD_STATE_VERSION, LoadStateFile, NODE_STATE_VERSION, NodeStateFile, type NodeState } from "./node_state.js";
import { savedHome } from "./_state_testing.js";

function state(over: Partial<NodeState> = {}): NodeState {
  return {
    version: NODE_STATE_VERSION,
    node: "n1",
    next_pid: 3,
    homes: [savedHome("n1-1", { node: "n2", moves: 2, previous: "n3" })],
    running: [{ pid: "n2-4", home: "n2", moves: 1, moving_to: "n3" }],
    ...over,
  };
}

const isStateError = (err: unknown): boolean => err instanceof FerryError && err.code === "ERR_STATE_FILE";

describe("node state file", () => {
  it("is absent in a new data directory, and reads back what was saved", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-state-"));
    try {
      const file = new NodeStateFile(dir);
      assert.equal(file.load("n1"), null);
      file.save(state());
      assert.deepEqual(file.load("n1"), state());
      file.save(state({ next_pid: 9, homes: [] }));
      assert.equal(file.load("n1")?.next_pid, 9);
      assert.deepEqual(fs.readdirSync(path.dirname(file.path)), ["node.json"], "no temporary file is left behind");
      assert.equal(fs.statSync(file.path).mode & 0o777, 0o600);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses a damaged file with ERR_STATE_FILE naming it: cut short, another layout, another node's", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-state-"));
    try {
      const file = new NodeStateFile(dir);
      file.save(state());
      const whole = fs.readFileSync(file.path, "utf8");
      fs.writeFileSync(file.path, whole.slice(0, whole.length / 2));
      assert.throws(() => file.load("n1"), (err: unknown) => isStateError(err) && (err as Error).message.includes(file.path) && /not JSON/.test((err as Error).message));
      fs.writeFileSync(file.path, JSON.stringify({ ...state(), next_pid: -1 }));
      assert.throws(() => file.load("n1"), (err: unknown) => isStateError(err) && /next_pid/.test((err as Error).message));
      fs.writeFileSync(file.path, JSON.stringify({ ...state(), version: 99 }));
      assert.throws(() => file.load("n1"), isStateError);
      file.save(state());
      assert.throws(() => file.load("n2"), (err: unknown) => isStateError(err) && /belongs to node n1/.test((err as Error).message));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("load state file", () => {
  it("keeps a drain across a restart, and refuses a damaged file or another node's", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-load-state-"));
    try {
      const file = new LoadStateFile(dir);
      assert.equal(file.load("n1"), null, "a new data directory has none");
      file.save({ version: LOAD_STATE_VERSION, node: "n1", draining: true });
      assert.deepEqual(new LoadStateFile(dir).load("n1"), { version: LOAD_STATE_VERSION, node: "n1", draining: true });
      assert.throws(() => new LoadStateFile(dir).load("n2"), isStateError, "another node's file");
      fs.writeFileSync(file.path, '{"version":1,"node":"n1","draining":"yes"}');
      assert.throws(() => file.load("n1"), isStateError, "a field of the wrong kind");
      fs.writeFileSync(file.path, '{"version":1,"node":"n1",');
      assert.throws(() => file.load("n1"), isStateError, "cut short");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
