/**
 * Post-copy and hybrid migration between node daemons that are separate OS
 * processes on 127.0.0.1 (issue 4). memhog is the memory checker: it fills
 * its memory with a pattern fixed by (block, generation), folds every block it
 * rewrites into its checksums and verifies every block at the end, so one
 * wrong byte changes its output. Each failure case runs node processes that
 * can be killed from outside, so a hang fails the test instead of freezing it.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { remotePagesAvailability } from "../src/memory/mod.js";
import { dataGuest } from "./_data_guest.js";
import { EXAMPLES, ferry, tempDir, until } from "./_helpers.js";
import { json, NODE_ARGS_DEFAULT, outputOf, proxiedPair, request, runsOn, startCluster, stopNode, upload, type NodeProc } from "./_cluster.js";

const availability = remotePagesAvailability();
const skip = !availability.available && `post-copy needs userfaultfd, unavailable here: ${availability.reason}`;
if (skip !== false) console.log(`# skipping post-copy tests: ${skip}`);

const memhog = path.join(EXAMPLES, "c", "memhog.wasm");

interface Metrics {
  strategy: string;
  downtime_ms: number;
  post_copy?: { demand_chunks: number; pushed_chunks: number; zero_chunks: number; resume_to_last_page_ms: number; connections: number; end: string };
}

async function reference(args: string[]): Promise<string> {
  // Bounded far past the default 2 minutes: a reference run on a busy machine may take longer.
  const whole = await ferry(["exec", memhog, ...args], { timeout_ms: 600_000 });
  assert.equal(whole.status, 0, whole.stderr.toString());
  return whole.stdout.toString();
}

/** Waits until the home at `address` records `pid` as running on `node`: post-copy has passed RUNNING, its pages still coming. */
function runsAt(address: string, pid: string, node: string): Promise<true> {
  return until(`${pid} to run on ${node}`, async () => {
    const info = await json<{ node: string; state: string }>(address, "GET", `/v1/processes/${pid}`);
    if (info.state !== "running" && info.state !== "migrating") throw new Error(`${pid} is ${info.state} before it ran on ${node}`);
    return info.node === node;
  });
}

/** Waits until memhog at its home `address` has printed its first line: its memory is touched. */
function touched(address: string, pid: string): Promise<true> {
  return until(`${pid} to touch its memory`, async () => (await outputOf(address, pid)).stdout.includes("\n"));
}

/**
 * How long a step may take before it counts as hung: far past what any
 * takes on a busy machine (a stop, a wait, a kill), so only a hang fails.
 */
const HANG_MS = 120_000;

/** Resolves with the result, or rejects after `ms`: nothing in these tests may hang. */
function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms).unref())]);
}

describe("post-copy and hybrid migration", { skip }, () => {
  it("memhog reading and rewriting all of its memory every second, moved by post-copy and hybrid back and forth, verifies every byte and writes what an uninterrupted run writes", async () => {
    // 48 MiB rewritten at 48 MiB/s: each (logical) second it reads every block,
    // folds it into its checksum and rewrites it, so a page that arrived wrong,
    // or was zero-filled, changes its output. Held after its last second until
    // released after the moves (examples/c/hold.h), so all of them find it
    // running however slow the machine; the moves that land before then move
    // it mid-write. The uninterrupted run goes meanwhile.
    const args = ["--hold", "48", "48", "8"];
    const reference_run = reference(args);
    const cluster = await startCluster(["n1", "n2", "n3"]);
    try {
      const [n1] = cluster.nodes as [NodeProc];
      const sha = await upload(n1.address, memhog);
      const { pid } = await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "memhog.wasm", args });
      await touched(n1.address, pid);
      const moves: [string, string][] = [["n2", "post-copy"], ["n3", "hybrid"], ["n1", "post-copy"], ["n2", "hybrid"]];
      const done: string[] = [];
      for (const [to, strategy] of moves) {
        const r = await within(HANG_MS, `move to ${to}`, request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to, strategy }));
        assert.equal(r.status, 200, `${strategy} to ${to}: ${r.body.toString()}`);
        const { metrics } = JSON.parse(r.body.toString()) as { metrics: Metrics };
        assert.equal(metrics.strategy, strategy);
        assert.equal(metrics.post_copy?.end, "done");
        assert.ok((metrics.post_copy?.pushed_chunks ?? 0) + (metrics.post_copy?.demand_chunks ?? 0) > 0, `${strategy} moved no page after the stop: ${JSON.stringify(metrics)}`);
        const info = await json<{ node: string }>(n1.address, "GET", `/v1/processes/${pid}`);
        assert.equal(info.node, to);
        done.push(strategy);
      }
      assert.deepEqual(done, ["post-copy", "hybrid", "post-copy", "hybrid"]);
      const released = await request(n1.address, "POST", `/v1/processes/${pid}/send`, { data: "release" });
      assert.equal(released.status, 200, released.body.toString());
      const { status } = await within(HANG_MS, "wait", json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${pid}/wait`));
      assert.deepEqual(status, { kind: "exit", code: 0 });
      const out = (await outputOf(n1.address, pid)).stdout.toString();
      assert.match(out, /verify OK/);
      assert.equal(out, await reference_run, "memhog's output differs from an uninterrupted run");
    } finally {
      await cluster.stop();
    }
  });

  it("the restore asks the source for no page: the chunks it reads travel with the image", async () => {
    // Held in a wait from its start (examples/c/hold.h), memhog touches no page
    // once it runs again until it is released, and the push starts only once it
    // runs: every chunk asked for is one the restore itself had to wait for.
    // Never hibernated: a hibernated process is woken, not restored, by a move.
    const cluster = await startCluster(["n1", "n2"], undefined, () => [...NODE_ARGS_DEFAULT, "--hibernate-after", "0"]);
    try {
      const [n1] = cluster.nodes as [NodeProc];
      const sha = await upload(n1.address, memhog);
      const { pid } = await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "memhog.wasm", args: ["--hold", "16", "0", "0"] });
      await touched(n1.address, pid);
      for (const [to, strategy] of [["n2", "post-copy"], ["n1", "hybrid"]] as const) {
        const r = await within(HANG_MS, `move to ${to}`, request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to, strategy }));
        assert.equal(r.status, 200, `${strategy} to ${to}: ${r.body.toString()}`);
        const { metrics } = JSON.parse(r.body.toString()) as { metrics: Metrics };
        assert.equal(metrics.post_copy?.end, "done", JSON.stringify(metrics));
        assert.equal(metrics.post_copy?.demand_chunks, 0, `${strategy}: the restore waited on pages of the source: ${JSON.stringify(metrics)}`);
      }
      const released = await request(n1.address, "POST", `/v1/processes/${pid}/send`, { data: "release" });
      assert.equal(released.status, 200, released.body.toString());
      const { status } = await within(HANG_MS, "wait", json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${pid}/wait`));
      assert.deepEqual(status, { kind: "exit", code: 0 });
      assert.match((await outputOf(n1.address, pid)).stdout.toString(), /verify OK/);
    } finally {
      await cluster.stop();
    }
  });

  it("a process whose module holds large data segments, changed before it moves, arrives with its own bytes by every strategy", async () => {
    // Says "ready", then waits for a message; its destinations' standbys start from zero memory.
    const file = path.join(tempDir("data-module"), "data.wasm");
    fs.writeFileSync(
      file,
      dataGuest({
        imports: `(import "ferry" "recv" (func $recv (param i32 i32 i32 i32 i32 i32 i64) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))`,
        fields: `(data (i32.const 520) "ready\\n")`,
        code: `(i32.store (i32.const 500) (i32.const 520))
          (i32.store (i32.const 504) (i32.const 6))
          (drop (call $write (i32.const 1) (i32.const 500) (i32.const 1) (i32.const 510)))
          (drop (call $recv (i32.const 200) (i32.const 64) (i32.const 280) (i32.const 300) (i32.const 64) (i32.const 284) (i64.const -1)))`,
      }),
    );
    // Never hibernated: a move then restores it rather than waking it.
    const cluster = await startCluster(["n1", "n2"], undefined, () => [...NODE_ARGS_DEFAULT, "--hibernate-after", "0"]);
    try {
      const [n1] = cluster.nodes as [NodeProc];
      const sha = await upload(n1.address, file);
      const { pid } = await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "data.wasm", args: [] });
      await until(`${pid} to say it is ready`, async () => (await outputOf(n1.address, pid)).stdout.toString() === "ready\n");
      for (const [to, strategy] of [["n2", "post-copy"], ["n1", "hybrid"], ["n2", "pre-copy"], ["n1", "stop-copy"]] as const) {
        const r = await within(HANG_MS, `move to ${to}`, request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to, strategy }));
        assert.equal(r.status, 200, `${strategy} to ${to}: ${r.body.toString()}`);
      }
      const released = await request(n1.address, "POST", `/v1/processes/${pid}/send`, { data: "release" });
      assert.equal(released.status, 200, released.body.toString());
      const { status } = await within(HANG_MS, "wait", json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${pid}/wait`));
      assert.deepEqual(status, { kind: "exit", code: 0 }, "its data was not as it left it");
    } finally {
      await cluster.stop();
    }
  });

  it("a link cut during post-copy is recovered: the source reopens the page channel and the process finishes intact", async () => {
    // Idle: the push carries the pages, slowly. Held after its 3 s until released, so it is there when the migration runs it on n2.
    const args = ["--hold", "64", "0", "3"];
    const want = await reference(args);
    const pair = await proxiedPair("pc-cut");
    const { n1, proxy } = pair;
    try {
      const sha = await upload(n1.address, memhog);
      const { pid } = await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "memhog.wasm", args });
      await touched(n1.address, pid);
      const moving = request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to: "n2", strategy: "post-copy", push_bytes_per_s: 24e6, recover_ms: 10_000 });
      await runsAt(n1.address, pid, "n2");
      proxy.cut();
      const r = await within(HANG_MS, "migration", moving);
      assert.equal(r.status, 200, r.body.toString());
      const { metrics } = JSON.parse(r.body.toString()) as { metrics: Metrics };
      assert.ok((metrics.post_copy?.connections ?? 0) >= 2, `the page channel should have been reopened: ${JSON.stringify(metrics)}`);
      const released = await request(n1.address, "POST", `/v1/processes/${pid}/send`, { data: "release" });
      assert.equal(released.status, 200, released.body.toString());
      const { status } = await within(HANG_MS, "wait", json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${pid}/wait`));
      assert.deepEqual(status, { kind: "exit", code: 0 });
      assert.equal((await outputOf(n1.address, pid)).stdout.toString(), want);
    } finally {
      await pair.stop();
    }
  });

  it("killing the source during post-copy fails the process with an error naming the lost pages, and nothing hangs", async () => {
    const cluster = await startCluster(["n1", "n2", "n3"]);
    try {
      const [n1, n2, n3] = cluster.nodes as [NodeProc, NodeProc, NodeProc];
      const sha = await upload(n1.address, memhog);
      const { pid } = await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "memhog.wasm", args: ["--hold", "64", "0", "20"] });
      await touched(n1.address, pid);
      // First to n2, so that killing n2 (the source of the next move) spares the home.
      const first = await request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to: "n2" });
      assert.equal(first.status, 200, first.body.toString());
      const moving = request(n2.address, "POST", `/v1/processes/${pid}/migrate`, { to: "n3", strategy: "post-copy", push_bytes_per_s: 8e6, recover_ms: 1500 });
      moving.catch(() => undefined);
      // Running at n3 with pages still at n2: now n2 dies.
      await runsAt(n1.address, pid, "n3");
      n2.child.kill("SIGKILL");
      const { status } = await within(HANG_MS, "wait", json<{ status: { kind: string; message?: string } }>(n1.address, "GET", `/v1/processes/${pid}/wait`));
      assert.equal(status.kind, "lost", JSON.stringify(status));
      assert.match(status.message ?? "", /never arrived/);
      assert.match(status.message ?? "", /0x[0-9a-f]+-0x[0-9a-f]+/, "the lost pages should be named");
      // The destination is still responsive and holds nothing of it.
      assert.equal(await within(HANG_MS, "n3", runsOn(n3.address, pid)), false);
      const list = await json<{ pid: string; state: string }[]>(n1.address, "GET", "/v1/processes");
      assert.equal(list.find((p) => p.pid === pid)?.state, "failed");
    } finally {
      await within(HANG_MS, "stopping the cluster", cluster.stop());
    }
  });

  it("killing the destination during post-copy ends the process as lost at its home, and the source does not hang", async () => {
    const cluster = await startCluster(["n1", "n2"]);
    try {
      const [n1, n2] = cluster.nodes as [NodeProc, NodeProc];
      const sha = await upload(n1.address, memhog);
      const { pid } = await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "memhog.wasm", args: ["--hold", "64", "0", "20"] });
      await touched(n1.address, pid);
      const moving = request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to: "n2", strategy: "post-copy", push_bytes_per_s: 8e6, recover_ms: 1500 });
      await runsAt(n1.address, pid, "n2");
      n2.child.kill("SIGKILL");
      const r = await within(HANG_MS, "migration after its destination died", moving);
      assert.equal(r.status, 502, r.body.toString());
      assert.match(r.body.toString(), /ERR_POSTCOPY_LOST/);
      const { status } = await within(HANG_MS, "wait", json<{ status: { kind: string; message?: string } }>(n1.address, "GET", `/v1/processes/${pid}/wait`));
      assert.equal(status.kind, "lost", JSON.stringify(status));
      assert.equal(await runsOn(n1.address, pid), false, "the source must not resume a process whose state moved on");
    } finally {
      await within(HANG_MS, "stopping the cluster", cluster.stop());
    }
  });

  it("killing the process or stopping its node during post-copy never hangs", async () => {
    const cluster = await startCluster(["n1", "n2", "n3"]);
    try {
      const [n1, , n3] = cluster.nodes as [NodeProc, NodeProc, NodeProc];
      const sha = await upload(n1.address, memhog);
      const start = async (): Promise<string> =>
        (await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "memhog.wasm", args: ["--hold", "64", "8", "20"] })).pid;
      // Killed where it runs, mid post-copy: the source is told, and its migration ends.
      const a = await start();
      await touched(n1.address, a);
      const moving = request(n1.address, "POST", `/v1/processes/${a}/migrate`, { to: "n2", strategy: "post-copy", push_bytes_per_s: 4e6 });
      moving.catch(() => undefined);
      await runsAt(n1.address, a, "n2");
      const killed = await within(HANG_MS, "kill", request(n1.address, "DELETE", `/v1/processes/${a}`));
      assert.equal(killed.status, 200, killed.body.toString());
      const r = await within(HANG_MS, "migration after the kill", moving);
      assert.equal(r.status, 200, r.body.toString());
      assert.equal((JSON.parse(r.body.toString()) as { metrics: Metrics }).metrics.post_copy?.end, "abort");
      const { status } = await within(HANG_MS, "wait", json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${a}/wait`));
      assert.deepEqual(status, { kind: "killed" });
      // Its destination node stopped mid post-copy: the node exits promptly.
      const b = await start();
      await touched(n1.address, b);
      const moving_b = request(n1.address, "POST", `/v1/processes/${b}/migrate`, { to: "n3", strategy: "post-copy", push_bytes_per_s: 4e6, recover_ms: 1000 });
      moving_b.catch(() => undefined);
      await runsAt(n1.address, b, "n3");
      // It stops by itself (exit 0), not killed by stopNode once its grace ran out: how long that takes is the machine's load.
      const t = performance.now();
      const ended = await within(HANG_MS, "stopping n3", stopNode(n3, { grace_ms: HANG_MS / 2 }));
      assert.deepEqual(ended, { code: 0, signal: null }, "the node did not stop by itself");
      process.stdout.write(`# n3 stopped mid post-copy in ${Math.round(performance.now() - t)} ms\n`);
      await within(HANG_MS, "migration after its destination stopped", moving_b);
    } finally {
      await within(HANG_MS, "stopping the cluster", cluster.stop());
    }
  });
});
