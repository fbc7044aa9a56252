/**
 * The cluster directory and failure detection (issue 11 items 2 and 3) with
 * three separate node daemons on 127.0.0.1: the embedded directory served
 * as `ferry up` serves it (mutual TLS, from this process, which outlives
 * the nodes), and a real etcd. A node killed with SIGKILL is declared dead
 * once its lease runs out; `ferry nodes` shows it dead; the process it ran
 * without a checkpoint is `lost` from every node, and `wait` returns; the
 * node restarted on its data directory rejoins alive and keeps its pids.
 * Everything waits on observable state; the times measured are printed.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { MemoryDirectory, openEmbeddedDirectory, type CasResult, type ProcessChange } from "../src/directory/mod.js";
import { serveDirectory, type DirectoryServer } from "../src/node/mod.js";
import { ClusterTls, issue } from "../src/trust/mod.js";
import { EXAMPLES, tempDir, until } from "./_helpers.js";
import { crash, freePorts, json, NODE_ARGS_DEFAULT, nodeDialer, request, startCluster, startNode, testAuthority, upload, type NodeProc } from "./_cluster.js";
import { etcdMissing, startEtcd, type TestEtcd } from "./_etcd.js";
import { tapEvents } from "./_events.js";

const sleeper = path.join(EXAMPLES, "c", "sleeper.wasm");

/**
 * The lease of the nodes here: short, so a test waits a few seconds for a
 * death, yet long enough that a live node on a busy machine renews it in
 * time (1 s was not: a node that missed one was declared dead with n2).
 */
const DEAD_AFTER_MS = 3000;

interface Info {
  pid: string;
  node: string;
  home: string;
  state: string;
  exit: { kind: string; code?: number; message?: string } | null;
}

interface NodeRow {
  name: string | null;
  up: boolean;
  state: "alive" | "dead" | null;
}

function run(address: string, sha: string, args: string[], node?: string): Promise<{ pid: string }> {
  return json<{ pid: string }>(address, "POST", "/v1/processes", { module_sha256: sha, module_name: "sleeper.wasm", args, ...(node !== undefined ? { node } : {}) });
}

async function stateOf(address: string, name: string): Promise<NodeRow["state"] | undefined> {
  return (await json<NodeRow[]>(address, "GET", "/v1/nodes")).find((n) => n.name === name)?.state;
}

/**
 * The shared scenario: n1 runs a process (home n1) and moves it to n2; n2
 * also runs one of its own. n2 is killed; returns how long until the other
 * nodes' `ferry nodes` said it was dead.
 */
async function killRunner(nodes: NodeProc[]): Promise<{ moved: string; own: string; dead_ms: number; last_own_number: number }> {
  const [n1, n2, n3] = nodes as [NodeProc, NodeProc, NodeProc];
  const sha = await upload(n1.address, sleeper);
  await upload(n2.address, sleeper);
  for (const n of nodes) await until(`${n.name} to see all three alive`, async () => (await json<NodeRow[]>(n.address, "GET", "/v1/nodes")).filter((r) => r.state === "alive").length === 3);
  const finished = await run(n2.address, sha, ["0", "1"], "n2");
  assert.deepEqual((await json<{ status: unknown }>(n2.address, "GET", `/v1/processes/${finished.pid}/wait`)).status, { kind: "exit", code: 0 });
  const moved = await run(n1.address, sha, ["200", "100000"]);
  await json(n1.address, "POST", `/v1/processes/${moved.pid}/migrate`, { to: "n2" });
  assert.equal((await json<Info>(n3.address, "GET", `/v1/processes/${moved.pid}`)).node, "n2");
  const own = await run(n2.address, sha, ["200", "100000"], "n2");
  const killed_at = await crash(n2);
  await until("n1 and n3 to say n2 is dead", async () => (await stateOf(n1.address, "n2")) === "dead" && (await stateOf(n3.address, "n2")) === "dead", 30_000);
  return { moved: moved.pid, own: own.pid, dead_ms: Date.now() - killed_at, last_own_number: Number(own.pid.split("-")[1]) };
}

/** What every backend must show after killRunner: both processes lost, from every live node, and wait returns. */
async function assertLost(nodes: NodeProc[], pids: string[]): Promise<void> {
  for (const n of [nodes[0], nodes[2]] as NodeProc[]) {
    const list = await json<Info[]>(n.address, "GET", "/v1/processes");
    for (const pid of pids) {
      const p = list.find((x) => x.pid === pid);
      assert.equal(p?.exit?.kind, "lost", `${pid} as ${n.name} lists it: ${JSON.stringify(p)}`);
      assert.match(p?.exit?.message ?? "", /n2/);
      const waited = await json<{ status: Info["exit"] }>(n.address, "GET", `/v1/processes/${pid}/wait`);
      assert.equal(waited.status?.kind, "lost", `wait ${pid} from ${n.name}`);
    }
  }
}

/** Starts n2 again on its data directory: alive again for the others, its lost processes stay lost, and its next pid is new. */
async function restartRejoins(cluster: { nodes: NodeProc[]; dir: string }, args: readonly string[]): Promise<void> {
  const [n1, old, n3] = cluster.nodes as [NodeProc, NodeProc, NodeProc];
  const port = Number(old.address.split(":")[1]);
  const n2 = await startNode("n2", port, [n1.address, n3.address], path.join(cluster.dir, "n2"), args);
  cluster.nodes[1] = n2;
  await until("n1 to say n2 is alive again", async () => (await stateOf(n1.address, "n2")) === "alive");
  const own = (await json<Info[]>(n1.address, "GET", "/v1/processes")).filter((p) => p.home === "n2");
  assert.ok(own.length >= 2, JSON.stringify(own));
  const lost = own.filter((p) => p.exit?.kind === "lost");
  assert.equal(lost.length, 1, JSON.stringify(own));
  assert.equal(lost[0]?.state, "failed");
  const sha = await upload(n2.address, sleeper);
  const next = await run(n2.address, sha, ["0", "1"], "n2");
  const numbers = own.map((p) => Number(p.pid.split("-")[1]));
  assert.ok(Number(next.pid.split("-")[1]) > Math.max(...numbers), `${next.pid} reuses none of ${own.map((p) => p.pid).join(", ")}`);
  assert.deepEqual((await json<{ status: unknown }>(n3.address, "GET", `/v1/processes/${next.pid}/wait`)).status, { kind: "exit", code: 0 });
}

describe("embedded directory, three node daemons", () => {
  let dir: string;
  let directory: MemoryDirectory;
  let server: DirectoryServer;
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  const deaths: { name: string; at: number; reason: string | null }[] = [];

  before(async () => {
    dir = tempDir("directory");
    directory = openEmbeddedDirectory(path.join(dir, "directory.json"));
    await directory.watch((c) => {
      if (c.kind === "member" && c.member.state === "dead") deaths.push({ name: c.member.name, at: Date.now(), reason: c.reason });
    });
    // The directory's own node certificate, as `ferry up` issues it.
    const ca = await testAuthority();
    const issued = await issue(ca, { role: "node", name: "directory", hosts: ["127.0.0.1"] });
    server = await serveDirectory(directory, { host: "127.0.0.1", port: 0, tls: new ClusterTls({ ca_pem: ca.cert_pem, cert_pem: issued.cert_pem, key_pem: issued.key_pem as string }) });
    // No --peers needed beyond the directory: members' addresses become peers. They are given anyway, as startCluster does.
    cluster = await startCluster(["n1", "n2", "n3"], undefined, () => [...NODE_ARGS_DEFAULT, "--directory", server.url, "--dead-after", String(DEAD_AFTER_MS)]);
  });
  after(async () => {
    await cluster.stop();
    await server.close();
    await directory.close();
  });

  it("declares a node killed with SIGKILL dead once its lease runs out, and what it ran without a checkpoint lost on every node", async () => {
    const events = await tapEvents((cluster.nodes[0] as NodeProc).address, "/v1/events?follow=1");
    try {
      const { moved, own, dead_ms } = await killRunner(cluster.nodes);
      const death = deaths.find((d) => d.name === "n2");
      assert.ok(death !== undefined);
      assert.match(death.reason ?? "", new RegExp(`did not renew its lease within ${DEAD_AFTER_MS} ms`));
      process.stdout.write(`# embedded directory: kill -9 to every node saying n2 is dead: ${dead_ms} ms (lease ${DEAD_AFTER_MS} ms)\n`);
      const dead = await events.until((e) => e.event === "node.dead");
      assert.equal(dead["peer"], "n2");
      await assertLost(cluster.nodes, [moved, own]);
      // The directory says the same, with the reason.
      const record = await directory.process(moved);
      assert.deepEqual([record?.state, record?.runner], ["lost", "n2"]);
      assert.match(record?.reason ?? "", /declared dead/);
    } finally {
      events.close();
    }
  });

  it("takes a restarted node back alive; it keeps its pids, and its lost process stays lost", async () => {
    assert.equal((await directory.members()).find((m) => m.name === "n2")?.state, "dead");
    await restartRejoins(cluster, [...NODE_ARGS_DEFAULT, "--directory", server.url, "--dead-after", String(DEAD_AFTER_MS)]);
  });
});

describe("a node whose directory does not answer", () => {
  it("does not start, and says why", async () => {
    const dir = tempDir("no-directory");
    const [port] = (await freePorts(1)) as [number];
    try {
      // Port 1 on loopback: nothing listens there.
      await assert.rejects(startNode("n1", port, [], dir, [...NODE_ARGS_DEFAULT, "--directory", "etcd://127.0.0.1:1"]), /exited with 1/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** A directory that, when the move of `pid` to `to` is recorded, records a takeover of it first (as failover elsewhere would): the move's compare-and-set then fails. */
class TakeoverDirectory extends MemoryDirectory {
  pid: string | null = null;
  override async updateProcess(pid: string, expect_moves: number, change: ProcessChange): Promise<CasResult> {
    if (pid === this.pid && change.runner === "n2") {
      this.pid = null;
      assert.ok((await super.updateProcess(pid, expect_moves, { runner: "n3", moves: expect_moves + 1 })).ok);
    }
    return super.updateProcess(pid, expect_moves, change);
  }
}

describe("a move the directory refuses", () => {
  let directory: TakeoverDirectory;
  let server: DirectoryServer;
  let cluster: Awaited<ReturnType<typeof startCluster>>;

  before(async () => {
    directory = new TakeoverDirectory();
    const ca = await testAuthority();
    const issued = await issue(ca, { role: "node", name: "directory", hosts: ["127.0.0.1"] });
    server = await serveDirectory(directory, { host: "127.0.0.1", port: 0, tls: new ClusterTls({ ca_pem: ca.cert_pem, cert_pem: issued.cert_pem, key_pem: issued.key_pem as string }) });
    cluster = await startCluster(["n1", "n2"], undefined, () => [...NODE_ARGS_DEFAULT, "--directory", server.url, "--dead-after", String(DEAD_AFTER_MS)]);
  });
  after(async () => {
    await cluster.stop();
    await server.close();
    await directory.close();
  });

  it("regression, a refused move was only logged: the source publishes migration.unrecorded, drops its copy, and the directory keeps the move it has", async () => {
    const [n1] = cluster.nodes as [NodeProc, NodeProc];
    const sha = await upload(n1.address, sleeper);
    for (const n of cluster.nodes) await until(`${n.name} to see both alive`, async () => (await json<NodeRow[]>(n.address, "GET", "/v1/nodes")).filter((r) => r.state === "alive").length === 2);
    const { pid } = await run(n1.address, sha, ["200", "100000"]);
    await until("the directory to record it", async () => ((await directory.process(pid)) !== null ? true : undefined));
    directory.pid = pid;
    const events = await tapEvents(n1.address, "/v1/events?local=1&follow=1");
    try {
      // The move itself succeeds: the destination runs the process.
      await json(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to: "n2" });
      const unrecorded = await events.until((e, d) => e.event === "migration.unrecorded" && d["pid"] === pid);
      assert.equal(unrecorded["to"], "n2");
      assert.equal(unrecorded["moves"], 1);
      assert.equal(unrecorded["reason"], "stale");
      assert.equal(unrecorded["source_copy"], "dropped");
      assert.match(String(unrecorded["detail"]), /move 1, on n3/);
      const record = await directory.process(pid);
      assert.deepEqual([record?.runner, record?.moves], ["n3", 1]);
      const dialer = await nodeDialer();
      await until("n1 to have dropped its copy", async () => {
        const r = await request(n1.address, "GET", `/v1/internal/running/${pid}`, undefined, dialer);
        return r.status === 200 && (JSON.parse(r.body.toString()) as { running: boolean }).running === false ? true : undefined;
      });
    } finally {
      events.close();
    }
  });
});

describe("etcd directory, three node daemons", { skip: etcdMissing() }, () => {
  let etcd: TestEtcd;
  let cluster: Awaited<ReturnType<typeof startCluster>>;

  before(async () => {
    etcd = await startEtcd();
    cluster = await startCluster(["n1", "n2", "n3"], undefined, () => [...NODE_ARGS_DEFAULT, "--directory", `${etcd.url}/membership-test/`, "--dead-after", String(DEAD_AFTER_MS)]);
  });
  after(async () => {
    await cluster?.stop();
    await etcd?.stop();
  });

  it("declares a node killed with SIGKILL dead when its etcd lease runs out, and what it ran without a checkpoint lost on every node", async () => {
    const { moved, own, dead_ms } = await killRunner(cluster.nodes);
    process.stdout.write(`# etcd directory: kill -9 to every node saying n2 is dead: ${dead_ms} ms (lease ${DEAD_AFTER_MS} ms)\n`);
    await assertLost(cluster.nodes, [moved, own]);
  });

  it("takes the restarted node back alive; it keeps its pids", async () => {
    await restartRejoins(cluster, [...NODE_ARGS_DEFAULT, "--directory", `${etcd.url}/membership-test/`, "--dead-after", String(DEAD_AFTER_MS)]);
  });
});
