/**
 * Failover (issue 11 items 5 and 6, docs/directory.md "Failover") with three
 * separate node daemons on 127.0.0.1 and a cluster directory — the embedded
 * one served as `ferry up` serves it, and a real etcd. `kill -9` of the node
 * running a checkpointed CPU-bound process: once the directory declares it
 * dead, the process resumes from its last checkpoint on the keeper, with the
 * same pid, by itself, and ends with the output of an undisturbed run (no
 * gap, no duplicate) and its exit status, which `wait` on any node returns.
 * The same when the killed node was also its home: the keeper becomes its
 * home. A ping-pong pair exchanging numbered messages through a failover of
 * the receiver, of the sender, and of the receiver's home: each message once, in order. Everything waits on observable
 * state; the time from the kill to the process running again is printed.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { openEmbeddedDirectory, type Directory, type MemoryDirectory } from "../src/directory/mod.js";
import { openDirectory, serveDirectory, type DirectoryServer } from "../src/node/mod.js";
import { ClusterTls, issue } from "../src/trust/mod.js";
import { EXAMPLES, tempDir, until } from "./_helpers.js";
import { crash, json, NODE_ARGS_DEFAULT, outputOf, request, runsOn, startCluster, startNode, testAuthority, upload, type NodeProc } from "./_cluster.js";
import { etcdMissing, startEtcd, type TestEtcd } from "./_etcd.js";
import { tapEvents } from "./_events.js";

const compute = path.join(EXAMPLES, "c", "compute.wasm");
const pingpong = path.join(EXAMPLES, "c", "pingpong.wasm");

/** Leases short enough that a death is declared soon after the kill, long enough that a node on a loaded machine keeps renewing its lease (a node wrongly declared dead loses its processes without checkpoints). */
const DEAD_AFTER_MS = 3000;
/** Checkpoints often enough that several are taken before the kill. */
const CHECKPOINT_EVERY_MS = 150;
/** The exit status the program ends with: the resumed copy must report it. */
const EXIT_CODE = 7;

interface Info {
  pid: string;
  node: string;
  home: string;
  moves: number;
  exit: { kind: string; code?: number; message?: string } | null;
}

interface Last {
  keeper: string;
  runner: string;
  seq: number;
  stdout_bytes: number;
}

type Cluster = Awaited<ReturnType<typeof startCluster>>;

function run(address: string, body: object): Promise<{ pid: string }> {
  return json<{ pid: string }>(address, "POST", "/v1/processes", body);
}

/**
 * Kills `node` (`kill -9`) the moment `runner` (by default `node` itself)
 * publishes that it took checkpoint `seq` (or a later one) of `pid`: the
 * keeper has just stored it, and the home has not recorded it yet. A
 * failover must not depend on when it dies.
 */
async function crashAfterCheckpoint(node: NodeProc, pid: string, seq: number, runner: NodeProc = node): Promise<number> {
  const tap = await tapEvents(runner.address, "/v1/events?local=1&follow=1");
  try {
    await tap.until((e, d) => e.event === "checkpoint.taken" && d["pid"] === pid && Number(d["checkpoint"]) >= seq);
    return await crash(node);
  } finally {
    tap.close();
  }
}

async function allAlive(nodes: NodeProc[]): Promise<void> {
  for (const n of nodes) {
    await until(`${n.name} to see all three alive`, async () => (await json<{ state: string | null }[]>(n.address, "GET", "/v1/nodes")).filter((r) => r.state === "alive").length === nodes.length);
  }
}

/** The program's output and status undisturbed, without checkpoints. */
async function undisturbed(address: string, sha: string, args: string[]): Promise<{ stdout: Buffer; stderr: Buffer }> {
  const calm = await run(address, { module_sha256: sha, module_name: "compute.wasm", args });
  assert.deepEqual((await json<{ status: unknown }>(address, "GET", `/v1/processes/${calm.pid}/wait`)).status, { kind: "exit", code: EXIT_CODE });
  return outputOf(address, calm.pid);
}

/**
 * n1 starts a checkpointed process (home n1) and moves it to n2; its
 * checkpoints are kept on n3. n2 is killed: the process must finish on n3,
 * by itself, as if nothing happened.
 */
async function runnerKilled(cluster: Cluster, directory: Directory, label: string): Promise<void> {
  const [n1, n2, n3] = cluster.nodes as [NodeProc, NodeProc, NodeProc];
  await allAlive(cluster.nodes);
  const sha = await upload(n1.address, compute);
  const args = ["60", String(EXIT_CODE)];
  const expected = await undisturbed(n1.address, sha, args);
  const { pid } = await run(n1.address, { module_sha256: sha, module_name: "compute.wasm", args, checkpoint_every_ms: CHECKPOINT_EVERY_MS });
  await json(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to: "n2", strategy: "stop-copy" });
  const last = await until("checkpoints taken on n2, recorded in the directory", async () => {
    const l = (await json<{ last: Last | null }>(n1.address, "GET", `/v1/processes/${pid}/checkpoints`)).last;
    const r = await directory.process(pid);
    return l !== null && l.runner === "n2" && l.seq >= 2 && l.stdout_bytes > 100 && r?.last_checkpoint?.moves === 1 ? l : undefined;
  });
  assert.equal(last.keeper, "n3");
  const killed_at = await crashAfterCheckpoint(n2, pid, last.seq + 1);
  const resumed = await until(
    "the process to run again on n3",
    async () => {
      const info = await json<Info>(n1.address, "GET", `/v1/processes/${pid}`);
      return info.node === "n3" || info.exit !== null ? info : undefined;
    },
    30_000,
  );
  const resumed_ms = Date.now() - killed_at;
  process.stdout.write(`# ${label}: kill -9 of the runner to the process running again: ${resumed_ms} ms (lease ${DEAD_AFTER_MS} ms)\n`);
  if (resumed.node === "n3") {
    // Where the restore's time went, at the home: failover's steps, then each step of the restore (published once the move is recorded).
    const tap = await tapEvents(n1.address, "/v1/events?local=1&follow=1");
    const restored = await tap.until((e, d) => e.event === "process.restored" && d["pid"] === pid);
    tap.close();
    const phases = restored["phases_ms"] as { before: Record<string, number> } & Record<string, number>;
    for (const k of ["records", "claim", "fence"]) assert.equal(typeof phases.before[k], "number", `failover's ${k} phase is reported`);
    for (const k of ["ask_keeper", "wait", "rebuild", "send", "record"]) assert.equal(typeof phases[k], "number", `the restore's ${k} phase is reported`);
    assert.equal(typeof restored["prepared_ahead"], "boolean", "whether the keeper prepared it ahead is reported");
    process.stdout.write(`# ${label}: restore phases (ms) ${JSON.stringify(phases, (_k, v: unknown) => (typeof v === "number" ? Math.round(v) : v))}, prepared ahead: ${String(restored["prepared_ahead"])}\n`);
  }
  assert.equal(resumed.pid, pid, "the same pid");
  assert.equal(resumed.moves, 2, "the restore is its next move");
  // Its end from every live node, with its status; the directory agrees.
  for (const n of [n3, n1]) {
    assert.deepEqual((await json<{ status: unknown }>(n.address, "GET", `/v1/processes/${pid}/wait`)).status, { kind: "exit", code: EXIT_CODE });
  }
  const record = await until("the directory to record its end", async () => {
    const r = await directory.process(pid);
    return r?.state === "exited" ? r : undefined;
  });
  assert.deepEqual([record.runner, record.moves, record.exit_code], ["n3", 2, EXIT_CODE]);
  const got = await outputOf(n3.address, pid);
  assert.equal(got.stdout.toString(), expected.stdout.toString(), "stdout: no gap, no duplicate");
  assert.equal(got.stderr.toString(), expected.stderr.toString(), "stderr: no gap, no duplicate");
  // ps from a live node lists it once, ended.
  const listed = (await json<Info[]>(n3.address, "GET", "/v1/processes")).filter((p) => p.pid === pid);
  assert.equal(listed.length, 1);
}

/**
 * n2 (killed before) starts again on its data directory; then n3 starts and
 * runs a checkpointed process (home n3) and is killed: the keeper of its
 * last checkpoint becomes its home and resumes it; `wait` and `logs` from
 * both live nodes give the output and status of an undisturbed run.
 */
async function homeKilled(cluster: Cluster, directory: Directory, args: readonly string[], label: string): Promise<void> {
  const [n1, old, n3] = cluster.nodes as [NodeProc, NodeProc, NodeProc];
  cluster.nodes[1] = await startNode("n2", Number(old.address.split(":")[1]), [n1.address, n3.address], path.join(cluster.dir, "n2"), args);
  await allAlive(cluster.nodes);
  const n2 = cluster.nodes[1] as NodeProc;
  const sha = await upload(n3.address, compute);
  const program = ["60", String(EXIT_CODE)];
  const expected = await undisturbed(n3.address, sha, program);
  // Pinned: what the home saved of it (its constraints too) goes with the home's roles.
  const { pid } = await run(n3.address, { module_sha256: sha, module_name: "compute.wasm", args: program, checkpoint_every_ms: CHECKPOINT_EVERY_MS, pinned: true });
  const { keeper, seq } = await until("checkpoints of it recorded in the directory", async () => {
    const r = await directory.process(pid);
    return r?.last_checkpoint !== null && r?.last_checkpoint !== undefined && r.last_checkpoint.seq >= 2 ? { keeper: r.last_checkpoint.node, seq: r.last_checkpoint.seq } : undefined;
  });
  const other = keeper === "n1" ? n2 : n1;
  // Killed the moment a checkpoint is stored, before the home has recorded it: its output is on the keeper already.
  const killed_at = await crashAfterCheckpoint(n3, pid, seq + 1);
  const moved = await until(
    "the directory to name its new home",
    async () => {
      const r = await directory.process(pid);
      return r !== null && (r.home !== "n3" || r.state !== "running") ? r : undefined;
    },
    30_000,
  );
  process.stdout.write(`# ${label}: kill -9 of the home and runner to the directory naming its keeper as its new home: ${Date.now() - killed_at} ms\n`);
  assert.deepEqual([moved.home, moved.runner, moved.state], [keeper, keeper, "running"], moved.reason ?? "");
  for (const n of [other, n1, n2]) {
    assert.deepEqual((await json<{ status: unknown }>(n.address, "GET", `/v1/processes/${pid}/wait`)).status, { kind: "exit", code: EXIT_CODE }, `wait from ${n.name}`);
  }
  const info = await json<Info & { pinned: boolean }>(other.address, "GET", `/v1/processes/${pid}`);
  assert.deepEqual([info.pid, info.home, info.node, info.pinned], [pid, keeper, keeper, true]);
  const got = await outputOf(other.address, pid);
  assert.equal(got.stdout.toString(), expected.stdout.toString(), "stdout: no gap, no duplicate");
  assert.equal(got.stderr.toString(), expected.stderr.toString(), "stderr: no gap, no duplicate");
  assert.equal((await directory.process(pid))?.state, "exited");
}

/**
 * A ping-pong pair exchanging numbered messages (examples/c/pingpong.c: each
 * side exits 1 at the first gap, repeat or disorder). Nodes killed before
 * start again. `side` (home n1, checkpointed, kept on n3) runs on n2; the
 * other runs on n1. n2 is killed: `side` resumes from its checkpoint on n3.
 * pong restored: ping sends again what pong took since that checkpoint.
 * ping restored: it sends again what it sent since (the same numbers: it is
 * deterministic), and pong skips what it has. Both end as an undisturbed
 * pair does.
 */
async function linkPair(cluster: Cluster, args: readonly string[], side: "ping" | "pong"): Promise<void> {
  for (let i = 0; i < 3; i += 1) await revive(cluster, i, args);
  const [n1, n2] = cluster.nodes as [NodeProc, NodeProc, NodeProc];
  await allAlive(cluster.nodes);
  const sha = await upload(n1.address, pingpong);
  const start = async (program: string[], node: string, checkpoint_every_ms?: number): Promise<string> =>
    (await run(n1.address, { module_sha256: sha, module_name: "pingpong.wasm", args: program, node, ...(checkpoint_every_ms !== undefined ? { checkpoint_every_ms } : {}) })).pid;
  const toN2 = (pid: string): Promise<{ status: number; body: Buffer }> => request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to: "n2", strategy: "stop-copy" });
  // Enough to outlast the failover, few enough to end soon on a loaded machine. Ping moves to n2 while it sends:
  // on a quick machine the pair can end first (ERR_PROCESS_ENDED), and it starts again with four times as many.
  let N = "20000";
  let pong = "";
  let ping = "";
  for (;;) {
    pong = await start(["pong", N], "n1", side === "pong" ? CHECKPOINT_EVERY_MS : undefined);
    if (side === "pong") assert.equal((await toN2(pong)).status, 200);
    ping = await start(["ping", pong, N, "32"], "n1", side === "ping" ? CHECKPOINT_EVERY_MS : undefined);
    if (side === "pong") break;
    const moved = await toN2(ping);
    if (moved.status === 200) break;
    assert.match(moved.body.toString(), /ERR_PROCESS_ENDED/, `the move of ${ping}: ${moved.status} ${moved.body.toString()}`);
    assert.ok(Number(N) < 1_000_000, "the pair keeps ending before its move");
    await pairEnd(n1.address, pong);
    N = String(Number(N) * 4);
  }
  const restored = side === "pong" ? pong : ping;
  const other = side === "pong" ? ping : pong;
  await until(`checkpoints of ${side} taken on n2 while messages flow`, async () => {
    const l = (await json<{ last: Last | null }>(n1.address, "GET", `/v1/processes/${restored}/checkpoints`)).last;
    return l !== null && l.runner === "n2" && l.seq >= 2;
  });
  await crash(n2);
  assert.equal((await json<Info>(n1.address, "GET", `/v1/processes/${other}`)).exit, null, "the pair ended before the failover: make N larger");
  const finish = async (pid: string): Promise<string> => {
    const { status } = await pairEnd(n1.address, pid);
    const out = await outputOf(n1.address, pid);
    assert.deepEqual(status, { kind: "exit", code: 0 }, `${pid}: ${out.stderr.toString()}`);
    return out.stdout.toString();
  };
  const [a, b] = [await finish(ping), await finish(pong)];
  assert.equal((await json<Info>(n1.address, "GET", `/v1/processes/${restored}`)).node, "n3", `${side} finished where it was restored`);
  const sum = new RegExp(`ping done n=${N} checksum=([0-9a-f]{16})`).exec(a)?.[1];
  assert.ok(sum !== undefined, a);
  assert.match(b, new RegExp(`pong done n=${N} checksum=${sum}`));
  // An undisturbed pair says the same.
  const calm_pong = await start(["pong", N], "n1");
  const calm_ping = await start(["ping", calm_pong, N, "32"], "n1");
  assert.equal(await finish(calm_ping), a);
  assert.equal(await finish(calm_pong), b);
}

/**
 * The same pair when the receiver's home dies with it: pong (home n1,
 * checkpointed) runs on n1, ping (home n2) runs on n2. n1 is killed the
 * moment a checkpoint of pong is stored: the keeper of its checkpoints
 * becomes its home and resumes it, and ping's deliveries, which went through
 * n1, must find it there (the directory names the new home). Both end as an
 * undisturbed pair does: every number once, in order.
 */
async function linkPairHomeKilled(cluster: Cluster, directory: Directory, args: readonly string[]): Promise<void> {
  for (let i = 0; i < 3; i += 1) await revive(cluster, i, args);
  const [n1, n2] = cluster.nodes as [NodeProc, NodeProc, NodeProc];
  await allAlive(cluster.nodes);
  const sha = await upload(n1.address, pingpong);
  await upload(n2.address, pingpong);
  const N = "20000";
  const start = async (at: NodeProc, program: string[], checkpoint_every_ms?: number): Promise<string> =>
    (await run(at.address, { module_sha256: sha, module_name: "pingpong.wasm", args: program, node: at.name, ...(checkpoint_every_ms !== undefined ? { checkpoint_every_ms } : {}) })).pid;
  const pong = await start(n1, ["pong", N], CHECKPOINT_EVERY_MS);
  const ping = await start(n2, ["ping", pong, N, "32"]);
  const seq = await until("checkpoints of pong recorded in the directory while messages flow", async () => {
    const r = await directory.process(pong);
    return r?.last_checkpoint !== null && r?.last_checkpoint !== undefined && r.last_checkpoint.seq >= 2 ? r.last_checkpoint.seq : undefined;
  });
  const keeper = (await directory.process(pong))?.last_checkpoint?.node;
  await crashAfterCheckpoint(n1, pong, seq + 1);
  assert.equal((await json<Info>(n2.address, "GET", `/v1/processes/${ping}`)).exit, null, "the pair ended before the failover: make N larger");
  const finish = async (pid: string): Promise<string> => {
    const { status } = await pairEnd(n2.address, pid);
    const out = await outputOf(n2.address, pid);
    assert.deepEqual(status, { kind: "exit", code: 0 }, `${pid}: ${out.stderr.toString()}`);
    return out.stdout.toString();
  };
  const [a, b] = [await finish(ping), await finish(pong)];
  const info = await json<Info>(n2.address, "GET", `/v1/processes/${pong}`);
  assert.deepEqual([info.home, info.node], [keeper, keeper], "pong's keeper became its home and ran it");
  const sum = new RegExp(`ping done n=${N} checksum=([0-9a-f]{16})`).exec(a)?.[1];
  assert.ok(sum !== undefined, a);
  assert.match(b, new RegExp(`pong done n=${N} checksum=${sum}`));
  const calm_pong = await start(n2, ["pong", N]);
  const calm_ping = await start(n2, ["ping", calm_pong, N, "32"]);
  assert.equal(await finish(calm_ping), a);
  assert.equal(await finish(calm_pong), b);
}

/** A pair's side's end, from `address`; a pair that stands still fails the test with what each side holds, rather than hanging it. */
async function pairEnd(address: string, pid: string): Promise<{ status: unknown }> {
  let timer: NodeJS.Timeout | undefined;
  const stuck = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      void json(address, "GET", "/v1/links?inspect=1").then(
        (links) => reject(new Error(`${pid} did not end within ${PAIR_END_MS} ms; links: ${JSON.stringify(links)}`)),
        (err: unknown) => reject(new Error(`${pid} did not end within ${PAIR_END_MS} ms (${String(err)})`)),
      );
    }, PAIR_END_MS);
  });
  try {
    return await Promise.race([json<{ status: unknown }>(address, "GET", `/v1/processes/${pid}/wait`), stuck]);
  } finally {
    clearTimeout(timer);
  }
}

/** Far longer than a pair takes on a loaded machine (tens of seconds), far shorter than the suite's bound. */
const PAIR_END_MS = 240_000;

/** Starts node `i` of the cluster again on its data directory if it is dead. */
async function revive(cluster: Cluster, i: number, args: readonly string[]): Promise<NodeProc> {
  const old = cluster.nodes[i] as NodeProc;
  if (old.child.exitCode === null && old.child.signalCode === null) return old;
  const peers = cluster.nodes.filter((_, j) => j !== i).map((n) => n.address);
  cluster.nodes[i] = await startNode(old.name, Number(old.address.split(":")[1]), peers, path.join(cluster.dir, old.name), args);
  return cluster.nodes[i] as NodeProc;
}

/**
 * Only the home dies: n1 starts a checkpointed process (home n1), moves it
 * to n2 (runner); its checkpoints go to n3. n1 is killed the moment a
 * checkpoint is stored: n3, the keeper, becomes its home, n2 drops its copy,
 * and n3 resumes it from the checkpoint; `ps`, `wait` and `logs` from both
 * live nodes give the output and status of an undisturbed run.
 */
async function homeOnlyKilled(cluster: Cluster, directory: Directory, args: readonly string[]): Promise<void> {
  await revive(cluster, 0, args);
  await revive(cluster, 1, args);
  await revive(cluster, 2, args);
  const [n1, n2, n3] = cluster.nodes as [NodeProc, NodeProc, NodeProc];
  await allAlive(cluster.nodes);
  const sha = await upload(n1.address, compute);
  const program = ["60", String(EXIT_CODE)];
  const expected = await undisturbed(n1.address, sha, program);
  const { pid } = await run(n1.address, { module_sha256: sha, module_name: "compute.wasm", args: program, checkpoint_every_ms: CHECKPOINT_EVERY_MS, node: "n1" });
  await json(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to: "n2", strategy: "stop-copy" });
  const seq = await until("checkpoints taken on n2, kept on n3, recorded in the directory", async () => {
    const r = await directory.process(pid);
    return r?.runner === "n2" && r.last_checkpoint !== null && r.last_checkpoint.moves === 1 && r.last_checkpoint.seq >= 2 ? r.last_checkpoint.seq : undefined;
  });
  assert.equal((await directory.process(pid))?.last_checkpoint?.node, "n3");
  await crashAfterCheckpoint(n1, pid, seq + 1, n2);
  const moved = await until(
    "the directory to name n3 its home",
    async () => {
      const r = await directory.process(pid);
      return r !== null && (r.home !== "n1" || r.state !== "running") ? r : undefined;
    },
    30_000,
  );
  assert.deepEqual([moved.home, moved.runner, moved.state], ["n3", "n3", "running"], moved.reason ?? "");
  await until("n2 to drop its copy", async () => ((await runsOn(n2.address, pid)) ? undefined : true));
  for (const n of [n2, n3]) {
    assert.deepEqual((await json<{ status: unknown }>(n.address, "GET", `/v1/processes/${pid}/wait`)).status, { kind: "exit", code: EXIT_CODE }, `wait from ${n.name}`);
    const got = await outputOf(n.address, pid);
    assert.equal(got.stdout.toString(), expected.stdout.toString(), `stdout from ${n.name}: no gap, no duplicate`);
    assert.equal(got.stderr.toString(), expected.stderr.toString(), `stderr from ${n.name}: no gap, no duplicate`);
    const listed = (await json<Info[]>(n.address, "GET", "/v1/processes")).filter((p) => p.pid === pid);
    assert.deepEqual(listed.map((p) => [p.home, p.node]), [["n3", "n3"]], `ps from ${n.name}`);
  }
}

/**
 * Fencing: the runner is cut off, not dead. n3 starts a checkpointed
 * process (home n3) and moves it to n2; its checkpoints go to n1. n2 is
 * stopped (SIGSTOP) the moment a checkpoint is stored: its lease runs out,
 * n3 resumes the process on n1. Then n2 goes on (SIGCONT): it must drop its
 * copy, and the output must be that of an undisturbed run, nothing twice.
 */
async function runnerCutOff(cluster: Cluster, directory: Directory, args: readonly string[]): Promise<void> {
  for (let i = 0; i < 3; i += 1) await revive(cluster, i, args);
  const [, n2, n3] = cluster.nodes as [NodeProc, NodeProc, NodeProc];
  await allAlive(cluster.nodes);
  const sha = await upload(n3.address, compute);
  const program = ["60", String(EXIT_CODE)];
  const expected = await undisturbed(n3.address, sha, program);
  const { pid } = await run(n3.address, { module_sha256: sha, module_name: "compute.wasm", args: program, checkpoint_every_ms: CHECKPOINT_EVERY_MS, node: "n3" });
  await json(n3.address, "POST", `/v1/processes/${pid}/migrate`, { to: "n2", strategy: "stop-copy" });
  const seq = await until("checkpoints taken on n2, kept on n1, recorded in the directory", async () => {
    const r = await directory.process(pid);
    return r?.runner === "n2" && r.last_checkpoint !== null && r.last_checkpoint.moves === 1 && r.last_checkpoint.seq >= 2 ? r.last_checkpoint.seq : undefined;
  });
  assert.equal((await directory.process(pid))?.last_checkpoint?.node, "n1");
  const tap = await tapEvents(n2.address, "/v1/events?local=1&follow=1");
  try {
    await tap.until((e, d) => e.event === "checkpoint.taken" && d["pid"] === pid && Number(d["checkpoint"]) >= seq + 1);
    n2.child.kill("SIGSTOP");
  } finally {
    tap.close();
  }
  try {
    await until(
      "the process to be resumed on n1",
      async () => {
        const r = await directory.process(pid);
        return r !== null && (r.runner === "n1" || r.state !== "running") ? r : undefined;
      },
      30_000,
    );
  } finally {
    n2.child.kill("SIGCONT");
  }
  await until("n2 to drop its copy once it runs again", async () => ((await runsOn(n2.address, pid)) ? undefined : true), 30_000);
  assert.deepEqual((await json<{ status: unknown }>(n3.address, "GET", `/v1/processes/${pid}/wait`)).status, { kind: "exit", code: EXIT_CODE });
  const info = await json<Info>(n3.address, "GET", `/v1/processes/${pid}`);
  assert.deepEqual([info.home, info.node, info.moves], ["n3", "n1", 2]);
  const got = await outputOf(n3.address, pid);
  assert.equal(got.stdout.toString(), expected.stdout.toString(), "stdout: no gap, nothing twice");
  assert.equal(got.stderr.toString(), expected.stderr.toString(), "stderr: no gap, nothing twice");
}

describe("failover, embedded directory, three node daemons", () => {
  let directory: MemoryDirectory;
  let server: DirectoryServer;
  let cluster: Cluster;

  before(async () => {
    directory = openEmbeddedDirectory(path.join(tempDir("failover"), "directory.json"));
    const ca = await testAuthority();
    const issued = await issue(ca, { role: "node", name: "directory", hosts: ["127.0.0.1"] });
    server = await serveDirectory(directory, { host: "127.0.0.1", port: 0, tls: new ClusterTls({ ca_pem: ca.cert_pem, cert_pem: issued.cert_pem, key_pem: issued.key_pem as string }) });
    cluster = await startCluster(["n1", "n2", "n3"], undefined, () => [...NODE_ARGS_DEFAULT, "--directory", server.url, "--dead-after", String(DEAD_AFTER_MS)]);
  });
  after(async () => {
    await cluster?.stop();
    await server?.close();
    await directory?.close();
  });

  it("kill -9 of the runner of a checkpointed CPU-bound process: it resumes by itself on its keeper with the same pid and ends with the output and status of an undisturbed run", async () => {
    await runnerKilled(cluster, directory, "embedded directory");
  });

  it("kill -9 of a checkpointed process's home, which also ran it: the keeper of its checkpoints becomes its home and resumes it, no gap, no duplicate, the right status from every live node", async () => {
    await homeKilled(cluster, directory, [...NODE_ARGS_DEFAULT, "--directory", server.url, "--dead-after", String(DEAD_AFTER_MS)], "embedded directory");
  });

  it("a link pair exchanging numbered messages through a failover of the receiver's runner: each message exactly once, in order", async () => {
    await linkPair(cluster, [...NODE_ARGS_DEFAULT, "--directory", server.url, "--dead-after", String(DEAD_AFTER_MS)], "pong");
  });

  it("a link pair through a failover of the sender's runner: resumed from its checkpoint, it sends again what it sent since, and the receiver takes each message exactly once, in order", async () => {
    await linkPair(cluster, [...NODE_ARGS_DEFAULT, "--directory", server.url, "--dead-after", String(DEAD_AFTER_MS)], "ping");
  });

  it("kill -9 of a checkpointed process's home while its runner lives: the keeper becomes its home, the runner drops its copy, ps, wait and logs from every live node give an undisturbed run's", async () => {
    await homeOnlyKilled(cluster, directory, [...NODE_ARGS_DEFAULT, "--directory", server.url, "--dead-after", String(DEAD_AFTER_MS)]);
  });

  it("a link pair through a failover of the receiver's home, which also ran it: deliveries find it where its keeper resumed it, each message exactly once, in order", async () => {
    await linkPairHomeKilled(cluster, directory, [...NODE_ARGS_DEFAULT, "--directory", server.url, "--dead-after", String(DEAD_AFTER_MS)]);
  });

  it("fencing: a runner stopped past its lease and then going on drops its copy; the process resumed elsewhere ends with an undisturbed run's output, nothing twice", async () => {
    await runnerCutOff(cluster, directory, [...NODE_ARGS_DEFAULT, "--directory", server.url, "--dead-after", String(DEAD_AFTER_MS)]);
  });
});

describe("failover, etcd directory, three node daemons", { skip: etcdMissing() }, () => {
  let etcd: TestEtcd;
  let cluster: Cluster;
  let directory: Directory;

  before(async () => {
    etcd = await startEtcd();
    cluster = await startCluster(["n1", "n2", "n3"], undefined, () => [...NODE_ARGS_DEFAULT, "--directory", `${etcd.url}/failover-test/`, "--dead-after", String(DEAD_AFTER_MS)]);
    directory = await openDirectory(`${etcd.url}/failover-test/`, null);
  });
  after(async () => {
    await directory?.close();
    await cluster?.stop();
    await etcd?.stop();
  });

  it("kill -9 of the runner of a checkpointed CPU-bound process: it resumes by itself on its keeper, no gap, no duplicate, the right status", async () => {
    await runnerKilled(cluster, directory, "etcd directory");
  });

  it("kill -9 of the home and runner: its keeper takes over, no gap, no duplicate", async () => {
    await homeKilled(cluster, directory, [...NODE_ARGS_DEFAULT, "--directory", `${etcd.url}/failover-test/`, "--dead-after", String(DEAD_AFTER_MS)], "etcd directory");
  });
});
