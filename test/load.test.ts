/**
 * The load module on real nodes (issue 12; docs/load.md, "In the daemon"):
 * a skewed batch spreads and gives the same outputs, a chatty pair ends on
 * one node, drain empties a node, a requirement is never broken, and a
 * stable load makes no moves. Timings are asserted only loosely (the
 * machine is shared); `node dist/bench/run.js --only=balance` prints them.
 */
import assert from "node:assert/strict";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { spawn, type ChildProcess } from "node:child_process";
import { EXAMPLES, FERRY, ferry, tempDir, until } from "./_helpers.js";
import { freePorts, json, nodeDialer, outputOf, request, startCluster, startNode, stopNode, testOffer, upload, type NodeProc } from "./_cluster.js";
import { Msg } from "../src/migration/mod.js";
import { connectData } from "../src/node/mod.js";
import fs from "node:fs";
import { GuestProcess } from "../src/runtime/mod.js";

const COMPUTE = path.join(EXAMPLES, "c", "compute.wasm");
const PINGPONG = path.join(EXAMPLES, "c", "pingpong.wasm");
const SLEEPER = path.join(EXAMPLES, "c", "sleeper.wasm");
const MEMHOG = path.join(EXAMPLES, "c", "memhog.wasm");
/** A process that mostly waits: it wants no CPU, so only drain or requirements move it. */
const IDLE_ARGS = ["1000", "600"];

/** Rounds of compute.wasm per job: about 2 s of one core here, long enough that moving pays. */
const JOB_ROUNDS = "30";

interface Proc {
  pid: string;
  node: string;
  state: string;
  moves: number;
  exit: { kind: string; code?: number } | null;
}

async function run(address: string, sha: string, args: string[], extra: object = {}): Promise<string> {
  const r = await json<{ pid: string }>(address, "POST", "/v1/processes", { module_sha256: sha, module_name: "job.wasm", args, ...extra });
  return r.pid;
}

function proc(address: string, pid: string): Promise<Proc> {
  return json<Proc>(address, "GET", `/v1/processes/${pid}`);
}

async function waitAll(address: string, pids: string[]): Promise<void> {
  await Promise.all(pids.map((pid) => json(address, "GET", `/v1/processes/${pid}/wait`)));
}

/** Recent events of the cluster (every node's, through `address`). */
async function events(address: string): Promise<Record<string, unknown>[]> {
  const r = await request(address, "GET", "/v1/events");
  return r.body
    .toString()
    .split("\n\n")
    .map((block) => /^data: (.*)$/m.exec(block)?.[1])
    .filter((d): d is string => d !== undefined)
    .map((d) => JSON.parse(d) as Record<string, unknown>);
}

/** A port P with P+1 free too (ferry up listens on both), as far as binding them now tells. */
async function consecutiveFreePorts(n: number): Promise<number> {
  for (;;) {
    const [p] = (await freePorts(1)) as [number];
    const free = await Promise.all(
      Array.from({ length: n - 1 }, (_, i) => new Promise<boolean>((resolve) => {
        const s = net.createServer();
        s.once("error", () => resolve(false));
        s.listen(p + i + 1, "127.0.0.1", () => s.close(() => resolve(true)));
      })),
    );
    if (free.every(Boolean)) return p;
  }
}

/** The value `pattern` (with one group) finds in a metrics text; 0 if absent. */
function metricValue(text: string, pattern: RegExp): number {
  const m = pattern.exec(text);
  return m === null ? 0 : Number(m[1]);
}

async function setPolicy(address: string, set: Record<string, string>): Promise<void> {
  await json(address, "PUT", "/v1/policy", { set });
}

describe("holding a guest at a safe point (the scheduler's time slices)", () => {
  it("stops its computing while held, counts the held time, and still suspends", async () => {
    const out: Buffer[] = [];
    const sink = { kind: "callback", write: (b: Uint8Array) => void out.push(Buffer.from(b)) } as const;
    const proc = await GuestProcess.start({ wasm: fs.readFileSync(COMPUTE), module_path: "compute.wasm", args: ["compute.wasm", "10000"], env: [], preopens: [] }, { stdout: sink, stderr: sink });
    try {
      await until("it computes", () => proc.usage().busy_ms > 50);
      proc.hold(true);
      const held = await until("it is held", () => {
        const u = proc.usage();
        return u.blocked && u.paused_ms > 0 ? u : undefined;
      });
      await until("held time to grow", () => proc.usage().paused_ms > held.paused_ms + 60);
      assert.ok(proc.usage().busy_ms - held.busy_ms < 5, "no computing while held");
      proc.hold(false);
      await until("it computes again", () => proc.usage().busy_ms > held.busy_ms + 50);
      proc.hold(true);
      await until("it is held again", () => proc.usage().blocked);
      const suspension = await proc.suspend();
      assert.ok(suspension !== null, "a held guest answers a suspend");
      await proc.resume();
      // Resumed in place, it is still held until told otherwise.
      const again = await until("it is held after the resume", () => {
        const u = proc.usage();
        return u.blocked ? u : undefined;
      });
      proc.hold(false);
      await until("it computes once let go", () => proc.usage().busy_ms > again.busy_ms + 50);
    } finally {
      await proc.terminate();
    }
  });
});

describe("load: skewed batch and no ping-pong on 2 nodes of one core", () => {
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  let n1: NodeProc;
  let n2: NodeProc;
  let sha: string;
  before(async () => {
    cluster = await startCluster(["n1", "n2"], undefined, () => ["--allow-dir", os.tmpdir(), "--cpus", "1", "--balance", "on"]);
    [n1, n2] = cluster.nodes as [NodeProc, NodeProc];
    sha = await upload(n1.address, COMPUTE);
    await upload(n2.address, COMPUTE);
  });
  after(() => cluster.stop());

  it("spreads 8 jobs started on n1 over both nodes, with the outputs of an undisturbed run", async (t) => {
    // One job alone: the reference output and one job's time, in this run.
    const t0 = Date.now();
    const alone = await run(n2.address, sha, [JOB_ROUNDS], { node: "n2" });
    await waitAll(n1.address, [alone]);
    const one_ms = Date.now() - t0;
    const reference = await outputOf(n1.address, alone);
    assert.equal((await proc(n1.address, alone)).moves, 0, "a lone job on an idle cluster stays where it started");

    const start = Date.now();
    // Started all at once: the skew is there from the first round.
    const pids = await Promise.all(Array.from({ length: 8 }, () => run(n1.address, sha, [JOB_ROUNDS], { node: "n1" })));
    await waitAll(n1.address, pids);
    const makespan_ms = Date.now() - start;
    const procs = await Promise.all(pids.map((pid) => proc(n1.address, pid)));
    for (const [i, p] of procs.entries()) {
      assert.deepEqual(p.exit, { kind: "exit", code: 0 }, `${p.pid} exited cleanly`);
      const out = await outputOf(n1.address, pids[i] as string);
      assert.ok(out.stdout.equals(reference.stdout), `${p.pid} printed what the undisturbed run printed`);
      assert.ok(out.stderr.equals(reference.stderr), `${p.pid}'s stderr is the undisturbed run's`);
    }
    const moved = procs.filter((p) => p.moves > 0);
    assert.ok(moved.length >= 2, `jobs moved to n2 (${moved.length} did)`);
    // At the tail a job may come back to n1 once n1 ran out of work: that is balance too.
    assert.ok(procs.filter((p) => p.node === "n2").length >= 2, "jobs ended on n2");
    const reasons = (await events(n1.address)).filter((e) => e["type"] === "load.move");
    assert.ok(reasons.length >= moved.length && reasons.every((e) => e["reason"] === "balance" && typeof e["detail"] === "string" && e["strategy"] === "stop-copy"), "each move is an event with its reason and strategy");
    // Every decision counted in the metrics by its reason, every move by its strategy and end.
    let decided = 0;
    let succeeded = 0;
    for (const n of [n1, n2]) {
      const text = (await request(n.address, "GET", "/metrics")).body.toString();
      decided += metricValue(text, /^ferry_balancer_decisions_total\{[^}]*reason="balance"[^}]*\} (\S+)$/m);
      succeeded += metricValue(text, /^ferry_balancer_moves_total\{[^}]*strategy="stop-copy",result="succeeded"[^}]*\} (\S+)$/m);
      assert.equal(metricValue(text, /^ferry_node_cpus\{[^}]*\} (\S+)$/m), 1, "capacity is --cpus");
    }
    const all = await events(n1.address);
    const made = all.filter((e) => e["type"] === "load.move").length;
    const refused = all.filter((e) => e["type"] === "load.move_refused").length;
    // A decision is a move, or one its target refused (then perhaps decided again elsewhere).
    assert.ok(decided >= made && decided <= made + refused, `decisions counted by reason: ${decided} for ${made} moves and ${refused} refusals`);
    assert.ok(succeeded >= moved.length, `moves counted by strategy (${succeeded} of ${moved.length})`);
    // No timed assertion: on a shared machine one job alone and two at once get different shares of it
    // (the ratio ranged 1.3-1.7 here); `node dist/bench/run.js --only=balance` measures it.
    const ideal_ms = 4 * one_ms;
    t.diagnostic(`one job ${one_ms} ms; 8 jobs ${makespan_ms} ms = ${(makespan_ms / ideal_ms).toFixed(2)} x ideal; ${moved.length} moved`);
  });

  it("moves nothing when the balancer is off, and nothing when the load is even", async () => {
    await setPolicy(n1.address, { balance: "off" });
    const off: string[] = [];
    for (let i = 0; i < 3; i += 1) off.push(await run(n1.address, sha, ["10"], { node: "n1" }));
    await waitAll(n1.address, off);
    for (const pid of off) assert.equal((await proc(n1.address, pid)).moves, 0, `${pid} stayed on n1 with the balancer off`);
    await setPolicy(n1.address, { balance: "on" });
    // One job per node: balanced, so the rounds during their whole run move nothing.
    const even = [await run(n1.address, sha, [JOB_ROUNDS], { node: "n1" }), await run(n1.address, sha, [JOB_ROUNDS], { node: "n2" })];
    await waitAll(n1.address, even);
    for (const pid of even) assert.equal((await proc(n1.address, pid)).moves, 0, `${pid} was not moved`);
    const decided = (await events(n1.address)).filter((e) => e["type"] === "load.move" && even.includes(String(e["pid"])));
    assert.deepEqual(decided, [], "no automatic move decided under an even load");
  });
});

describe("load: each large process's dirty rate, measured on its runner", () => {
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  let n1: NodeProc;
  before(async () => {
    cluster = await startCluster(["n1"], undefined, () => ["--allow-dir", os.tmpdir(), "--balance", "on"]);
    [n1] = cluster.nodes as [NodeProc];
  });
  after(() => cluster.stop());

  it("finds a writer's rate, an idle process's near zero, and leaves small processes unmeasured", async (t) => {
    const sha = await upload(n1.address, MEMHOG);
    const MIB = 1024 * 1024;
    // memhog SIZE_MIB WRITE_MIB_PER_S SECONDS: 48 MiB rewritten at 8 MiB/s, the same left idle, and 4 MiB written fast.
    const writer = await run(n1.address, sha, ["48", "8", "600"]);
    const idle = await run(n1.address, sha, ["48", "0", "600"]);
    const small = await run(n1.address, sha, ["4", "64", "600"]);
    try {
      const rates = await until(
        "rates of both large processes, the writer's after a window that saw it write",
        async () => {
          const p = await json<{ dirty_rates_measured: boolean; dirty_bytes_per_s: Record<string, number> }>(n1.address, "GET", "/v1/policy");
          assert.ok(p.dirty_rates_measured, "this machine has the kernel tracker: rates are measured");
          const r = p.dirty_bytes_per_s;
          // A process's first windows may still see it touch its memory (memhog writes all of it once at start, 48 MiB at
          // once): the smoothed rates settle on what later windows see, the writer's 8 MiB/s and the idle one's nothing.
          const settled = (r[writer] ?? 0) > 2 * MIB && (r[writer] ?? Infinity) < 24 * MIB && (r[idle] ?? Infinity) < 0.5 * MIB;
          return settled ? r : undefined;
        },
        60_000,
      );
      t.diagnostic(`writer ${((rates[writer] as number) / MIB).toFixed(2)} MiB/s (writes 8), idle ${((rates[idle] as number) / MIB).toFixed(3)} MiB/s`);
      // Loose bounds: a window sees what the guest wrote while the machine let it run.
      assert.ok((rates[writer] as number) > 2 * MIB && (rates[writer] as number) < 24 * MIB, `writer: ${rates[writer]} B/s`);
      assert.ok((rates[idle] as number) < 0.5 * MIB, `idle: ${rates[idle]} B/s`);
      assert.equal(rates[small], undefined, "a process under the stop-and-copy limit is not measured");
      for (const pid of [writer, idle, small]) assert.equal((await proc(n1.address, pid)).state, "running", `${pid} runs on while measured`);
    } finally {
      for (const pid of [writer, idle, small]) await json(n1.address, "DELETE", `/v1/processes/${pid}`);
    }
  });
});

describe("load: co-location, drain and requirements", () => {
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  let n1: NodeProc;
  let n2: NodeProc;
  let n3: NodeProc;
  before(async () => {
    cluster = await startCluster(["n1", "n2", "n3"], undefined, (name) => ["--allow-dir", os.tmpdir(), "--cpus", "2", "--balance", "on", ...(name === "n3" ? ["--label", "gpu=yes"] : [])]);
    [n1, n2, n3] = cluster.nodes as [NodeProc, NodeProc, NodeProc];
    for (const n of cluster.nodes) await upload(n.address, PINGPONG);
    for (const n of cluster.nodes) await upload(n.address, SLEEPER);
  });
  after(() => cluster.stop());

  it("brings a chatty pair started on two nodes onto one", async () => {
    // Any steady talk counts here: the point is the move, not the threshold.
    await setPolicy(n1.address, { colocate_bytes_per_s_min: "1024" });
    const pp = await upload(n1.address, PINGPONG);
    const pong = await run(n1.address, pp, ["pong", "100000000"], { node: "n1" });
    const ping = await run(n1.address, pp, ["ping", pong, "100000000"], { node: "n2" });
    const together = await until(
      "the pair to run on one node",
      async () => {
        const [a, b] = await Promise.all([proc(n1.address, pong), proc(n1.address, ping)]);
        return a.node === b.node && a.state === "running" && b.state === "running" ? a.node : undefined;
      },
      30_000,
    );
    assert.equal(together, "n1", "the side with the larger pid went to its peer");
    const moves = (await events(n1.address)).filter((e) => e["type"] === "load.move" && e["pid"] === ping);
    assert.ok(moves.some((e) => e["reason"] === "colocate"), "the move says it was for co-location");
    await json(n1.address, "DELETE", `/v1/processes/${ping}`);
    await json(n1.address, "DELETE", `/v1/processes/${pong}`);
    await setPolicy(n1.address, { colocate_bytes_per_s_min: "65536" });
  });

  it("takes load windows only from nodes, each about its sender first, every figure checked", async () => {
    const load = (node: string, runnable: number): object => ({
      node,
      cpus: 1,
      speed: 1,
      processes: 0,
      movable: 0,
      runnable,
      cpu_used: 0,
      memory_used_bytes: 0,
      memory_free_bytes: 1e9,
      remote_bytes_per_s: 0,
      transfer_bytes_per_s: 1e8,
      labels: {},
      // Drained: n1 must never pick this made-up node as a target for the tests that follow.
      draining: true,
    });
    const probe = await nodeDialer();
    const ok = await request(n1.address, "POST", "/v1/internal/load", { window: [{ load: load("probe", 0), version: 1, age_ms: 0 }] }, probe);
    assert.equal(ok.status, 200, ok.body.toString());
    const answer = JSON.parse(ok.body.toString()) as { window: { load: { node: string } }[] };
    assert.equal(answer.window[0]?.load.node, "n1", "the answer is n1's window, its own entry first");
    const forged = await request(n1.address, "POST", "/v1/internal/load", { window: [{ load: load("n2", 99), version: 1e9, age_ms: 0 }] }, probe);
    assert.equal(forged.status, 403, "a node cannot speak first-hand for another");
    const nonsense = await request(n1.address, "POST", "/v1/internal/load", { window: [{ load: load("probe", -5), version: 2, age_ms: 0 }] }, probe);
    assert.equal(nonsense.status, 400);
    const client = await request(n1.address, "POST", "/v1/internal/load", { window: [] });
    assert.equal(client.status, 403, "clients may not gossip");
  });

  it("places by requirement, refuses what breaks one, and drains a node", async () => {
    const sha = await upload(n1.address, SLEEPER);
    const gpu = await run(n1.address, sha, IDLE_ARGS, { requires: { gpu: "yes" } });
    assert.equal((await proc(n1.address, gpu)).node, "n3", "placed on the only node labelled gpu=yes");
    const refused = await request(n1.address, "POST", "/v1/processes", { module_sha256: sha, args: IDLE_ARGS, node: "n1", requires: { gpu: "yes" } });
    assert.equal(refused.status, 409);
    assert.match(refused.body.toString(), /ERR_REQUIREMENT/);
    const migrate = await request(n1.address, "POST", `/v1/processes/${gpu}/migrate`, { to: "n2" });
    assert.equal(migrate.status, 409, "a manual move to a node without the label is refused");
    assert.match(migrate.body.toString(), /ERR_REQUIREMENT/);

    // Two plain jobs on n3, then drain it: they leave, the gpu job cannot and stays.
    const plain = [await run(n1.address, sha, IDLE_ARGS, { node: "n3" }), await run(n1.address, sha, IDLE_ARGS, { node: "n3" })];
    const pinned = await run(n1.address, sha, IDLE_ARGS, { node: "n3", pinned: true });
    const drained = await json<{ draining: boolean }>(n1.address, "POST", "/v1/nodes/n3/drain");
    assert.equal(drained.draining, true);
    await until(
      "the plain jobs to leave n3",
      async () => (await Promise.all(plain.map((pid) => proc(n1.address, pid)))).every((p) => p.node !== "n3" && p.state === "running"),
      30_000,
    );
    const landed = await request(n1.address, "POST", "/v1/processes", { module_sha256: sha, args: IDLE_ARGS, node: "n3" });
    assert.equal(landed.status, 409, "nothing new starts on a drained node");
    assert.match(landed.body.toString(), /ERR_NODE_DRAINING/);
    const placed = await run(n1.address, sha, IDLE_ARGS);
    assert.notEqual((await proc(n1.address, placed)).node, "n3", "placement avoids the drained node");
    // The gpu job had nowhere to go: it never ran without its label. The pinned one is never moved.
    for (const pid of [gpu, pinned]) {
      const g = await proc(n1.address, pid);
      assert.deepEqual([g.node, g.moves], ["n3", 0], `${pid} stayed on n3`);
    }
    // Other nodes hear of it with n3's next load window: waited for, not read at once (a loaded machine's window can come after the moves).
    await until("n2 to hear of n3's drain", async () => {
      const views = await json<{ name: string; load: { draining: boolean } | null }[]>(n2.address, "GET", "/v1/nodes");
      return views.find((n) => n.name === "n3")?.load?.draining === true;
    }, 30_000);

    await json(n3.address, "POST", "/v1/nodes/n3/undrain");
    for (const pid of [gpu, pinned, placed, ...plain]) await json(n1.address, "DELETE", `/v1/processes/${pid}`);
  });
});

describe("load: a target checks its load when a move comes", () => {
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  let n1: NodeProc;
  let n2: NodeProc;
  let n3: NodeProc;
  before(async () => {
    cluster = await startCluster(["n1", "n2", "n3"], undefined, (name) => ["--allow-dir", os.tmpdir(), "--cpus", name === "n1" ? "1" : "2", "--balance", "on"]);
    [n1, n2, n3] = cluster.nodes as [NodeProc, NodeProc, NodeProc];
  });
  after(() => cluster.stop());

  it("answers a node's offer on its load now, counting what it accepted, and only to nodes", async () => {
    const probe = await nodeDialer();
    let asked = 0;
    const ask = (source_runnable: number) =>
      request(n2.address, "POST", "/v1/internal/load/accept", { pid: `n9-${(asked += 1)}`, reason: "balance", cpu_share: 1, memory_bytes: 1 << 20, requires: {}, source: { cpus: 2, speed: 1, runnable: source_runnable } }, probe);
    // n2 has 2 idle cores; the source, 2 cores with 1 more process's worth of work: a process runs at full speed there, so n2 takes it while it has a core free.
    const first = await ask(1);
    assert.equal(first.status, 200, first.body.toString());
    const a = JSON.parse(first.body.toString()) as { accepted: boolean; window: { load: { node: string } }[] };
    assert.equal(a.accepted, true, "1 on 2 cores here vs 2 on 2 there: taken");
    assert.equal(a.window[0]?.load.node, "n2", "the answer carries the target's own entry first");
    const second = JSON.parse((await ask(1)).body.toString()) as { accepted: boolean; detail?: string };
    assert.equal(second.accepted, true, "2 on 2 cores here (counting the first): no slower");
    // The first accepted move arrives: its standby is here (an OFFER answered READY). It counts once, as the standby, not also as accepted.
    const sha = await upload(n2.address, COMPUTE);
    const standby = await connectData(probe, n2.address);
    try {
      await standby.send(Msg.offer, Buffer.from(JSON.stringify(testOffer(n1.address, { pid: "n9-1", module_sha256: sha, module_name: "compute.wasm", memory_bytes: 1 << 20, memory_max_bytes: 16 << 20 }))));
      const ready = await standby.next({ timeout_ms: 30_000 });
      assert.equal(ready.type, Msg.ready, Buffer.from(ready.payload).toString());
      const third = JSON.parse((await ask(1)).body.toString()) as { accepted: boolean; detail?: string };
      assert.equal(third.accepted, false, "3 on 2 cores here, counting the two accepted (one now a standby), vs 2 on 2 there: refused");
      assert.match(third.detail ?? "", /^slowdown 1\.50 on n2 now with it, over 1\.00 at the source$/);
    } finally {
      standby.destroy();
    }
    assert.ok((await events(n2.address)).some((e) => e["type"] === "load.refused" && e["pid"] === "n9-3" && e["from"] === "probe"), "the refusal is an event, naming the node that asked");
    // A client is not a node.
    const client = await request(n2.address, "POST", "/v1/internal/load/accept", { pid: "n9-1", reason: "balance", cpu_share: 1, memory_bytes: 0, requires: {}, source: { cpus: 1, speed: 1, runnable: 9 } });
    assert.equal(client.status, 403);
  });

  it("a refused move is tried elsewhere: jobs leave the hot node for the target that takes them", async () => {
    // n2 keeps a petabyte free for itself: it refuses every move, though n1's view of it (by n1's own floor) says it has room.
    await json(n2.address, "PUT", "/v1/policy", { set: { memory_free_min_bytes: String(2 ** 50) }, local: true });
    const sha = await upload(n1.address, COMPUTE);
    await upload(n3.address, COMPUTE);
    // n3 is drained until n2 has refused, so that n2 is asked first whatever the balancer's choice among equals.
    await json(n1.address, "POST", "/v1/nodes/n3/drain");
    const pids = await Promise.all(Array.from({ length: 4 }, () => run(n1.address, sha, [JOB_ROUNDS], { node: "n1" })));
    try {
      await until("n2 to refuse a move", async () => ((await events(n1.address)).some((r) => r["type"] === "load.move_refused" && r["to"] === "n2") ? true : undefined), 60_000);
      await json(n1.address, "POST", "/v1/nodes/n3/undrain");
      const refusal = await until(
        "the node that asked n2 to send a process to n3 instead",
        async () => {
          const all = await events(n1.address);
          // The same node publishes both, so its sequence numbers order them.
          return all.find((r) => r["type"] === "load.move_refused" && r["to"] === "n2" && all.some((e) => e["type"] === "load.move" && e["node"] === r["node"] && e["to"] === "n3" && (e["seq"] as number) > (r["seq"] as number)));
        },
        60_000,
      );
      assert.match(String(refusal["detail"]), /under its floor/, "refused for the memory it keeps");
      await waitAll(n1.address, pids);
      for (const pid of pids) {
        const p = await proc(n1.address, pid);
        assert.deepEqual(p.exit, { kind: "exit", code: 0 });
        assert.notEqual(p.node, "n2", `${pid} never landed on the node that refused`);
      }
      const text = (await request(String(refusal["node"]) === "n1" ? n1.address : n3.address, "GET", "/metrics")).body.toString();
      assert.ok(metricValue(text, /^ferry_balancer_moves_total\{[^}]*result="refused"[^}]*\} (\S+)$/m) >= 1, "refusals counted where they were asked");
    } finally {
      await json(n1.address, "POST", "/v1/nodes/n3/undrain");
      await json(n2.address, "PUT", "/v1/policy", { set: { memory_free_min_bytes: String(256 * 1024 * 1024) }, local: true });
    }
  });
});

describe("load: a drain outlives a restart", () => {
  it("a drained node that restarts on its data comes back drained, and undrained after an undrain", async () => {
    const [port] = (await freePorts(1)) as [number];
    const data = tempDir("drain-restart");
    const args = ["--allow-dir", os.tmpdir(), "--balance", "on"];
    let node = await startNode("n1", port, [], data, args);
    try {
      const sha = await upload(node.address, SLEEPER);
      assert.equal((await json<{ draining: boolean }>(node.address, "POST", "/v1/nodes/n1/drain")).draining, true);
      await stopNode(node);
      node = await startNode("n1", port, [], data, args);
      assert.equal((await json<{ draining: boolean }>(node.address, "GET", "/v1/policy")).draining, true, "still drained after the restart");
      const refused = await request(node.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "s.wasm", args: IDLE_ARGS, node: "n1" });
      assert.equal(refused.status, 409, "nothing new starts on it");
      assert.match(refused.body.toString(), /ERR_NODE_DRAINING/);
      await json(node.address, "POST", "/v1/nodes/n1/undrain");
      await stopNode(node);
      node = await startNode("n1", port, [], data, args);
      assert.equal((await json<{ draining: boolean }>(node.address, "GET", "/v1/policy")).draining, false, "undrained after the restart");
      const pid = await run(node.address, sha, IDLE_ARGS, { node: "n1" });
      await json(node.address, "DELETE", `/v1/processes/${pid}`);
    } finally {
      await stopNode(node);
      fs.rmSync(data, { recursive: true, force: true });
    }
  });
});

describe("ferry up with the load module's flags, and its commands", () => {
  it("passes --cpus and --label to every node; ferry nodes, policy, drain and run --require/--pin work on it", async () => {
    const home = tempDir("load-up");
    const port = await consecutiveFreePorts(2);
    const cluster = `127.0.0.1:${port}`;
    const env = { FERRY_HOME: home };
    const up: ChildProcess = spawn(process.execPath, [FERRY, "up", "--nodes", "2", "--port", String(port), "--cpus", "1", "--label", "zone=a", "--allow-dir", os.tmpdir()], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...env },
    });
    let out = "";
    up.stdout?.on("data", (c: Buffer) => (out += c.toString()));
    up.stderr?.on("data", (c: Buffer) => (out += c.toString()));
    const exited = new Promise<void>((r) => up.once("exit", () => r()));
    const cli = async (...args: string[]): Promise<string> => {
      const r = await ferry([args[0] as string, "--cluster", cluster, ...args.slice(1)], { env, timeout_ms: 30_000 });
      assert.equal(r.status, 0, `ferry ${args.join(" ")}: ${r.stderr.toString()}`);
      return r.stdout.toString();
    };
    try {
      await until("ferry up to be up", () => (out.includes("cluster of 2 up") ? true : up.exitCode !== null ? Promise.reject(new Error(`ferry up ended: ${out}`)) : undefined), 60_000);
      // Each node hears the other's load: CPUS, LOAD, AGE and LABELS for both rows.
      const table = await until("both nodes' load in ferry nodes", async () => {
        const t = await cli("nodes");
        return /^n1 .* 1 +[\d.]+ +[\d.]+ +[\d.]+s +zone=a/m.test(t) && /^n2 .* 1 +[\d.]+ +[\d.]+ +[\d.]+s +zone=a/m.test(t) ? t : undefined;
      });
      assert.match(table, /CPUS +LOAD +CPU +AGE +LABELS/);
      const policy = JSON.parse(await cli("policy", "--json")) as { balance: boolean; cpus: number; labels: Record<string, string>; params: { hysteresis: number } };
      assert.deepEqual([policy.balance, policy.cpus, policy.labels], [true, 1, { zone: "a" }], "ferry up runs the balancer by default");
      assert.match(await cli("policy", "set", "hysteresis=0.4", "mode=pack"), /n1: changed\nn2: changed|n2: changed\nn1: changed/);
      const n2 = JSON.parse((await ferry(["policy", "--json", "--cluster", `127.0.0.1:${port + 1}`], { env })).stdout.toString()) as { params: { hysteresis: number; mode: string } };
      assert.deepEqual([n2.params.hysteresis, n2.params.mode], [0.4, "pack"], "the change reached every node");
      await until("pack to report both nodes idle", async () => {
        const p = JSON.parse(await cli("policy", "--json")) as { idle_nodes: string[] };
        return p.idle_nodes.join(",") === "n1,n2";
      });
      const bad = await ferry(["policy", "set", "hysteresis=-1", "--cluster", cluster], { env });
      assert.equal(bad.status, 125);
      assert.match(bad.stderr.toString(), /ERR_BAD_REQUEST/);
      await cli("policy", "set", "mode=balance");

      assert.match(await cli("drain", "n2"), /node n2 drained/);
      const pid = (await cli("run", "--require", "zone=a", "--pin", path.join(EXAMPLES, "c", "sleeper.wasm"), "1000", "600")).trim();
      const p = (JSON.parse(await cli("ps", "--json")) as (Proc & { requires: Record<string, string>; pinned: boolean })[]).find((x) => x.pid === pid) as Proc & { requires: Record<string, string>; pinned: boolean };
      assert.deepEqual([p.node, p.requires, p.pinned], ["n1", { zone: "a" }, true], "placed off the drained node, its constraints recorded");
      const nowhere = await ferry(["run", "--require", "zone=b", "--cluster", cluster, path.join(EXAMPLES, "c", "sleeper.wasm")], { env });
      assert.equal(nowhere.status, 125);
      assert.match(nowhere.stderr.toString(), /ERR_NO_PLACE/);
      assert.match(await cli("undrain", "n2"), /node n2 undrained/);
      await cli("kill", pid);
    } finally {
      up.kill("SIGINT");
      await exited;
      fs.rmSync(home, { recursive: true, force: true });
    }
  });
});
