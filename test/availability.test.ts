/**
 * Availability groundwork (issue 11), on node daemons that are separate OS
 * processes on 127.0.0.1: `ferry up` runs each node as a process of its own,
 * so one can die alone; a node that restarts on its data directory keeps its
 * pids, home records and output logs and says what became of what ran there;
 * a node ignores itself in --peers; and the home records where a process
 * runs in move order (the move/exit race, stale location updates).
 * Everything waits on observable state, never on time.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Dialer } from "../src/node/mod.js";
import { ClusterTls, issue } from "../src/trust/mod.js";
import { EXAMPLES, FERRY, ferry, tempDir, until } from "./_helpers.js";
import { crash, freePorts, json, outputOf, request, startCluster, startNode, stopNode, testAuthority, upload, type NodeProc } from "./_cluster.js";

const sleeper = path.join(EXAMPLES, "c", "sleeper.wasm");
const selfmove = path.join(EXAMPLES, "c", "selfmove.wasm");

interface Info {
  pid: string;
  node: string;
  home: string;
  state: string;
  moves: number;
  exit: { kind: string; code?: number; message?: string } | null;
}


/** Whether an OS process of this id exists. */
function alive(os_pid: number): boolean {
  try {
    process.kill(os_pid, 0);
    return true;
  } catch (err: unknown) {
    return (err as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

/** A dialer holding a certificate of node `name` of the test CA: to speak to a node as that node would. */
async function dialerAs(name: string): Promise<Dialer> {
  const ca = await testAuthority();
  const issued = await issue(ca, { role: "node", name, hosts: ["127.0.0.1"] });
  return new Dialer(new ClusterTls({ ca_pem: ca.cert_pem, cert_pem: issued.cert_pem, key_pem: issued.key_pem as string }));
}

function run(address: string, sha: string, module_name: string, args: string[], node?: string): Promise<{ pid: string }> {
  return json<{ pid: string }>(address, "POST", "/v1/processes", { module_sha256: sha, module_name, args, ...(node !== undefined ? { node } : {}) });
}

describe("ferry up", () => {
  it("runs each node as its own OS process: kill -9 of one leaves the others serving, os_pid in ferry nodes --json, Ctrl-C leaves nothing running", async () => {
    const home = tempDir("up-home");
    const [port] = (await freePorts(1)) as [number];
    const env = { ...process.env, FERRY_HOME: home };
    const cluster = `127.0.0.1:${port}`;
    // A 3 s lease: a live node on a busy machine renews it in time (with 1 s, n1 or n3 could be declared dead along with n2).
    const up: ChildProcess = spawn(process.execPath, [FERRY, "up", "--nodes", "3", "--port", String(port), "--dead-after", "3000"], { stdio: ["ignore", "pipe", "pipe"], env });
    let out = "";
    let err = "";
    up.stdout?.on("data", (c: Buffer) => (out += c.toString()));
    up.stderr?.on("data", (c: Buffer) => (err += c.toString()));
    const up_exited = new Promise<void>((r) => up.once("exit", () => r()));
    try {
      await until("ferry up to be up", () => (out.includes("cluster of 3 up") ? true : up.exitCode !== null ? Promise.reject(new Error(`ferry up ended: ${out}${err}`)) : undefined), 60_000);
      const list = async (): Promise<{ name: string | null; up: boolean; state: string | null; os_pid: number | null }[]> => {
        const r = await ferry(["nodes", "--json", "--cluster", cluster], { env: { FERRY_HOME: home } });
        assert.equal(r.status, 0, r.stderr.toString());
        return JSON.parse(r.stdout.toString()) as { name: string | null; up: boolean; state: string | null; os_pid: number | null }[];
      };
      const nodes = await until("ferry nodes to show all three alive in the directory", async () => {
        const l = await list();
        return l.every((n) => n.state === "alive") ? l : undefined;
      });
      assert.deepEqual(nodes.map((n) => n.name), ["n1", "n2", "n3"]);
      const pids = new Map(nodes.map((n) => [n.name, n.os_pid as number]));
      for (const [name, pid] of pids) {
        assert.ok(Number.isInteger(pid) && pid !== up.pid && alive(pid), `${name}: os_pid ${pid}`);
      }
      assert.equal(new Set(pids.values()).size, 3, "each node is a process of its own");

      process.kill(pids.get("n2") as number, "SIGKILL");
      await until("ferry up to say n2 ended", () => (/node n2 \(os pid \d+\) exited unexpectedly \(signal SIGKILL\)/.test(err) ? true : undefined));
      // The embedded directory, in ferry up itself, outlives the node: n2 is declared dead once its lease runs out.
      const after_kill = await until("n2 declared dead", async () => {
        const l = await list();
        return l.find((n) => n.name === "n2")?.state === "dead" ? l : undefined;
      });
      assert.deepEqual(after_kill.map((n) => [n.name, n.up, n.state]), [["n1", true, "alive"], ["n2", false, "dead"], ["n3", true, "alive"]]);
      assert.match(err, /directory: node n2 is dead \(node n2 did not renew its lease/);
      // The others still serve: a program runs on n3 and ends well, asked through n1.
      const ran = await ferry(["run", "--cluster", cluster, "--node", "n3", "--attach", path.join(EXAMPLES, "c", "compute.wasm"), "2"], { env: { FERRY_HOME: home } });
      assert.equal(ran.status, 0, ran.stderr.toString());
      assert.match(ran.stdout.toString(), /done rounds=2/);
      assert.equal(up.exitCode, null, "ferry up keeps running");

      up.kill("SIGINT");
      await up_exited;
      assert.equal(up.exitCode, 0, err);
      for (const [name, pid] of pids) assert.equal(alive(pid), false, `node ${name} (os pid ${pid}) was left running`);
    } finally {
      if (up.exitCode === null && up.signalCode === null) {
        up.kill("SIGKILL");
        await up_exited;
      }
      fs.rmSync(home, { recursive: true, force: true });
    }
  });
});

describe("ferry up --restart", () => {
  it("starts a node killed with kill -9 again on its data directory once it is declared dead: a new os_pid, its pids and output kept, the next pid new; Ctrl-C stops the restarted node too", async () => {
    const home = tempDir("up-restart");
    const [port] = (await freePorts(1)) as [number];
    const env = { ...process.env, FERRY_HOME: home };
    const cluster = `127.0.0.1:${port}`;
    const up: ChildProcess = spawn(process.execPath, [FERRY, "up", "--nodes", "2", "--port", String(port), "--dead-after", "2000", "--restart", "--balance", "off"], { stdio: ["ignore", "pipe", "pipe"], env });
    let out = "";
    let err = "";
    up.stdout?.on("data", (c: Buffer) => (out += c.toString()));
    up.stderr?.on("data", (c: Buffer) => (err += c.toString()));
    const up_exited = new Promise<void>((r) => up.once("exit", () => r()));
    const cli = async (args: string[]): Promise<string> => {
      const r = await ferry([...args.slice(0, 1), "--cluster", cluster, ...args.slice(1)], { env: { FERRY_HOME: home } });
      assert.equal(r.status, 0, `ferry ${args.join(" ")}: ${r.stderr.toString()}`);
      return r.stdout.toString();
    };
    const nodes = async (): Promise<{ name: string | null; state: string | null; os_pid: number | null }[]> => JSON.parse(await cli(["nodes", "--json"])) as { name: string | null; state: string | null; os_pid: number | null }[];
    const os_pids: number[] = [];
    try {
      await until("ferry up to be up", () => (out.includes("cluster of 2 up") ? true : up.exitCode !== null ? Promise.reject(new Error(`ferry up ended: ${out}${err}`)) : undefined), 60_000);
      const before = await until("both nodes alive", async () => {
        const l = await nodes();
        return l.length === 2 && l.every((n) => n.state === "alive") ? l : undefined;
      });
      os_pids.push(...before.map((n) => n.os_pid as number));
      const first = (JSON.parse(await cli(["run", "--json", "--node", "n2", path.join(EXAMPLES, "c", "compute.wasm"), "2"])) as { pid: string }).pid;
      await cli(["wait", first]);
      const first_out = await cli(["logs", first]);
      assert.match(first_out, /done rounds=2/);

      const old_n2 = before.find((n) => n.name === "n2")?.os_pid as number;
      process.kill(old_n2, "SIGKILL");
      await until("ferry up to say it restarts n2", () => (/node n2 \(os pid \d+\) exited unexpectedly \(signal SIGKILL\); the other nodes keep serving\. It is restarted on its data directory in 3000 ms/.test(err) ? true : undefined));
      await until("ferry up to say n2 is back", () => (/node n2 restarted \(os pid \d+\)/.test(err) ? true : undefined), 60_000);
      const back = await until("n2 alive again, as another OS process", async () => {
        const l = await nodes();
        const n2 = l.find((n) => n.name === "n2");
        return n2?.state === "alive" && n2.os_pid !== old_n2 ? n2 : undefined;
      }, 60_000);
      os_pids.push(back.os_pid as number);
      assert.match(err, /directory: node n2 is dead/, "it came back after the cluster declared it dead");
      assert.equal(await cli(["logs", first]), first_out, "the output of a process it ran before is kept");
      const second = (JSON.parse(await cli(["run", "--json", "--node", "n2", path.join(EXAMPLES, "c", "compute.wasm"), "1"])) as { pid: string }).pid;
      const number = (pid: string): number => Number(/^n2-(\d+)$/.exec(pid)?.[1]);
      assert.ok(number(second) > number(first), `a new pid after the restart: ${first}, then ${second}`);
      await cli(["wait", second]);

      up.kill("SIGINT");
      await up_exited;
      assert.equal(up.exitCode, 0, err);
      for (const pid of os_pids) assert.equal(alive(pid), false, `node os pid ${pid} was left running`);
    } finally {
      if (up.exitCode === null && up.signalCode === null) {
        up.kill("SIGKILL");
        await up_exited;
      }
      fs.rmSync(home, { recursive: true, force: true });
    }
  });
});

describe("a node restarted on its data directory", () => {
  it("keeps its pids (the next is new) and its output logs, and shows the process that ran when it died as lost", async () => {
    const dir = tempDir("restart");
    const [port] = (await freePorts(1)) as [number];
    let n1 = await startNode("n1", port, [], dir);
    try {
      const sha = await upload(n1.address, sleeper);
      const done = await run(n1.address, sha, "sleeper.wasm", ["0", "3"]);
      assert.deepEqual((await json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${done.pid}/wait`)).status, { kind: "exit", code: 0 });
      const done_out = await outputOf(n1.address, done.pid);
      const busy = await run(n1.address, sha, "sleeper.wasm", ["20", "100000"]);
      const seen = await until("output of the running process", async () => {
        const o = (await outputOf(n1.address, busy.pid)).stdout.toString();
        return o.includes("tick 5\n") ? o : undefined;
      });

      await crash(n1);
      n1 = await startNode("n1", port, [], dir);

      const list = await json<Info[]>(n1.address, "GET", "/v1/processes");
      assert.deepEqual(list.map((p) => p.pid), [done.pid, busy.pid]);
      const [a, b] = list as [Info, Info];
      assert.equal(a.state, "exited");
      assert.deepEqual(a.exit, { kind: "exit", code: 0 });
      assert.deepEqual(await outputOf(n1.address, done.pid), done_out, "an ended process's output is kept whole");
      assert.equal(b.state, "failed");
      assert.equal(b.exit?.kind, "lost");
      assert.match(b.exit?.message ?? "", /node n1 stopped while n1-2 ran there/);
      assert.deepEqual((await json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${busy.pid}/wait`)).status, b.exit);
      const kept = (await outputOf(n1.address, busy.pid)).stdout.toString();
      assert.ok(kept.startsWith(seen), "what the lost process wrote is kept, not truncated");

      // A new process gets a pid never given out before, and its own log.
      const next = await run(n1.address, sha, "sleeper.wasm", ["0", "2"]);
      assert.equal(next.pid, "n1-3");
      await json(n1.address, "GET", `/v1/processes/${next.pid}/wait`);
      assert.match((await outputOf(n1.address, next.pid)).stdout.toString(), /tick 2\n/);
      assert.deepEqual(await outputOf(n1.address, done.pid), done_out);
    } finally {
      await stopNode(n1);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("killed right after many changes (starts, ends, kills: journalled, not rewritten whole) keeps every one of them, and gives out no pid twice", async () => {
    const dir = tempDir("restart-many");
    const [port] = (await freePorts(1)) as [number];
    let n1 = await startNode("n1", port, [], dir);
    try {
      const sha = await upload(n1.address, sleeper);
      // Quick ones that end by themselves, and long ones, some of them killed; started a few at a time.
      const kinds = Array.from({ length: 36 }, (_, i) => (i % 3 === 0 ? "long" : "quick"));
      const pids: string[] = new Array(kinds.length);
      let next = 0;
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          for (let i = next++; i < kinds.length; i = next++) {
            pids[i] = (await run(n1.address, sha, "sleeper.wasm", kinds[i] === "long" ? ["20", "100000"] : ["0", "1"])).pid;
          }
        }),
      );
      assert.equal(new Set(pids).size, kinds.length, "each start got a pid of its own");
      const quick = pids.filter((_, i) => kinds[i] === "quick");
      const long = pids.filter((_, i) => kinds[i] === "long");
      const killed = long.slice(0, 6);
      for (const pid of quick) assert.deepEqual((await json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${pid}/wait`)).status, { kind: "exit", code: 0 });
      for (const pid of killed) assert.equal((await json<{ status: { kind: string } }>(n1.address, "DELETE", `/v1/processes/${pid}`)).status.kind, "killed");
      const state = path.join(dir, "state");
      const journalled = fs.readdirSync(state).filter((f) => f.startsWith("node.journal.")).reduce((n, f) => n + fs.readFileSync(path.join(state, f), "utf8").split("\n").length - 1, 0);
      assert.ok(journalled >= pids.length, `the changes are in the journal (${journalled} lines)`);

      await crash(n1);
      n1 = await startNode("n1", port, [], dir);

      const list = await json<Info[]>(n1.address, "GET", "/v1/processes");
      assert.deepEqual(list.map((p) => p.pid).sort(), [...pids].sort(), "every process, once");
      const by = new Map(list.map((p) => [p.pid, p]));
      for (const pid of quick) assert.deepEqual(by.get(pid)?.exit, { kind: "exit", code: 0 }, pid);
      for (const pid of killed) assert.equal(by.get(pid)?.state, "killed", pid);
      for (const pid of long.slice(6)) assert.equal(by.get(pid)?.exit?.kind, "lost", `${pid} ran when the node died`);
      const again = await run(n1.address, sha, "sleeper.wasm", ["0", "1"]);
      assert.equal(again.pid, `n1-${pids.length + 1}`, "the next pid is one never given out");
      await json(n1.address, "GET", `/v1/processes/${again.pid}/wait`);
    } finally {
      await stopNode(n1);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("as the home of a process running elsewhere: the old output stays, the rest is appended, and its end is taken from where it runs", async () => {
    const cluster = await startCluster(["n1", "n2"]);
    let [n1, n2] = cluster.nodes as [NodeProc, NodeProc];
    try {
      const sha = await upload(n1.address, sleeper);
      await upload(n2.address, sleeper);
      const args = ["30", "150"];
      const calm = await run(n2.address, sha, "sleeper.wasm", args);
      const { pid } = await run(n1.address, sha, "sleeper.wasm", args);
      const moved = await request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to: "n2", strategy: "pre-copy" });
      assert.equal(moved.status, 200, moved.body.toString());
      await until("output relayed from n2", async () => ((await outputOf(n1.address, pid)).stdout.toString().includes("tick 10\n") ? true : undefined));

      await crash(n1);
      n1 = await startNode("n1", Number(n1.address.split(":")[1]), [n2.address], path.join(cluster.dir, "n1"));
      cluster.nodes[0] = n1;

      const { status } = await json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${pid}/wait`);
      assert.deepEqual(status, { kind: "exit", code: 0 });
      const info = await json<Info>(n1.address, "GET", `/v1/processes/${pid}`);
      assert.equal(info.node, "n2");
      await json(n2.address, "GET", `/v1/processes/${calm.pid}/wait`);
      assert.equal((await outputOf(n1.address, pid)).stdout.toString(), (await outputOf(n2.address, calm.pid)).stdout.toString(), "each byte once, in order, across the home's restart");
    } finally {
      await cluster.stop();
    }
  });
});

describe("peers", () => {
  it("a node ignores its own address in --peers: every node listed once, every process once", async () => {
    const ports = await freePorts(2);
    const all = ports.map((p) => `127.0.0.1:${p}`);
    const dir = tempDir("self-peer");
    const nodes: NodeProc[] = [];
    try {
      for (const [i, p] of ports.entries()) nodes.push(await startNode(`n${i + 1}`, p, all, path.join(dir, `n${i + 1}`)));
      const [n1, n2] = nodes as [NodeProc, NodeProc];
      for (const n of nodes) {
        const list = await json<{ name: string | null; up: boolean }[]>(n.address, "GET", "/v1/nodes");
        assert.deepEqual(list.map((x) => x.name).sort(), ["n1", "n2"], JSON.stringify(list));
        assert.ok(list.every((x) => x.up));
        const self = await json<{ peers: string[] }>(n.address, "GET", "/v1/node");
        assert.deepEqual(self.peers, all.filter((a) => a !== n.address));
      }
      const sha = await upload(n2.address, sleeper);
      const { pid } = await run(n2.address, sha, "sleeper.wasm", ["0", "1"]);
      await json(n1.address, "GET", `/v1/processes/${pid}/wait`);
      const listed = await json<Info[]>(n1.address, "GET", "/v1/processes");
      assert.equal(listed.filter((p) => p.pid === pid).length, 1);
    } finally {
      for (const n of nodes) await stopNode(n);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("where a process runs, in move order", () => {
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  let n1: NodeProc;
  const sha: Record<string, string> = {};
  before(async () => {
    cluster = await startCluster(["n1", "n2", "n3"]);
    n1 = cluster.nodes[0] as NodeProc;
    for (const n of cluster.nodes) {
      sha["selfmove"] = await upload(n.address, selfmove);
      sha["sleeper"] = await upload(n.address, sleeper);
    }
  });
  after(() => cluster.stop());

  it("regression, the move/exit race: a process that ends right after a move has its end taken at its new node, never while the home still names the source", async () => {
    // Each guest moves itself along its route and ends the moment it arrives.
    // The home takes an end only from the node it has recorded, and the
    // source records the move before it lets go: so /wait can never answer
    // while `node` names a node the process left.
    const routes: { start: string; route: string[] }[] = [
      { start: "n1", route: ["n2"] }, // the home is the source
      { start: "n1", route: ["n2", "n3"] }, // the home is neither
      { start: "n2", route: ["n1"] }, // the home is the source, the destination remote
      { start: "n2", route: ["n3", "n2"] }, // back home
    ];
    for (let round = 0; round < 3; round += 1) {
      const pids = await Promise.all(routes.map(async (r) => ({ ...r, pid: (await run(n1.address, sha["selfmove"] as string, "selfmove.wasm", r.route, r.start)).pid })));
      for (const { pid, route } of pids) {
        const { status } = await json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${pid}/wait`);
        const info = await json<Info>(n1.address, "GET", `/v1/processes/${pid}`);
        const out = (await outputOf(n1.address, pid)).stdout.toString();
        assert.deepEqual(status, { kind: "exit", code: 0 }, out);
        assert.equal(info.node, route[route.length - 1], `${pid} (route ${route.join(" → ")}): ${out}`);
        assert.equal(info.moves, route.length);
      }
    }
  });

  it("a stale location update is refused, and an end is taken only from the runner at its move", async () => {
    const { pid } = await run(n1.address, sha["sleeper"] as string, "sleeper.wasm", ["100", "100000"]);
    for (const to of ["n2", "n3"]) {
      const r = await request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to, strategy: "stop-copy" });
      assert.equal(r.status, 200, r.body.toString());
    }
    const at = async (): Promise<Info> => json<Info>(n1.address, "GET", `/v1/processes/${pid}`);
    assert.deepEqual([(await at()).node, (await at()).moves], ["n3", 2]);
    const as = async (name: string, what: "location" | "exit", body: object): Promise<{ status: number; code: string | undefined }> => {
      const r = await request(n1.address, "POST", `/v1/internal/${what}/${pid}`, body, await dialerAs(name));
      return { status: r.status, code: r.status >= 400 ? (JSON.parse(r.body.toString()) as { error: { code: string } }).error.code : undefined };
    };
    // The move to n2, told again late (by its source, or by anyone): older than what is recorded.
    assert.deepEqual(await as("n1", "location", { node: "n2", moves: 1 }), { status: 409, code: "ERR_LOCATION_STALE" });
    assert.deepEqual(await as("n2", "location", { node: "n1", moves: 1 }), { status: 409, code: "ERR_LOCATION_STALE" });
    // The recorded move, repeated by its source (a retry whose answer was lost): done, nothing changes.
    assert.deepEqual(await as("n2", "location", { node: "n3", moves: 2 }), { status: 200, code: undefined });
    // The recorded move to somewhere else: it contradicts the record.
    assert.deepEqual(await as("n3", "location", { node: "n1", moves: 2 }), { status: 409, code: "ERR_LOCATION_STALE" });
    // The next move, told by a node that does not run it.
    assert.deepEqual(await as("n2", "location", { node: "n2", moves: 3 }), { status: 403, code: "ERR_FORBIDDEN" });
    // A move past the next: held back (its sender retries).
    assert.deepEqual(await as("n3", "location", { node: "n1", moves: 4 }), { status: 409, code: "ERR_LOCATION_PENDING" });
    // Ends: only from the runner, at its move, and only for itself.
    assert.deepEqual(await as("n2", "exit", { status: { kind: "exit", code: 0 }, node: "n2", moves: 1 }), { status: 409, code: "ERR_NOT_RUNNER" });
    assert.deepEqual(await as("n3", "exit", { status: { kind: "exit", code: 0 }, node: "n3", moves: 1 }), { status: 409, code: "ERR_NOT_RUNNER" });
    assert.deepEqual(await as("n2", "exit", { status: { kind: "exit", code: 0 }, node: "n3", moves: 2 }), { status: 403, code: "ERR_FORBIDDEN" });
    const still = await at();
    assert.deepEqual([still.node, still.moves, still.state, still.exit], ["n3", 2, "running", null]);
    const killed = await request(n1.address, "DELETE", `/v1/processes/${pid}`);
    assert.equal(killed.status, 200, killed.body.toString());
    assert.deepEqual((JSON.parse(killed.body.toString()) as { status: unknown }).status, { kind: "killed" });
  });
});
