/**
 * `ferry logs` across a failover of a process's home (issue 11 items 5 and 6,
 * docs/directory.md "Failover"), with three separate node daemons on
 * 127.0.0.1, once with the embedded directory served as `ferry up` serves
 * it and once with a real etcd (Debian's etcd-server).
 *
 * The home (which also runs the process) is killed with `kill -9`. Before the
 * directory declares it dead, `ferry logs` from the other nodes is answered
 * from the keeper's replica of the output, up to what its newest stored
 * checkpoint covers; a `ferry logs -f` started before the kill rides through
 * it, and one started after it begins from the replica. Then the death is
 * declared, the keeper becomes the home and resumes the process, and both
 * followers end with exactly the output of an undisturbed run: nothing lost,
 * nothing twice; so does the `ferry run --attach` that started the process
 * (through another node), with its exit status, and so do `ferry wait`s
 * started before and after the kill.
 *
 * Leases are long (60 s) and the test ends the dead node's lease itself (in
 * the directory it serves, or in etcd), as the directory does when a lease
 * runs out: so the
 * time before the takeover lasts as long as the test needs, and what is
 * checked in it cannot race the takeover. Everything waits on observable
 * state.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Etcd3 } from "etcd3";
import { openEmbeddedDirectory, type Directory, type MemoryDirectory } from "../src/directory/mod.js";
import { openDirectory, serveDirectory, type DirectoryServer } from "../src/node/mod.js";
import { ClusterTls, issue } from "../src/trust/mod.js";
import { EXAMPLES, FERRY, ferry, tempDir, until } from "./_helpers.js";
import { crash, json, NODE_ARGS_DEFAULT, outputOf, request, startCluster, testAuthority, upload, type NodeProc } from "./_cluster.js";
import { tapEvents } from "./_events.js";
import { etcdMissing, startEtcd, type TestEtcd } from "./_etcd.js";

const compute = path.join(EXAMPLES, "c", "compute.wasm");
const sleeper = path.join(EXAMPLES, "c", "sleeper.wasm");

/** Longer than the test takes to look at the cluster before the takeover: the death is declared only when the test ends the lease. */
const DEAD_AFTER_MS = 60_000;
/** Checkpoints often enough that several are taken before the kill. */
const CHECKPOINT_EVERY_MS = 150;
/** The exit status the program ends with. */
const EXIT_CODE = 7;

/** A `ferry logs -f` running, with what it has printed so far. */
interface Follower {
  child: ChildProcess;
  stdout(): Buffer;
  stderr(): Buffer;
  done: Promise<number | null>;
}

function follow(cluster: string, pid: string): Follower {
  return ferryChild(["logs", "-f", "--cluster", cluster, pid]);
}

/** The CLI with `args`, running, with what it has printed so far. */
function ferryChild(args: readonly string[]): Follower {
  const child = spawn(process.execPath, [FERRY, ...args], { stdio: ["ignore", "pipe", "pipe"], env: process.env });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout?.on("data", (c: Buffer) => out.push(c));
  child.stderr?.on("data", (c: Buffer) => err.push(c));
  const done = new Promise<number | null>((resolve) => child.on("close", (status) => resolve(status)));
  return { child, stdout: () => Buffer.concat(out), stderr: () => Buffer.concat(err), done };
}

function stopFollower(f: Follower | undefined): void {
  if (f !== undefined && f.child.exitCode === null && f.child.signalCode === null) f.child.kill("SIGKILL");
}

describe("ferry logs across a failover of the home, embedded directory, three node daemons", () => {
  let directory: MemoryDirectory;
  let server: DirectoryServer;
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  /** The lease each node holds now, by name, as the directory grants them. */
  const leases = new Map<string, string>();
  const followers: Follower[] = [];

  before(async () => {
    directory = openEmbeddedDirectory(path.join(tempDir("failover-logs"), "directory.json"));
    const grant = directory.grantLease.bind(directory);
    directory.grantLease = async (member, ttl_ms) => {
      const lease = await grant(member, ttl_ms);
      leases.set(member.name, lease.id);
      return lease;
    };
    const ca = await testAuthority();
    const issued = await issue(ca, { role: "node", name: "directory", hosts: ["127.0.0.1"] });
    server = await serveDirectory(directory, { host: "127.0.0.1", port: 0, tls: new ClusterTls({ ca_pem: ca.cert_pem, cert_pem: issued.cert_pem, key_pem: issued.key_pem as string }) });
    cluster = await startCluster(["n1", "n2", "n3"], undefined, () => [...NODE_ARGS_DEFAULT, "--directory", server.url, "--dead-after", String(DEAD_AFTER_MS)]);
  });
  after(async () => {
    for (const f of followers) stopFollower(f);
    await cluster?.stop();
    await server?.close();
    await directory?.close();
  });

  it("kill -9 of the home, which also ran the process: before the takeover ferry logs is served from the keeper's replica; followers started before and after the kill end with an undisturbed run's output, no gap, nothing twice; wait rides through", async () => {
    await logsAcrossTakeover(cluster, directory, async (name) => leases.get(name) as string, followers);
  });
});

describe("ferry logs across a failover of the home, etcd directory, three node daemons", { skip: etcdMissing() }, () => {
  let etcd: TestEtcd;
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  let directory: Directory;
  let client: Etcd3;
  const followers: Follower[] = [];

  before(async () => {
    etcd = await startEtcd();
    cluster = await startCluster(["n1", "n2", "n3"], undefined, () => [...NODE_ARGS_DEFAULT, "--directory", `${etcd.url}/failover-logs/`, "--dead-after", String(DEAD_AFTER_MS)]);
    directory = await openDirectory(`${etcd.url}/failover-logs/`, null);
    client = new Etcd3({ hosts: `http://${etcd.endpoint}` });
  });
  after(async () => {
    for (const f of followers) stopFollower(f);
    client?.close();
    await directory?.close();
    await cluster?.stop();
    await etcd?.stop();
  });

  it("kill -9 of the home, which also ran the process: before the takeover ferry logs is served from the keeper's replica; followers started before and after the kill end with an undisturbed run's output, no gap, nothing twice; wait rides through", async () => {
    // A node's liveness key in etcd names the lease it is attached to (it lives as long as the lease: until the test revokes it).
    const leaseOf = async (name: string): Promise<string> => {
      const all = await client.getAll().strings();
      const reg = Object.entries(all).find(([key]) => key.endsWith(`failover-logs/alive/${name}`))?.[1] ?? null;
      const lease = reg === null ? undefined : (JSON.parse(reg) as { lease?: string }).lease;
      assert.ok(lease !== undefined, `${name}'s liveness key names its lease: ${reg}`);
      return lease;
    };
    await logsAcrossTakeover(cluster, directory, leaseOf, followers);
  });
});

/**
 * The scenario, on a cluster of three nodes whose directory is `directory`:
 * `leaseOf(name)` is the lease a node holds, which the test revokes to
 * declare it dead. Followers started are pushed to `followers` (stopped by
 * the caller's `after` if the test fails midway).
 */
async function logsAcrossTakeover(cluster: Awaited<ReturnType<typeof startCluster>>, directory: Directory, leaseOf: (name: string) => Promise<string>, followers: Follower[]): Promise<void> {
    const [, , n3] = cluster.nodes as [NodeProc, NodeProc, NodeProc];
  for (const n of cluster.nodes) {
    await until(`${n.name} to see all three alive`, async () => (await json<{ state: string | null }[]>(n.address, "GET", "/v1/nodes")).filter((r) => r.state === "alive").length === 3);
  }
  const program = ["60", String(EXIT_CODE)];
  // The undisturbed run, beside the rest (away from the node killed): what every reader must end up with.
  const calm_node = cluster.nodes[0] as NodeProc;
  const calm = await json<{ pid: string }>(calm_node.address, "POST", "/v1/processes", { module_sha256: await upload(calm_node.address, compute), module_name: "compute.wasm", args: program });
  const undisturbed = (async () => {
    assert.deepEqual((await json<{ status: unknown }>(calm_node.address, "GET", `/v1/processes/${calm.pid}/wait`)).status, { kind: "exit", code: EXIT_CODE });
    return outputOf(calm_node.address, calm.pid);
  })();

  // Started with `ferry run --attach` through a node that is neither its home nor its keeper: it stays attached through the takeover.
  const known = new Set((await json<{ pid: string }[]>(n3.address, "GET", "/v1/processes")).map((p) => p.pid));
  const attached = ferryChild(["run", "--attach", "--cluster", (cluster.nodes[0] as NodeProc).address, "--node", "n3", "--checkpoint-every", String(CHECKPOINT_EVERY_MS), compute, ...program]);
  followers.push(attached);
  const { pid } = await until("the attached process to start on n3", async () => (await json<{ pid: string; node: string }[]>(n3.address, "GET", "/v1/processes")).find((p) => p.node === "n3" && !known.has(p.pid)));
  // One without checkpoints, running until it is lost: no node keeps its output but its home.
  const plain = await json<{ pid: string }>(n3.address, "POST", "/v1/processes", { module_sha256: await upload(n3.address, sleeper), module_name: "sleeper.wasm", args: ["1000", "100000"], node: "n3" });
  const last = await until("checkpoints of it recorded at its home and in the directory", async () => {
    const l = (await json<{ last: { keeper: string; seq: number; stdout_bytes: number } | null }>(n3.address, "GET", `/v1/processes/${pid}/checkpoints`)).last;
    const r = await directory.process(pid);
    return l !== null && l.seq >= 2 && l.stdout_bytes > 100 && r?.last_checkpoint?.node === l.keeper ? l : undefined;
  });
  const keeper = cluster.nodes.find((n) => n.name === last.keeper) as NodeProc;
  const other = cluster.nodes.find((n) => n.name !== "n3" && n.name !== last.keeper) as NodeProc;

  // Follows through a node that is neither home nor keeper, from before the kill.
  const early = follow(other.address, pid);
  followers.push(early);
  await until("the early follower to print some output", () => early.stdout().length > 0);
  const early_wait = ferry(["wait", "--cluster", other.address, pid], { timeout_ms: 600_000 });

  // Killed the moment a checkpoint is stored, before the home has recorded it.
  const tap = await tapEvents(n3.address, "/v1/events?local=1&follow=1");
  try {
    await tap.until((e, d) => e.event === "checkpoint.taken" && d["pid"] === pid && Number(d["checkpoint"]) > last.seq);
    await crash(n3);
  } finally {
    tap.close();
  }

  // Before the takeover: the directory still holds n3 alive and its home.
  const expected = await undisturbed;
  const replica = await outputOf(other.address, pid);
  assert.ok(replica.stdout.length >= last.stdout_bytes, `the replica shows ${replica.stdout.length} bytes, at least the ${last.stdout_bytes} the last recorded checkpoint covers`);
  assert.ok(replica.stdout.length < expected.stdout.length, "the process had not finished when its home died");
  assert.deepEqual(replica.stdout, expected.stdout.subarray(0, replica.stdout.length), "stdout from the replica: a prefix of an undisturbed run's");
  assert.deepEqual(replica.stderr, expected.stderr.subarray(0, replica.stderr.length), "stderr from the replica: a prefix of an undisturbed run's");
  assert.deepEqual(await outputOf(keeper.address, pid), replica, "the keeper answers the same");
  const logs = await ferry(["logs", "--cluster", other.address, pid]);
  assert.equal(logs.status, 0, logs.stderr.toString());
  assert.deepEqual(logs.stdout, replica.stdout, "ferry logs before the takeover");
  const late = follow(other.address, pid);
  followers.push(late);
  // A wait started while the home does not answer is answered by the directory, once the process ends wherever it runs then.
  const late_wait = ferry(["wait", "--cluster", other.address, pid], { timeout_ms: 600_000 });
  const look = await json<{ pid: string; from_directory?: boolean }>(other.address, "GET", `/v1/processes/${pid}`);
  assert.deepEqual([look.pid, look.from_directory], [pid, true], "a look while its home does not answer: from the directory");
  await until("the late follower to print what the replica holds", () => late.stdout().length >= replica.stdout.length);
  await until("the early follower to have picked up again and caught up", () => early.stdout().length >= replica.stdout.length);
  // The output of the process with no checkpoint is with its home alone: said at once, not waited for.
  const none = await request(other.address, "GET", `/v1/processes/${plain.pid}/output`);
  assert.equal(none.status, 502, none.body.toString());
  assert.match(none.body.toString(), /ERR_PEER_UNREACHABLE.*no checkpoint/);
  const record = await directory.process(pid);
  assert.deepEqual([record?.home, record?.state], ["n3", "running"], "all of the above came before the takeover");
  assert.equal((await directory.members()).find((m) => m.name === "n3")?.state, "alive", "and before n3 was declared dead");
  assert.equal(early.child.exitCode, null, "the early follower still follows");

  // The death is declared: the keeper takes over and resumes the process.
  await directory.revokeLease(await leaseOf("n3"));
  for (const f of [early, late]) {
    assert.equal(await f.done, 0, f.stderr().toString());
    assert.equal(f.stdout().toString(), expected.stdout.toString(), "stdout followed across the takeover: no gap, no duplicate");
    assert.equal(f.stderr().toString(), expected.stderr.toString(), "stderr followed across the takeover: no gap, no duplicate");
  }
  for (const w of [early_wait, late_wait]) assert.equal((await w).status, EXIT_CODE, "ferry wait, through the home's death, with the process's status");
  assert.equal(await attached.done, EXIT_CODE, `ferry run --attach exits with the process's status: ${attached.stderr().toString()}`);
  assert.equal(attached.stdout().toString(), expected.stdout.toString(), "ferry run --attach across the takeover: stdout with no gap, no duplicate");
  const moved = await directory.process(pid);
  assert.deepEqual([moved?.home, moved?.runner, moved?.state], [keeper.name, keeper.name, "exited"], moved?.reason ?? "");
  for (const n of [other, keeper]) {
    assert.deepEqual((await json<{ status: unknown }>(n.address, "GET", `/v1/processes/${pid}/wait`)).status, { kind: "exit", code: EXIT_CODE }, `wait from ${n.name}`);
    const got = await outputOf(n.address, pid);
    assert.equal(got.stdout.toString(), expected.stdout.toString(), `stdout from ${n.name} after the takeover`);
  }
  // The one without a checkpoint is lost, and says so; its output stays with its dead home.
  assert.equal((await json<{ status: { kind: string } }>(other.address, "GET", `/v1/processes/${plain.pid}/wait`)).status.kind, "lost");
  assert.equal((await request(other.address, "GET", `/v1/processes/${plain.pid}/output`)).status, 502);
}
