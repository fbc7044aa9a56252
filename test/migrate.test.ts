/**
 * Live migration between node daemons that are separate OS processes on
 * 127.0.0.1: a process moved ten times writes what an uninterrupted run
 * writes; a destination that dies, a link cut mid-round, and a destination
 * lacking a file all leave the process running at the source, output intact.
 * A guest the test acts on runs with --hold (examples/c/hold.h): it stops
 * before its end until the test sends it "release", so it cannot end before
 * the test's last move, however slow the machine.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { kernelTrackerAvailability, remotePagesAvailability } from "../src/memory/mod.js";
import { nativeBulkAvailable, SMALL_MEMORY_BYTES_MAX, stopCostMs } from "../src/migration/mod.js";
import { EXAMPLES, ferry, tempDir, until } from "./_helpers.js";
import { json, outputOf, proxiedPair, request, runsOn, startCluster, upload, type NodeProc } from "./_cluster.js";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** How long an uninterrupted reference run (ferry exec) may take: a 6 MiB fileproc took over the default 2 minutes on a busy machine. */
const REFERENCE_TIMEOUT_MS = 600_000;

/** Lets a guest started with --hold, asked at `address`, go on to its end. */
async function release(address: string, pid: string): Promise<void> {
  const r = await request(address, "POST", `/v1/processes/${pid}/send`, { data: "release" });
  assert.equal(r.status, 200, `release of ${pid}: ${r.body.toString()}`);
}
// Post-copy and hybrid join the rotation wherever userfaultfd can serve them (test/postcopy.test.ts says why not).
const STRATEGIES = remotePagesAvailability().available ? ["stop-copy", "pre-copy", "post-copy", "hybrid"] : ["stop-copy", "pre-copy"];

interface Info {
  pid: string;
  node: string;
  state: string;
}

function input(file: string, bytes: number): void {
  const buf = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 1) buf[i] = (i * 2654435761) >>> 27;
  fs.writeFileSync(file, buf);
}

describe("migration between nodes", () => {
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  let nodes: NodeProc[] = [];
  const work = tempDir("migrate");
  before(async () => {
    cluster = await startCluster(["n1", "n2", "n3"]);
    nodes = cluster.nodes;
  });
  after(async () => {
    await cluster.stop();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it("a process migrated 10 times across 3 nodes, rotating through the strategies, writes what an uninterrupted run writes", async () => {
    const plain = path.join(work, "plain");
    const moved = path.join(work, "moved");
    for (const d of [plain, moved]) {
      fs.mkdirSync(d);
      input(path.join(d, "in.bin"), 6 * 1024 * 1024);
    }
    const module = path.join(EXAMPLES, "c", "fileproc.wasm");
    // Held once its input is read, so the moves cannot outlast it; outside a cluster (ferry exec) it does not wait.
    const args = ["--hold", "/data/in.bin", "/data/out.bin", "4096"];
    const whole = await ferry(["exec", "--dir", `${plain}:/data`, module, ...args], { timeout_ms: REFERENCE_TIMEOUT_MS });
    assert.equal(whole.status, 0, whole.stderr.toString());

    const [n1] = nodes as [NodeProc];
    const sha = await upload(n1.address, module);
    const { pid } = await json<{ pid: string }>(n1.address, "POST", "/v1/processes", {
      module_sha256: sha,
      module_name: "fileproc.wasm",
      args,
      dirs: [{ host: moved, guest: "/data" }],
    });
    const names = ["n2", "n3", "n1"];
    for (let i = 0; i < 10; i += 1) {
      const to = names[i % 3] as string;
      const strategy = STRATEGIES[i % STRATEGIES.length] as string;
      await sleep(60); // it gets on with its work between moves (while there is some left): nothing waits on this
      const via = nodes[(i * 7) % 3] as NodeProc; // any node answers
      const r = await request(via.address, "POST", `/v1/processes/${pid}/migrate`, { to, strategy, max_downtime_ms: 50 });
      assert.equal(r.status, 200, `move ${i + 1} to ${to} (${strategy}): ${r.body.toString()}`);
      const { metrics } = JSON.parse(r.body.toString()) as { metrics: { strategy: string; downtime_ms: number; rounds: number } };
      assert.equal(metrics.strategy, strategy);
      if (strategy === "pre-copy") assert.ok(metrics.rounds >= 1);
      const list = await json<Info[]>(nodes[(i + 1) % 3]!.address, "GET", "/v1/processes");
      const me = list.find((p) => p.pid === pid);
      assert.equal(me?.node, to, `ps does not show ${pid} on ${to} after move ${i + 1}`);
    }
    await release(n1.address, pid);
    const { status } = await json<{ status: unknown }>(nodes[2]!.address, "GET", `/v1/processes/${pid}/wait`);
    assert.deepEqual(status, { kind: "exit", code: whole.status });
    const out = await outputOf(n1.address, pid);
    assert.equal(out.stdout.toString(), whole.stdout.toString(), "stdout differs");
    assert.equal(out.stderr.toString(), whole.stderr.toString(), "stderr differs");
    assert.ok(fs.readFileSync(path.join(moved, "out.bin")).equals(fs.readFileSync(path.join(plain, "out.bin"))), "output file differs");
  });

  it("pre-copy's first round goes on the record connection while memhog rewrites all of its memory, and every byte arrives: it verifies them and writes what an uninterrupted run writes", async () => {
    // 48 MiB read, checked and rewritten at 48 MiB/s: the native thread reads
    // pages as the guest writes them, so a page torn in the first round that
    // no later round sent again changes its output. Held after its last
    // second until released after the moves (examples/c/hold.h).
    const module = path.join(EXAMPLES, "c", "memhog.wasm");
    const args = ["--hold", "48", "48", "8"];
    const whole = ferry(["exec", module, ...args], { timeout_ms: REFERENCE_TIMEOUT_MS });
    const [n1] = nodes as [NodeProc];
    const sha = await upload(n1.address, module);
    const { pid } = await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "memhog.wasm", args });
    await until(`${pid} to touch its memory`, async () => (await outputOf(n1.address, pid)).stdout.includes("\n"));
    // Where the source has the native record stream and the kernel's tracker (both tested on their own elsewhere).
    const expected = nativeBulkAvailable() && kernelTrackerAvailability().available ? "records" : "frames";
    let checked = 0;
    for (const to of ["n2", "n3", "n1", "n2"]) {
      // Uncompressed: on a loaded machine the rate an earlier move confirmed may be low enough for `auto` to compress, and a round that compresses goes as frames.
      const r = await request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to, strategy: "pre-copy", max_downtime_ms: 50, compress: "off" });
      assert.equal(r.status, 200, `pre-copy to ${to}: ${r.body.toString()}`);
      const { metrics } = JSON.parse(r.body.toString()) as { metrics: { first_round?: string; rounds: number; dirty_pages: number[] } };
      assert.equal(metrics.first_round, expected, JSON.stringify(metrics));
      // Its seconds of writes may be over before the last moves on a loaded machine: it says so on its output, which
      // the move flushed to its home at the stop. Looked at after the move: a last second that ended while the move
      // started (seen as still writing before it) left the round nothing to find.
      const seconds = args[3] as string;
      const writing = !(await outputOf(n1.address, pid)).stdout.includes(`second ${seconds}/${seconds}`);
      if (writing) checked += 1;
      if (writing) assert.ok(metrics.rounds >= 2 && (metrics.dirty_pages[1] ?? 0) > 0, `the guest wrote nothing during the first round: ${JSON.stringify(metrics)}`);
    }
    // The first move starts well within its seconds of writes.
    assert.ok(checked >= 1, "every move came after the guest's writes");
    // `ferry migrate` says so too.
    const moved = await ferry(["migrate", "--cluster", n1.address, pid, "--to", "n3", "--strategy", "pre-copy", "--compress", "off"]);
    assert.equal(moved.status, 0, moved.stderr.toString());
    assert.equal(moved.stdout.toString().includes("the first round went on the record connection"), expected === "records", moved.stdout.toString());
    await release(n1.address, pid);
    const { status } = await json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${pid}/wait`);
    assert.deepEqual(status, { kind: "exit", code: 0 });
    const out = (await outputOf(n1.address, pid)).stdout.toString();
    assert.match(out, /verify OK/);
    const reference = await whole;
    assert.equal(reference.status, 0, reference.stderr.toString());
    assert.equal(out, reference.stdout.toString(), "memhog's output differs from an uninterrupted run");
  });

  it("ferry migrate --json says where the time went: the source's phases add up to the total, the destination's are there too", async () => {
    const [n1] = nodes as [NodeProc];
    const sha = await upload(n1.address, path.join(EXAMPLES, "c", "sleeper.wasm"));
    const { pid } = await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "sleeper.wasm", args: ["20", "100000"] });
    try {
      const moved = await ferry(["migrate", "--json", "--cluster", n1.address, pid, "--to", "n2", "--strategy", "stop-copy"]);
      assert.equal(moved.status, 0, moved.stderr.toString());
      const { metrics } = JSON.parse(moved.stdout.toString()) as { metrics: { total_ms: number; downtime_ms: number; phases_ms: Record<string, number>; destination_phases_ms: Record<string, number> } };
      const total = Object.values(metrics.phases_ms).reduce((n, ms) => n + ms, 0);
      for (const phase of ["connect", "prepare", "suspend", "flush", "encode", "transfer", "restore", "resumed"]) assert.equal(typeof metrics.phases_ms[phase], "number", `no ${phase} in ${moved.stdout.toString()}`);
      assert.ok(Math.abs(total - metrics.total_ms) < 0.5, `phases add up to ${total}, total_ms is ${metrics.total_ms}`);
      // From the stop to the restore: the downtime. After it, the time the process had run at n2 when its RUNNING came.
      const stopped = ["suspend", "flush", "capture", "encode", "transfer", "restore"].reduce((n, p) => n + (metrics.phases_ms[p] ?? 0), 0);
      assert.ok(Math.abs(stopped - metrics.downtime_ms) < 0.5, `stopped phases add up to ${stopped}, downtime_ms is ${metrics.downtime_ms}`);
      for (const phase of ["admit", "standby", "decode", "restore", "resume"]) assert.equal(typeof metrics.destination_phases_ms[phase], "number", `no destination ${phase} in ${moved.stdout.toString()}`);
    } finally {
      await request(n1.address, "DELETE", `/v1/processes/${pid}`);
    }
  });

  it("stop-copy between nodes with TLS, of a small memory (pages inside the image) and of a larger one (pages sealed on a connection of their own): every block checks out after moves both ways", async () => {
    const [n1] = nodes as [NodeProc];
    const sha = await upload(n1.address, path.join(EXAMPLES, "c", "memhog.wasm"));
    // 1 MiB of blocks: a memory under SMALL_MEMORY_BYTES_MAX; 4 MiB: over it. Each rewrites 1 MiB a second for 3 s, then holds
    // until released after its moves, then checks every block.
    assert.ok(SMALL_MEMORY_BYTES_MAX > 2 * 1024 * 1024 - 1 && SMALL_MEMORY_BYTES_MAX < 4 * 1024 * 1024, "the sizes no longer straddle SMALL_MEMORY_BYTES_MAX");
    const pids: string[] = [];
    for (const mib of ["1", "4"]) {
      const { pid } = await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "memhog.wasm", args: ["--hold", mib, "1", "3"] });
      pids.push(pid);
      await until(`${pid} to touch its memory`, async () => (await outputOf(n1.address, pid)).stdout.toString().includes("touched"));
      for (const to of ["n2", "n1"]) {
        const r = await request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to, strategy: "stop-copy" });
        assert.equal(r.status, 200, `${pid} to ${to}: ${r.body.toString()}`);
      }
    }
    for (const pid of pids) {
      await release(n1.address, pid);
      const { status } = await json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${pid}/wait`);
      assert.deepEqual(status, { kind: "exit", code: 0 }, `${pid} did not end well`);
      assert.match((await outputOf(n1.address, pid)).stdout.toString(), /verify OK/);
    }
  });

  it("a process on a node sees no input as /dev/null and its output as pipes, on every node it moves to", async () => {
    const module = path.join(EXAMPLES, "c", "streams.wasm");
    const [n1] = nodes as [NodeProc];
    const sha = await upload(n1.address, module);
    // It reports once released: the move comes first.
    const { pid } = await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "streams.wasm", args: ["--hold", "1"] });
    const r = await request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to: "n2" });
    assert.equal(r.status, 200, r.body.toString());
    assert.equal((await outputOf(n1.address, pid)).stdout.length, 0, "the program reported before it was released");
    await release(n1.address, pid);
    const { status } = await json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${pid}/wait`);
    assert.deepEqual(status, { kind: "exit", code: 0 });
    const report = (await outputOf(n1.address, pid)).stdout.toString();
    assert.equal(report, "fd0 tty=0 type=chardev seek=1\nfd1 tty=0 type=pipe seek=0\nfd2 tty=0 type=pipe seek=0\n");
  });

  it("a migration to a node lacking an open file is refused before the process stops", async () => {
    const dir = path.join(work, "lacking");
    fs.mkdirSync(dir);
    input(path.join(dir, "in.bin"), 3 * 1024 * 1024);
    const module = path.join(EXAMPLES, "c", "fileproc.wasm");
    const [n1] = nodes as [NodeProc];
    const sha = await upload(n1.address, module);
    const { pid } = await json<{ pid: string }>(n1.address, "POST", "/v1/processes", {
      module_sha256: sha,
      module_name: "fileproc.wasm",
      // Held before its end, input still open, so it cannot be done before the migration is asked for.
      args: ["--hold", "/data/in.bin", "/data/out.bin"],
      dirs: [{ host: dir, guest: "/data" }],
    });
    // Its first line says the input's size: it has the input open (a fixed wait was too short on a busy machine).
    await until(`${pid} to read its input`, async () => (await outputOf(n1.address, pid)).stdout.length > 0);
    // The guest holds the input open; on the destination the path is gone.
    fs.renameSync(path.join(dir, "in.bin"), path.join(dir, "moved-away.bin"));
    const r = await request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to: "n2" });
    assert.equal(r.status, 409, r.body.toString());
    assert.match(r.body.toString(), /ERR_MISSING_FILE/);
    assert.match(r.body.toString(), /in\.bin/);
    const info = await json<Info>(n1.address, "GET", `/v1/processes/${pid}`);
    assert.equal(info.node, "n1");
    await release(n1.address, pid);
    const { status } = await json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${pid}/wait`);
    assert.deepEqual(status, { kind: "exit", code: 0 }, "the process did not finish normally at the source");
  });
});

describe("migration failures", () => {
  const work = tempDir("migrate-fail");
  after(() => fs.rmSync(work, { recursive: true, force: true }));
  const memhog = path.join(EXAMPLES, "c", "memhog.wasm");
  // Held after its 3 s of writes until the test has seen what it waits for; it does not wait under ferry exec.
  const args = ["--hold", "192", "16", "3"];

  /** Waits until memhog at its home `address` has printed its first line: its memory is touched. */
  const touched = (address: string, pid: string): Promise<true> =>
    until(`${pid} to touch its memory`, async () => (await outputOf(address, pid)).stdout.includes("\n"));
  /** Waits until `node` holds a standby: the migration is under way, its pages moving. */
  const standbyOn = (node: NodeProc): Promise<true> =>
    until(`a standby on ${node.name}`, async () => (await json<{ standbys: number }>(node.address, "GET", "/v1/node")).standbys >= 1);

  async function reference(): Promise<string> {
    const whole = await ferry(["exec", memhog, ...args], { timeout_ms: REFERENCE_TIMEOUT_MS });
    assert.equal(whole.status, 0, whole.stderr.toString());
    return whole.stdout.toString();
  }

  it("killing the destination mid-transfer leaves the process running at the source with intact output", async () => {
    const want = await reference();
    const cluster = await startCluster(["n1", "n2"]);
    try {
      const [n1, n2] = cluster.nodes as [NodeProc, NodeProc];
      const sha = await upload(n1.address, memhog);
      const { pid } = await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "memhog.wasm", args });
      await touched(n1.address, pid);
      const moving = request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to: "n2", strategy: "pre-copy" });
      await standbyOn(n2);
      n2.child.kill("SIGKILL");
      const r = await moving;
      assert.notEqual(r.status, 200, "the migration claims success with its destination dead");
      assert.match(r.body.toString(), /keeps running on the source/);
      const info = await json<Info>(n1.address, "GET", `/v1/processes/${pid}`);
      assert.equal(info.node, "n1");
      await release(n1.address, pid);
      const { status } = await json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${pid}/wait`);
      assert.deepEqual(status, { kind: "exit", code: 0 });
      assert.equal((await outputOf(n1.address, pid)).stdout.toString(), want);
    } finally {
      await cluster.stop();
    }
  });

  it("cutting the link mid-round leaves the process running at the source with intact output", async () => {
    const want = await reference();
    const pair = await proxiedPair("cut");
    const { n1, n2, proxy } = pair;
    try {
      const sha = await upload(n1.address, memhog);
      const { pid } = await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "memhog.wasm", args });
      await touched(n1.address, pid);
      const moving = request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to: "n2", strategy: "pre-copy" });
      await standbyOn(n2);
      proxy.cut();
      const r = await moving;
      assert.notEqual(r.status, 200, "the migration claims success over a cut link");
      const info = await json<Info>(n1.address, "GET", `/v1/processes/${pid}`);
      assert.equal(info.node, "n1");
      assert.equal(await runsOn(n2.address, pid), false, "a second copy runs on the destination");
      await release(n1.address, pid);
      const { status } = await json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${pid}/wait`);
      assert.deepEqual(status, { kind: "exit", code: 0 });
      assert.equal((await outputOf(n1.address, pid)).stdout.toString(), want);
    } finally {
      await pair.stop();
    }
  });
});

describe("pre-copy's final copy budget", () => {
  it("pre-copy learns what a stop to a node costs besides its final copy, and leaves the next move there's final copy the target less that", async () => {
    // Nodes of its own: the others have moved processes already, and learnt from it.
    const pair = await startCluster(["p1", "p2"]);
    const [p1, p2] = pair.nodes as [NodeProc, NodeProc];
    const sha = await upload(p1.address, path.join(EXAMPLES, "c", "sleeper.wasm"));
    const { pid } = await json<{ pid: string }>(p1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "sleeper.wasm", args: ["20", "100000"] });
    type Metrics = { downtime_ms: number; dirty_pages: number[]; convergence: { link_bytes_per_s: number; stop_cost_ms: number } };
    const move = async (from: NodeProc, to: string): Promise<Metrics> => {
      const r = await request(from.address, "POST", `/v1/processes/${pid}/migrate`, { to, strategy: "pre-copy", max_downtime_ms: 50 });
      assert.equal(r.status, 200, r.body.toString());
      return (JSON.parse(r.body.toString()) as { metrics: Metrics }).metrics;
    };
    try {
      const first = await move(p1, "p2");
      assert.equal(first.convergence.stop_cost_ms, 0, "p1 knows nothing of a stop before its first move");
      const second = await move(p2, "p1");
      assert.equal(second.convergence.stop_cost_ms, 0, "p2 knows nothing of a stop before its first move");
      const third = await move(p1, "p2");
      const expected = stopCostMs(first) as number;
      assert.equal(third.convergence.stop_cost_ms, Math.round(expected * 10) / 10);
    } finally {
      await request(p2.address, "DELETE", `/v1/processes/${pid}`);
      await pair.stop();
    }
  });
});
