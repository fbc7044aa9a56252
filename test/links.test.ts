/**
 * Links between processes (issue 5), on node daemons that are separate OS
 * processes on 127.0.0.1: messages arrive exactly once and in order while
 * senders and receivers are migrated at random moments, a pipeline gives the
 * same result moved as unmoved, and a guest that moves itself lands where it
 * asked. The guests check order themselves and exit 1 at the first gap or
 * repeat; their checksums must match an undisturbed run's. Guests that are
 * moved run with --hold (examples/c/hold.h): they stop before their last
 * message until the test releases them, so every move finds them running,
 * however slow the machine; the moments of the moves are still random.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { remotePagesAvailability } from "../src/memory/mod.js";
import { EXAMPLES, ferry, prng, testSeed, until } from "./_helpers.js";
import { json, outputOf, request, startCluster, upload, type NodeProc } from "./_cluster.js";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const STRATEGIES = remotePagesAvailability().available ? ["stop-copy", "pre-copy", "post-copy", "hybrid"] : ["stop-copy", "pre-copy"];
const NAMES = ["n1", "n2", "n3"];

interface Info {
  pid: string;
  node: string;
  state: string;
}

describe("links between processes", () => {
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  let n1: NodeProc;
  const sha: Record<string, string> = {};
  before(async () => {
    cluster = await startCluster(NAMES);
    n1 = cluster.nodes[0] as NodeProc;
    for (const name of ["pingpong", "pipeline", "selfmove", "ponger"]) {
      const file = path.join(EXAMPLES, name === "ponger" ? "as" : "c", `${name}.wasm`);
      for (const n of cluster.nodes) sha[name] = await upload(n.address, file);
    }
  });
  after(() => cluster.stop());

  async function start(program: string, args: string[], node: string): Promise<string> {
    return (await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha[program], module_name: `${program}.wasm`, args, node })).pid;
  }

  async function finish(pid: string): Promise<string> {
    const { status } = await json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${pid}/wait`);
    const out = await outputOf(n1.address, pid);
    assert.deepEqual(status, { kind: "exit", code: 0 }, `${pid}: ${out.stderr.toString()}`);
    return out.stdout.toString();
  }

  /** Moves `pid`, which is held (it cannot have ended), to another node with the next strategy. */
  async function move(pid: string, i: number, random: () => number): Promise<void> {
    const info = await json<Info>(n1.address, "GET", `/v1/processes/${pid}`);
    const others = NAMES.filter((n) => n !== info.node);
    const to = others[Math.floor(random() * others.length)] as string;
    const strategy = STRATEGIES[i % STRATEGIES.length] as string;
    const r = await request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to, strategy });
    assert.equal(r.status, 200, `${strategy} of ${pid} to ${to}: ${r.body.toString()}`);
  }

  /** Lets a guest started with --hold go on to its end. */
  async function release(pid: string): Promise<void> {
    const r = await request(n1.address, "POST", `/v1/processes/${pid}/send`, { data: "release" });
    assert.equal(r.status, 200, `release of ${pid}: ${r.body.toString()}`);
  }

  /** Waits a random moment: where in the traffic a move lands varies from run to run (nothing waits on it). */
  const pause = (random: () => number, ms: number): Promise<void> => sleep(30 + random() * ms);

  it("a ping-pong pair exchanges 100k numbered messages while each is migrated 5 times at random moments, sometimes both at once: no gap, no repeat, order kept", async () => {
    const seed = testSeed();
    const random = prng(seed);
    const N = "100000";
    const pong = await start("pingpong", ["pong", N], "n1");
    // Held before its last ping, so pong waits for it: both run until released, however long the moves take.
    const ping = await start("pingpong", ["--hold", "ping", pong, N, "32"], "n2");
    const moves = { [ping]: 0, [pong]: 0 };
    let both = 0;
    for (let i = 0; moves[ping]! < 5 || moves[pong]! < 5; i += 1) {
      await pause(random, 200);
      if (i % 3 === 2) {
        // Both at once, with messages in flight between them (while the traffic lasts).
        await Promise.all([move(ping, i, random), move(pong, i + 1, random)]);
        moves[ping]! += 1;
        moves[pong]! += 1;
        both += 1;
        continue;
      }
      const pid = moves[ping]! < moves[pong]! || (moves[ping] === moves[pong] && random() < 0.5) ? ping : pong;
      await move(pid, i, random);
      moves[pid]! += 1;
    }
    assert.ok(both >= 1, `no move of both at once happened (seed ${seed})`);
    await release(ping);
    const [a, b] = [await finish(ping), await finish(pong)];
    const sum = /ping done n=100000 checksum=([0-9a-f]{16})/.exec(a)?.[1];
    assert.ok(sum !== undefined, a);
    assert.match(b, new RegExp(`pong done n=100000 checksum=${sum}`));
    // An undisturbed pair on one node says the same.
    const calm_pong = await start("pingpong", ["pong", N], "n3");
    const calm_ping = await start("pingpong", ["ping", calm_pong, N, "32"], "n3");
    assert.equal(await finish(calm_ping), a);
    assert.equal(await finish(calm_pong), b);
    // The pair's traffic is in the statistics, both ways.
    const links = await json<{ from: string; to: string; messages: number }[]>(n1.address, "GET", "/v1/links");
    assert.equal(links.find((l) => l.from === ping && l.to === pong)?.messages, 100000);
    assert.equal(links.find((l) => l.from === pong && l.to === ping)?.messages, 100000);
  });

  it("an AssemblyScript peer (examples/as/ferry.ts) answers a C one across nodes, moved on the way", async () => {
    const N = "20000";
    const pong = await start("ponger", [N], "n3");
    // Held before its last ping: the AssemblyScript pong waits for it, so it is there to be moved.
    const ping = await start("pingpong", ["--hold", "ping", pong, N, "16"], "n1");
    // Moved once half the pings are answered: on the way, whatever the machine's speed.
    await until(`${ping} to get half its answers`, async () => (await outputOf(n1.address, ping)).stdout.toString().includes("ping 10000\n"), 600_000);
    await move(pong, 0, () => 0);
    await release(ping);
    const a = await finish(ping);
    const b = await finish(pong);
    const sum = /ping done n=20000 checksum=([0-9a-f]{16})/.exec(a)?.[1];
    assert.ok(sum !== undefined, a);
    assert.match(b, new RegExp(`pong done n=20000 checksum=${sum}\n$`));
  });

  it("a pair that talks across nodes goes by its workers' lanes, and loses nothing when either moves", async () => {
    /** Deliveries on lanes their receivers took, all nodes together (`GET /v1/links?inspect=1`). */
    const laned = async (): Promise<number> => {
      let n = 0;
      for (const node of cluster.nodes) n += (await json<{ lanes: { taken: number } }>(node.address, "GET", "/v1/links?inspect=1")).lanes.taken;
      return n;
    };
    const N = 6000;
    const before = await laned();
    const pong = await start("pingpong", ["pong", String(N)], "n1");
    // One message in flight: a request and its answer, as a lane carries best. Held before its last ping, so both stay to be moved.
    const ping = await start("pingpong", ["--hold", "ping", pong, String(N), "1"], "n2");
    await until("the pair's messages to go by lanes", async () => (await laned()) - before >= 200, 120_000);
    // Each move lands while the pair talks; on the new node its lanes open again, to where the other one is now.
    // n1 to n3 (the other nodes in order: n2, n3), then n2 to n1: the two are never on one node.
    await move(pong, 1, () => 0.99);
    let seen = await laned();
    await until("lanes to the moved pong", async () => (await laned()) - seen >= 200, 120_000);
    // ping's own lane went to n1, where pong was: it is opened again, to n3.
    const n2 = cluster.nodes[1] as NodeProc;
    await until("ping's lane to n3", async () => {
      const open = (await json<{ lanes: { open: { pid: string; node: string; taken: number }[] } }>(n2.address, "GET", "/v1/links?inspect=1")).lanes.open;
      return open.some((l) => l.pid === ping && l.node === "n3" && l.taken > 0);
    }, 120_000);
    await move(ping, 2, () => 0);
    seen = await laned();
    await until("lanes from the moved ping", async () => (await laned()) - seen >= 200, 120_000);
    await release(ping);
    const [a, b] = [await finish(ping), await finish(pong)];
    const sum = new RegExp(`ping done n=${N} checksum=([0-9a-f]{16})`).exec(a)?.[1];
    assert.ok(sum !== undefined, a);
    assert.match(b, new RegExp(`pong done n=${N} checksum=${sum}`));
    const calm_pong = await start("pingpong", ["pong", String(N)], "n3");
    const calm_ping = await start("pingpong", ["ping", calm_pong, String(N), "1"], "n3");
    assert.equal(await finish(calm_ping), a);
    assert.equal(await finish(calm_pong), b);
    // Most of the 2N messages went by lanes (those before a lane opens, and around each move, go through the nodes).
    const share = ((await laned()) - before) / (2 * N);
    assert.ok(share > 0.5, `only ${(share * 100).toFixed(0)}% of the messages went by lanes`);
  });

  it("a 4-stage pipeline whose stages are migrated repeatedly gives the result of an undisturbed one", async () => {
    const random = prng(testSeed() + 1);
    const N = "150000";
    const run = async (nodes: string[], hold: string[]): Promise<string[]> => {
      const sink = await start("pipeline", ["3", "-", N], nodes[3]!);
      const s2 = await start("pipeline", ["2", sink, N], nodes[2]!);
      const s1 = await start("pipeline", ["1", s2, N], nodes[1]!);
      // A held source keeps back the last item, so every later stage waits for it until released.
      const source = await start("pipeline", [...hold, "0", s1, N], nodes[0]!);
      return [source, s1, s2, sink];
    };
    const calm = await run(["n1", "n1", "n1", "n1"], []);
    const want = await Promise.all(calm.map(finish));
    const stages = await run(["n1", "n2", "n3", "n1"], ["--hold"]);
    for (let i = 0; i < 12; i += 1) {
      await pause(random, 200);
      await move(stages[1 + (i % 3)]!, i, random);
    }
    await release(stages[0]!);
    assert.deepEqual(await Promise.all(stages.map(finish)), want);
  });

  it("a guest that asks to move itself ends up on the node it asked for", async () => {
    const pid = await start("selfmove", ["n2", "n3", "n1", "nowhere"], "n1");
    const { status } = await json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${pid}/wait`);
    const out = (await outputOf(n1.address, pid)).stdout.toString().trim().split("\n");
    assert.equal(out.length, 4, out.join("\n"));
    for (const [i, node] of ["n2", "n3", "n1"].entries()) assert.match(out[i]!, new RegExp(`^move ${i + 1} to ${node}: arrived \\(errno 0\\)`));
    assert.match(out[3]!, /^move 4 to nowhere: failed \(errno 44\)/, "a node that does not exist is ENOENT");
    assert.deepEqual(status, { kind: "exit", code: 1 });
    // Where it went is where the cluster saw it: once more, to n3, and it stays.
    const again = await start("selfmove", ["n3"], "n1");
    await json(n1.address, "GET", `/v1/processes/${again}/wait`);
    const info = await json<Info & { exit: unknown }>(n1.address, "GET", `/v1/processes/${again}`);
    assert.equal(info.node, "n3");
    assert.deepEqual(info.exit, { kind: "exit", code: 0 });
  });

  it("ferry send delivers a message from outside to a process, wherever it runs", async () => {
    const sink = await start("pipeline", ["3", "-", "2"], "n2");
    const send = (body: object): Promise<{ status: number; body: Buffer }> => request(n1.address, "POST", `/v1/processes/${sink}/send`, body);
    const cli = await ferry(["send", "--cluster", n1.address, sink, "1 10"]);
    assert.equal(cli.status, 0, cli.stderr.toString());
    // It waits for its second item: running, wherever it is moved.
    await move(sink, 0, () => 0);
    assert.equal((await send({ data_base64: Buffer.from("2 20").toString("base64") })).status, 200);
    const out = await finish(sink);
    assert.match(out, /^sink done items=2 checksum=[0-9a-f]{16}\n$/);
    const r = await send({ data: "3 30" });
    assert.equal(r.status, 409, `a process that ended takes no messages: ${r.body.toString()}`);
    const late = await ferry(["send", "--cluster", n1.address, sink, "3 30"]);
    assert.equal(late.status, 125);
    assert.match(late.stderr.toString(), /ERR_PROCESS_ENDED/);
    // ferry links lists the pairs the earlier tests made, busiest first.
    const links = await ferry(["links", "--cluster", n1.address]);
    assert.equal(links.status, 0, links.stderr.toString());
    const lines = links.stdout.toString().trimEnd().split("\n");
    assert.match(lines[0]!, /^FROM +TO +MESSAGES +BYTES +RATE$/);
    assert.match(lines[1]!, /^\S+ +\S+ +1[05]0000 +\d+ +[\d.]+\/s$/);
  });
});
