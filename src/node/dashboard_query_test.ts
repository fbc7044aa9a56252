import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parse } from "../validate.js";
import { FerryError } from "../errors.js";
import { comparePids, pageProcesses, ProcessQuerySchema, type ProcessRow } from "./dashboard_query.js";

const rows: ProcessRow[] = Array.from({ length: 25 }, (_, i) => ({
  pid: `n${(i % 2) + 1}-${i + 1}`,
  node: i % 3 === 0 ? "n3" : "n1",
  home: `n${(i % 2) + 1}`,
  state: i % 5 === 0 ? "exited" : "running",
  module_name: i === 7 ? "special.wasm" : "prog.wasm",
  args: [String(i * 11)],
  started_unix_ms: 1000 + i,
  moves: 0,
  memory_bytes: i % 5 === 0 ? null : i * 100,
}));

const query = (q: Record<string, string>) => parse(ProcessQuerySchema, q, "query");

describe("the dashboard's process pages", () => {
  it("orders pids by home, then by number", () => {
    assert.deepEqual(["n1-10", "n1-2", "n0-5", "n1-1"].sort(comparePids), ["n0-5", "n1-1", "n1-2", "n1-10"]);
  });

  it("pages without overlap or gap, counting before and after the filter", () => {
    const seen: string[] = [];
    for (let offset = 0; offset < 25; offset += 10) {
      const page = pageProcesses(rows, query({ offset: String(offset), limit: "10" }));
      assert.equal(page.total, 25);
      assert.equal(page.all, 25);
      seen.push(...page.rows.map((r) => r.pid));
    }
    assert.deepEqual(seen, [...rows.map((r) => r.pid)].sort(comparePids));
    assert.deepEqual(pageProcesses(rows, query({})).states, { exited: 5, running: 20 });
  });

  it("filters by text, state, node and pids, and sorts by memory", () => {
    assert.deepEqual(pageProcesses(rows, query({ q: "SPECIAL" })).rows.map((r) => r.pid), ["n2-8"]);
    assert.deepEqual(pageProcesses(rows, query({ q: "77" })).rows.map((r) => r.pid), ["n2-8"]);
    assert.equal(pageProcesses(rows, query({ state: "exited" })).total, 5);
    assert.ok(pageProcesses(rows, query({ node: "n3" })).rows.every((r) => r.node === "n3"));
    assert.deepEqual(pageProcesses(rows, query({ pids: "n1-1,n2-2" })).rows.map((r) => r.pid), ["n1-1", "n2-2"]);
    const by_memory = pageProcesses(rows, query({ sort: "memory", limit: "3" })).rows.map((r) => r.memory_bytes);
    assert.deepEqual(by_memory, [2400, 2300, 2200]);
  });

  it("refuses queries out of bounds", () => {
    for (const bad of [{ limit: "501" } as Record<string, string>, { offset: "-1" }, { sort: "name" }, { state: "sleeping" }, { pids: "n1-1;x" }, { q: "x".repeat(201) }]) {
      assert.throws(() => query(bad), (err: unknown) => err instanceof FerryError && err.code === "ERR_BAD_REQUEST", JSON.stringify(bad));
    }
  });
});
