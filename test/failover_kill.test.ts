/**
 * A process whose home died, seen from the nodes that live (issue 11 item 5;
 * docs/directory.md, "When a node dies"), with three node daemons on
 * 127.0.0.1 and the embedded directory served as `ferry up` serves it:
 * - no checkpoint, its runner alive: nothing takes the home over, the
 *   process goes on where it runs; `kill` from another node stops it there,
 *   and its end (recorded in the directory by its runner, since its home
 *   cannot take it) is what `kill`, `wait` and `ps` answer on every live node;
 * - checkpointed: a `kill` sent the moment after its home died, before the
 *   keeper has taken the home over, waits for that takeover and is answered
 *   by the new home.
 * Everything waits on observable state.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { openEmbeddedDirectory, type MemoryDirectory } from "../src/directory/mod.js";
import { serveDirectory, type DirectoryServer } from "../src/node/mod.js";
import { ClusterTls, issue } from "../src/trust/mod.js";
import { EXAMPLES, tempDir, until } from "./_helpers.js";
import { crash, json, NODE_ARGS_DEFAULT, runsOn, startCluster, startNode, testAuthority, upload, type NodeProc } from "./_cluster.js";
import { tapEvents } from "./_events.js";

const sleeper = path.join(EXAMPLES, "c", "sleeper.wasm");
const compute = path.join(EXAMPLES, "c", "compute.wasm");

/** Leases short enough that a death is declared soon, long enough that a node on a loaded machine keeps renewing its own. */
const DEAD_AFTER_MS = 3000;

type Cluster = Awaited<ReturnType<typeof startCluster>>;

interface Info {
  pid: string;
  node: string;
  home: string;
  exit: { kind: string; code?: number } | null;
}

describe("a process whose home died, from the live nodes, embedded directory, three node daemons", () => {
  let directory: MemoryDirectory;
  let server: DirectoryServer;
  let cluster: Cluster;
  let args: string[];

  before(async () => {
    directory = openEmbeddedDirectory(path.join(tempDir("failover-kill"), "directory.json"));
    const ca = await testAuthority();
    const issued = await issue(ca, { role: "node", name: "directory", hosts: ["127.0.0.1"] });
    server = await serveDirectory(directory, { host: "127.0.0.1", port: 0, tls: new ClusterTls({ ca_pem: ca.cert_pem, cert_pem: issued.cert_pem, key_pem: issued.key_pem as string }) });
    args = [...NODE_ARGS_DEFAULT, "--directory", server.url, "--dead-after", String(DEAD_AFTER_MS)];
    cluster = await startCluster(["n1", "n2", "n3"], undefined, () => args);
  });
  after(async () => {
    await cluster?.stop();
    await server?.close();
    await directory?.close();
  });

  async function allAlive(): Promise<void> {
    for (const n of cluster.nodes) {
      await until(`${n.name} to see all three alive`, async () => (await json<{ state: string | null }[]>(n.address, "GET", "/v1/nodes")).filter((r) => r.state === "alive").length === 3);
    }
  }

  async function revive(i: number): Promise<void> {
    const old = cluster.nodes[i] as NodeProc;
    if (old.child.exitCode === null && old.child.signalCode === null) return;
    const peers = cluster.nodes.filter((_, j) => j !== i).map((n) => n.address);
    cluster.nodes[i] = await startNode(old.name, Number(old.address.split(":")[1]), peers, path.join(cluster.dir, old.name), args);
  }

  it("no checkpoint, its runner alive: it goes on where it runs; kill from another node stops it there, and kill, wait and ps on every live node give its end", async () => {
    const [n1, n2, n3] = cluster.nodes as [NodeProc, NodeProc, NodeProc];
    await allAlive();
    const sha = await upload(n1.address, sleeper);
    // Runs until it is killed: a tick a second for longer than any test.
    const { pid } = await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "sleeper.wasm", args: ["1000", "1000000"], node: "n1" });
    await json(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to: "n2", strategy: "stop-copy" });
    await until("the directory to record it on n2", async () => ((await directory.process(pid))?.runner === "n2" ? true : undefined));
    await crash(n1);
    await until("n3 to declare n1 dead", async () => ((await json<{ name: string; state: string | null }[]>(n3.address, "GET", "/v1/nodes")).find((r) => r.name === "n1")?.state === "dead" ? true : undefined), 30_000);
    assert.equal(await runsOn(n2.address, pid), true, "it goes on running where it ran");
    assert.equal((await directory.process(pid))?.state, "running");
    // Waiting from n2 (its runner) before the kill: the end reaches it.
    const waited = json<{ status: unknown }>(n2.address, "GET", `/v1/processes/${pid}/wait`);
    const killed = await json<{ pid: string; status: unknown }>(n3.address, "DELETE", `/v1/processes/${pid}`);
    assert.deepEqual(killed, { pid, status: { kind: "killed" } });
    assert.deepEqual((await waited).status, { kind: "killed" });
    assert.equal(await runsOn(n2.address, pid), false, "its runner stopped it");
    const record = await directory.process(pid);
    assert.deepEqual([record?.state, record?.runner, record?.home], ["killed", "n2", "n1"]);
    for (const n of [n2, n3]) {
      assert.deepEqual((await json<{ status: unknown }>(n.address, "GET", `/v1/processes/${pid}/wait`)).status, { kind: "killed" }, `wait from ${n.name}`);
      const listed = (await json<Info[]>(n.address, "GET", "/v1/processes")).filter((p) => p.pid === pid);
      assert.deepEqual(listed.map((p) => p.exit), [{ kind: "killed" }], `ps from ${n.name}`);
      // A second kill answers with the end, as at a live home.
      assert.deepEqual(await json(n.address, "DELETE", `/v1/processes/${pid}`), { pid, status: { kind: "killed" } }, `kill again from ${n.name}`);
    }
  });

  it("checkpointed: a kill sent the moment after its home died waits for the keeper to take the home over, and the new home answers it", async () => {
    await revive(0);
    await allAlive();
    const [n1, n2, n3] = cluster.nodes as [NodeProc, NodeProc, NodeProc];
    const sha = await upload(n1.address, compute);
    // Long enough that it is still running when the keeper resumes it (the kill ends it).
    const { pid } = await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "compute.wasm", args: ["10000", "7"], checkpoint_every_ms: 150, node: "n1" });
    const keeper = await until("a checkpoint recorded in the directory", async () => {
      const r = await directory.process(pid);
      assert.equal(r?.state, "running", JSON.stringify(r));
      return r?.last_checkpoint !== null && r?.last_checkpoint !== undefined && r.last_checkpoint.seq >= 2 ? r.last_checkpoint.node : undefined;
    });
    const asker = keeper === "n2" ? n3 : n2;
    const tap = await tapEvents(asker.address, "/v1/events?local=1&follow=1");
    try {
      await crash(n1);
      // Before anyone has declared n1 dead: n1 does not answer, and a keeper will take its place.
      const killed = await json<{ pid: string; status: unknown }>(asker.address, "DELETE", `/v1/processes/${pid}`);
      assert.deepEqual(killed, { pid, status: { kind: "killed" } });
      // Declared dead by now: the kill waited for the takeover that followed.
      await tap.until((e, d) => e.event === "node.dead" && d["peer"] === "n1");
    } finally {
      tap.close();
    }
    // The home writes the end to the directory after it answers.
    const record = await until("the directory to record the end", async () => {
      const r = await directory.process(pid);
      return r?.state !== "running" ? r : undefined;
    });
    assert.deepEqual([record?.state, record?.home], ["killed", keeper]);
    for (const n of [n2, n3]) {
      assert.deepEqual((await json<{ status: unknown }>(n.address, "GET", `/v1/processes/${pid}/wait`)).status, { kind: "killed" }, `wait from ${n.name}`);
      assert.equal(await runsOn(n.address, pid), false, `nothing of it runs on ${n.name}`);
    }
  });
});
