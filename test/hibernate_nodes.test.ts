/**
 * Hibernation on real nodes (`--hibernate-after`): sleepers leave their
 * worker threads (the node's thread count drops, its metrics count them)
 * while `ferry ps` shows them running, and they wake on time, on a kill, for
 * a checkpoint and for a migration, writing what a run that never hibernated
 * writes; the load module counts them without walking them, and a drain
 * moves them.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { EXAMPLES, until } from "./_helpers.js";
import { json, NODE_ARGS_DEFAULT, outputOf, request, startCluster, upload, type NodeProc } from "./_cluster.js";

/** Threads of a node's OS process now (Linux). */
function threads(node: NodeProc): number {
  const status = fs.readFileSync(`/proc/${node.child.pid}/status`, "utf8");
  const m = /^Threads:\s+(\d+)$/m.exec(status);
  assert.ok(m !== null, "no thread count in /proc/PID/status");
  return Number(m[1]);
}

/** A gauge of a node's /metrics. */
async function gauge(node: NodeProc, name: string): Promise<number> {
  const text = (await request(node.address, "GET", "/metrics")).body.toString();
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text);
  assert.ok(m !== null, `no ${name} in the metrics`);
  return Number(m[1]);
}

/** What `sleeper SLEEP STEPS` prints on a node (no input). */
function sleeperTicks(sleep_ms: number, steps: number): string {
  const lines = [`sleeper: sleep_ms=${sleep_ms} steps=${steps}`, "eof after 0 lines"];
  for (let s = 1; s <= steps; s++) lines.push(`tick ${s}`);
  lines.push(`done lines=0 ticks=${steps}`);
  return lines.join("\n") + "\n";
}

/** Node `name`'s load row as `node` reports it (GET /v1/nodes). */
async function loadOf(node: NodeProc, name: string): Promise<{ processes: number; runnable: number; memory_used_bytes: number }> {
  const rows = await json<{ name: string; load: { processes: number; runnable: number; memory_used_bytes: number } | null }[]>(node.address, "GET", "/v1/nodes");
  const row = rows.find((r) => r.name === name)?.load;
  assert.ok(row !== undefined && row !== null, `no load row for ${name}`);
  return row;
}

describe("hibernation on nodes", () => {
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  let n1: NodeProc;
  let n2: NodeProc;
  before(async () => {
    cluster = await startCluster(["n1", "n2"], undefined, () => [...NODE_ARGS_DEFAULT, "--hibernate-after", "300", "--balance", "off"]);
    [n1, n2] = cluster.nodes as [NodeProc, NodeProc];
  });
  after(async () => {
    await cluster.stop();
  });

  it("sleepers hibernate, look running, and wake on time, on a kill, for a checkpoint and for a migration", async () => {
    const sha = await upload(n1.address, path.join(EXAMPLES, "c", "sleeper.wasm"));
    await upload(n2.address, path.join(EXAMPLES, "c", "sleeper.wasm"));
    const idle_threads = threads(n1);
    const start = async (args: string[]): Promise<string> =>
      (await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "sleeper.wasm", args })).pid;
    // Long sleepers to kill, to checkpoint and to move; short ones that end by themselves.
    const long = await Promise.all(Array.from({ length: 8 }, () => start(["60000", "1"])));
    const moving = await start(["8000", "2"]);
    const timed = await Promise.all(Array.from({ length: 3 }, () => start(["8000", "2"])));
    const all = [...long, moving, ...timed];
    await until("every sleeper to hibernate", async () => (await gauge(n1, "ferry_node_processes_hibernated")) === all.length);
    assert.ok((await gauge(n1, "ferry_node_hibernated_bytes")) > 0);
    // Twelve sleepers awake would be twelve more threads (and isolates) than the idle node had; hibernated they are none.
    const slept_threads = threads(n1);
    assert.ok(slept_threads < idle_threads + all.length / 2, `the node has ${slept_threads} threads with ${all.length} hibernated sleepers, ${idle_threads} before them`);
    const ps = await json<{ pid: string; state: string; node: string }[]>(n1.address, "GET", "/v1/processes");
    for (const pid of all) assert.equal(ps.find((p) => p.pid === pid)?.state, "running", `${pid} does not show as running`);

    // A checkpoint wakes it for the time it takes; it hibernates again after.
    const [checkpointed, killed] = long as [string, string];
    const cp = await request(n1.address, "POST", `/v1/processes/${checkpointed}/checkpoint`);
    assert.equal(cp.status, 200, cp.body.toString());

    const kill = await request(n1.address, "DELETE", `/v1/processes/${killed}`);
    assert.equal(kill.status, 200, kill.body.toString());
    const { status: killed_status } = await json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${killed}/wait`);
    assert.deepEqual(killed_status, { kind: "killed" });

    const moved = await request(n1.address, "POST", `/v1/processes/${moving}/migrate`, { to: "n2", strategy: "pre-copy" });
    assert.equal(moved.status, 200, moved.body.toString());
    const after_move = await json<{ pid: string; node: string }[]>(n1.address, "GET", "/v1/processes");
    assert.equal(after_move.find((p) => p.pid === moving)?.node, "n2");

    for (const pid of [moving, ...timed]) {
      const { status } = await json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${pid}/wait`);
      assert.deepEqual(status, { kind: "exit", code: 0 }, pid);
      const out = await outputOf(n1.address, pid);
      assert.equal(out.stdout.toString(), sleeperTicks(8000, 2), `output of ${pid}`);
      assert.equal(out.stderr.toString(), "sleeper: summary lines=0 bytes=0 ticks=2\n");
    }
    for (const pid of long.slice(2)) await request(n1.address, "DELETE", `/v1/processes/${pid}`);
    await request(n1.address, "DELETE", `/v1/processes/${checkpointed}`);
    await until("the node to have no hibernated process left", async () => (await gauge(n1, "ferry_node_processes_hibernated")) === 0);
  });

  it("counts sleepers in its load without a core each, and a drain moves them all", async () => {
    const sha = await upload(n1.address, path.join(EXAMPLES, "c", "sleeper.wasm"));
    await upload(n2.address, path.join(EXAMPLES, "c", "sleeper.wasm"));
    const pids = await Promise.all(
      Array.from({ length: 6 }, async () => (await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "sleeper.wasm", args: ["60000", "1"], node: "n1" })).pid),
    );
    await until("every sleeper to hibernate", async () => (await gauge(n1, "ferry_node_processes_hibernated")) === pids.length);
    // The balancer on: a round counts the sleepers from the table's sums, not by walking them.
    const on = await request(n1.address, "PUT", "/v1/policy", { set: { balance: true }, local: true });
    assert.equal(on.status, 200, on.body.toString());
    const load = await loadOf(n1, "n1");
    assert.equal(load.processes, pids.length);
    assert.equal(load.runnable, 0, "a hibernated guest wants no core");
    assert.ok(load.memory_used_bytes >= pids.length * 65536, `memory used ${load.memory_used_bytes} does not count ${pids.length} sleepers of a page or more`);
    // Drained, the node sends its sleepers away too: they are the only way it empties.
    const drain = await request(n1.address, "POST", "/v1/nodes/n1/drain");
    assert.equal(drain.status, 200, drain.body.toString());
    await until("every sleeper to run on n2", async () => {
      const ps = await json<{ pid: string; node: string }[]>(n1.address, "GET", "/v1/processes");
      return pids.every((pid) => ps.find((p) => p.pid === pid)?.node === "n2");
    });
    await until("n1 to count no process", async () => (await loadOf(n1, "n1")).processes === 0);
    await until("n2 to count the sleepers", async () => (await loadOf(n2, "n2")).processes === pids.length);
    for (const pid of pids) {
      const kill = await request(n1.address, "DELETE", `/v1/processes/${pid}`);
      assert.equal(kill.status, 200, kill.body.toString());
    }
    await until("n2 to count no process", async () => (await loadOf(n2, "n2")).processes === 0);
    await request(n1.address, "POST", "/v1/nodes/n1/undrain");
  });
});
