/**
 * Checkpoints (issue 11 items 4 and 6, docs/checkpoints.md), on node daemons
 * that are separate OS processes on 127.0.0.1: periodic incremental
 * checkpoints stored on another node; output released only once a stored
 * checkpoint covers it (output commit); and the restore primitive: after
 * `kill -9` of the node running a checkpointed CPU-bound process, it resumes
 * from its last checkpoint on another node and its output is byte for byte
 * that of an undisturbed run — no gap, no duplicate. Everything waits on
 * observable state, never on time.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { describe, it } from "node:test";
import { EXAMPLES, ferry, until } from "./_helpers.js";
import { tapEvents } from "./_events.js";
import { crash, json, NODE_ARGS_DEFAULT, nodeDialer, outputOf, request, runsOn, startCluster, startNode, upload, type NodeProc } from "./_cluster.js";

const compute = path.join(EXAMPLES, "c", "compute.wasm");
const memhog = path.join(EXAMPLES, "c", "memhog.wasm");
const sleeper = path.join(EXAMPLES, "c", "sleeper.wasm");

interface Info {
  pid: string;
  node: string;
  moves: number;
  exit: { kind: string; code?: number } | null;
}

const MiB = 1024 * 1024;

/** What a keeper says of the chain it keeps of a process (`GET /v1/internal/ckpt/PID`). */
interface Kept {
  seq: number;
  checkpoints: number;
  bytes: number;
  base_bytes: number;
  memory_bytes: number;
  compacting: boolean;
}

interface Last {
  keeper: string;
  runner: string;
  seq: number;
  moves: number;
  stdout_bytes: number;
}

function run(address: string, body: object): Promise<{ pid: string }> {
  return json<{ pid: string }>(address, "POST", "/v1/processes", body);
}

/**
 * A checkpoint's runtime slowdown as reported: the share of its interval
 * (since the previous checkpoint's pause ended) that its pause took.
 */
function assertSlowdown(d: Record<string, unknown>): void {
  const pause_ms = d["pause_ms"] as number;
  const interval_ms = d["interval_ms"] as number;
  const ratio = d["slowdown_ratio"] as number;
  assert.ok(typeof interval_ms === "number" && typeof ratio === "number", `no slowdown reported: ${JSON.stringify(d)}`);
  assert.ok(ratio >= 0 && ratio <= 1, JSON.stringify(d));
  assert.ok(interval_ms >= pause_ms - 0.01, `an interval shorter than its pause: ${JSON.stringify(d)}`);
  assert.ok(Math.abs(ratio - pause_ms / interval_ms) < 1e-3, `the slowdown is not the pause over the interval: ${JSON.stringify(d)}`);
}

async function lastCheckpoint(address: string, pid: string): Promise<Last | null> {
  return (await json<{ last: Last | null }>(address, "GET", `/v1/processes/${pid}/checkpoints`)).last;
}

describe("checkpoints", () => {
  it("kill -9 of the runner of a checkpointed CPU-bound process: restored from its last checkpoint on another node, its output is that of an undisturbed run, no gap, no duplicate", async () => {
    const cluster = await startCluster(["n1", "n2", "n3"]);
    const [n1, n2, n3] = cluster.nodes as [NodeProc, NodeProc, NodeProc];
    try {
      const sha = await upload(n1.address, compute);
      const args = ["100"];
      // The undisturbed run, without checkpoints, for comparison.
      const calm = await run(n1.address, { module_sha256: sha, module_name: "compute.wasm", args });
      assert.deepEqual((await json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${calm.pid}/wait`)).status, { kind: "exit", code: 0 });
      const expected = await outputOf(n1.address, calm.pid);

      const { pid } = await run(n1.address, { module_sha256: sha, module_name: "compute.wasm", args, checkpoint_every_ms: 150 });
      // Its runner is not its home: n2 runs it, n1 keeps its output, n3 its checkpoints.
      const moved = await request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to: "n2", strategy: "stop-copy" });
      assert.equal(moved.status, 200, moved.body.toString());
      const last = await until("a checkpoint taken on n2 and some rounds done since", async () => {
        const l = await lastCheckpoint(n1.address, pid);
        return l !== null && l.runner === "n2" && l.seq >= 3 && l.stdout_bytes > 200 ? l : undefined;
      });
      assert.equal(last.keeper, "n3", "kept on the node that neither runs it nor is its home");
      // Output commit: readers see no more than a stored checkpoint covers.
      const shown = (await outputOf(n1.address, pid)).stdout;
      const covered = (await lastCheckpoint(n1.address, pid))?.stdout_bytes ?? 0;
      assert.ok(shown.length <= covered, `shown ${shown.length} bytes, a checkpoint covers ${covered}`);
      assert.deepEqual(shown, expected.stdout.subarray(0, shown.length));

      await crash(n2);
      const restored = await json<{ to: string; moves: number; seq: number; from: string }>(n1.address, "POST", `/v1/processes/${pid}/restore`, { to: "n1" });
      assert.equal(restored.from, "n2");
      assert.equal(restored.to, "n1");
      assert.ok(restored.seq >= last.seq);
      const info = await json<Info>(n1.address, "GET", `/v1/processes/${pid}`);
      assert.equal(info.node, "n1");
      assert.equal(info.moves, 2, "the restore is the process's next move");
      // Its end, from any node that is up.
      assert.deepEqual((await json<{ status: unknown }>(n3.address, "GET", `/v1/processes/${pid}/wait`)).status, { kind: "exit", code: 0 });
      const got = await outputOf(n3.address, pid);
      assert.equal(got.stdout.toString(), expected.stdout.toString(), "stdout: no gap, no duplicate");
      assert.equal(got.stderr.toString(), expected.stderr.toString(), "stderr: no gap, no duplicate");
    } finally {
      await cluster.stop();
    }
  });

  it("the restore primitive is refused while the runner runs the process or when there is no checkpoint; by default it resumes the process on its keeper", async () => {
    const cluster = await startCluster(["n1", "n2", "n3"]);
    const [n1, n2] = cluster.nodes as [NodeProc, NodeProc, NodeProc];
    try {
      const sha = await upload(n1.address, sleeper);
      const plain = await run(n1.address, { module_sha256: sha, module_name: "sleeper.wasm", args: ["20", "100000"] });
      const none = await request(n1.address, "POST", `/v1/processes/${plain.pid}/restore`, {});
      assert.equal(none.status, 409);
      assert.match(none.body.toString(), /ERR_NO_CHECKPOINT/);

      const started = await ferry(["run", "--cluster", n1.address, "--checkpoint-every", "100", "--json", sleeper, "20", "100000"]);
      assert.equal(started.status, 0, started.stderr.toString());
      const { pid } = JSON.parse(started.stdout.toString()) as { pid: string };
      const moved = await request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to: "n2", strategy: "stop-copy" });
      assert.equal(moved.status, 200, moved.body.toString());
      const last = await until("a checkpoint taken on n2", async () => {
        const l = await lastCheckpoint(n1.address, pid);
        return l !== null && l.runner === "n2" ? l : undefined;
      });
      const alive = await request(n1.address, "POST", `/v1/processes/${pid}/restore`, {});
      assert.equal(alive.status, 409, "exactly one copy: not while its runner runs it");
      assert.match(alive.body.toString(), /ERR_PROCESS_STATE/);

      await crash(n2);
      const restored = await json<{ to: string; moves: number }>(n1.address, "POST", `/v1/processes/${pid}/restore`, {});
      assert.equal(restored.to, last.keeper);
      assert.equal(await runsOn(cluster.nodes[2]?.address as string, pid), true);
      // It carries on there, checkpointed anew (a new chain, at the new move), and its output with it.
      const seen = await until("a checkpoint at the new move", async () => {
        const l = await lastCheckpoint(n1.address, pid);
        return l !== null && l.moves === restored.moves ? l : undefined;
      });
      assert.equal(seen.runner, "n3");
      const killed = await json<{ status: { kind: string } }>(n1.address, "DELETE", `/v1/processes/${pid}`);
      assert.equal(killed.status.kind, "killed");
      const out = (await outputOf(n1.address, pid)).stdout.toString();
      assert.match(out, /^sleeper: /);
      assert.match(out, /(tick \d+\n)+$/);
      const ticks = [...out.matchAll(/tick (\d+)\n/g)].map((m) => Number(m[1]));
      assert.deepEqual(ticks, ticks.map((_, i) => i + 1), "ticks once each, in order, across the restore");
      await json(n1.address, "DELETE", `/v1/processes/${plain.pid}`);
    } finally {
      await cluster.stop();
    }
  });

  it("regression, a keeper waiting 30 s for frames after a stop-copy move: a process that writes all the time, checkpointed every 100 ms and moved away from its home, has checkpoints stored one after another at its new move, and again after a restore; every tick once, in order", async () => {
    const cluster = await startCluster(["n1", "n2", "n3"]);
    const [n1, n2] = cluster.nodes as [NodeProc, NodeProc, NodeProc];
    try {
      const sha = await upload(n1.address, sleeper);
      // A line every millisecond: one arrives while each batch of its output is on its way to its home, so the relay's queue never runs dry.
      // (A checkpoint waited for it to: its keeper gave up after 30 s without a frame, and so did every chain after.)
      const { pid } = await run(n1.address, { module_sha256: sha, module_name: "sleeper.wasm", args: ["1", "1000000"], checkpoint_every_ms: 100 });
      await until("a checkpoint taken on n1", async () => ((await lastCheckpoint(n1.address, pid))?.runner === "n1" ? true : undefined));
      const moved = await request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to: "n2", strategy: "stop-copy" });
      assert.equal(moved.status, 200, moved.body.toString());
      const last = await until("three checkpoints of one chain stored on n2's move", async () => {
        const l = await lastCheckpoint(n1.address, pid);
        return l !== null && l.runner === "n2" && l.moves === 1 && l.seq >= 3 ? l : undefined;
      });
      await crash(n2);
      const restored = await json<{ to: string; moves: number }>(n1.address, "POST", `/v1/processes/${pid}/restore`, {});
      assert.equal(restored.to, last.keeper);
      await until("three checkpoints of one chain stored after the restore", async () => {
        const l = await lastCheckpoint(n1.address, pid);
        return l !== null && l.runner === last.keeper && l.moves === restored.moves && l.seq >= 3 ? l : undefined;
      });
      const killed = await json<{ status: { kind: string } }>(n1.address, "DELETE", `/v1/processes/${pid}`);
      assert.equal(killed.status.kind, "killed");
      const out = (await outputOf(n1.address, pid)).stdout.toString();
      const ticks = [...out.matchAll(/tick (\d+)\n/g)].map((m) => Number(m[1]));
      assert.ok(ticks.length > 0, out.slice(0, 200));
      assert.deepEqual(ticks, ticks.map((_, i) => i + 1), "ticks once each, in order, across the move and the restore");
    } finally {
      await cluster.stop();
    }
  });

  it("a home restarted on its data directory keeps holding the output no stored checkpoint covers, and releases the rest as checkpoints are recorded", async () => {
    const cluster = await startCluster(["n1", "n2", "n3"]);
    let [n1] = cluster.nodes as [NodeProc, NodeProc, NodeProc];
    try {
      const sha = await upload(n1.address, sleeper);
      const { pid } = await run(n1.address, { module_sha256: sha, module_name: "sleeper.wasm", args: ["40", "120"], checkpoint_every_ms: 300 });
      const moved = await request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to: "n2", strategy: "stop-copy" });
      assert.equal(moved.status, 200, moved.body.toString());
      await until("a checkpoint taken on n2", async () => ((await lastCheckpoint(n1.address, pid))?.runner === "n2" ? true : undefined));

      await crash(n1);
      n1 = await startNode("n1", Number(n1.address.split(":")[1]), cluster.nodes.slice(1).map((n) => n.address), path.join(cluster.dir, "n1"));
      cluster.nodes[0] = n1;
      // What is shown first, then the last checkpoint: one recorded between the two reads only raises what may be shown.
      // A record the home had not written to disk yet when it died is gone with it, and so nothing it covered was shown.
      const shown = (await outputOf(n1.address, pid)).stdout;
      const last = await lastCheckpoint(n1.address, pid);
      assert.ok(shown.length <= (last?.stdout_bytes ?? 0), `after the restart, shown ${shown.length} bytes; the last checkpoint covers ${last?.stdout_bytes ?? "nothing"}`);
      await until("output released by checkpoints recorded after the restart", async () => ((await outputOf(n1.address, pid)).stdout.length > shown.length ? true : undefined));
      assert.deepEqual((await json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${pid}/wait`)).status, { kind: "exit", code: 0 });
      const out = (await outputOf(n1.address, pid)).stdout.toString();
      const ticks = [...out.matchAll(/tick (\d+)\n/g)].map((m) => Number(m[1]));
      assert.deepEqual(ticks, Array.from({ length: 120 }, (_, i) => i + 1), "every tick once, in order");
      assert.match(out, /done lines=0 ticks=120\n$/);
    } finally {
      await cluster.stop();
    }
  });

  it("with no other node to keep them, checkpoints fail with ERR_NO_KEEPER (one event), and the output stays held until the process ends", async () => {
    const cluster = await startCluster(["n1"]);
    const [n1] = cluster.nodes as [NodeProc];
    try {
      const sha = await upload(n1.address, sleeper);
      const { pid } = await run(n1.address, { module_sha256: sha, module_name: "sleeper.wasm", args: ["10", "100000"], checkpoint_every_ms: 50 });
      const now = await request(n1.address, "POST", `/v1/processes/${pid}/checkpoint`, {});
      assert.equal(now.status, 503);
      assert.match(now.body.toString(), /ERR_NO_KEEPER/);
      const failures = async (): Promise<number> => {
        const text = (await request(n1.address, "GET", "/metrics")).body.toString();
        return Number(/ferry_checkpoints_total\{result="failed",code="ERR_NO_KEEPER",node="n1"\} (\d+)/.exec(text)?.[1] ?? 0);
      };
      await until("periodic checkpoints to have failed a few times", async () => ((await failures()) >= 4 ? true : undefined));
      const tap = await tapEvents(n1.address, "/v1/events?local=1");
      await tap.until((e, d) => e.event === "checkpoint.failed" && d["pid"] === pid && d["code"] === "ERR_NO_KEEPER");
      tap.close();
      assert.equal(tap.events.filter((e) => e.event === "checkpoint.failed").length, 1, "the same failure is published once");
      assert.equal((await outputOf(n1.address, pid)).stdout.length, 0, "no checkpoint covers any of it yet");
      await json(n1.address, "DELETE", `/v1/processes/${pid}`);
      assert.match((await outputOf(n1.address, pid)).stdout.toString(), /^sleeper: .*\n(eof after 0 lines\n)?(tick \d+\n)*$/);
    } finally {
      await cluster.stop();
    }
  });

  it("a keeper refuses a checkpoint that could pass its --checkpoint-disk-max with ERR_CHECKPOINT_LIMIT, and keeps nothing of it", async () => {
    // n2, the only other node and so the keeper, keeps 4 MiB of checkpoints at most; the process has 8 MiB of memory.
    const cluster = await startCluster(["n1", "n2"], undefined, (name) => (name === "n2" ? [...NODE_ARGS_DEFAULT, "--checkpoint-disk-max", "4M"] : NODE_ARGS_DEFAULT));
    const [n1, n2] = cluster.nodes as [NodeProc, NodeProc];
    try {
      const sha = await upload(n1.address, memhog);
      const { pid } = await run(n1.address, { module_sha256: sha, module_name: "memhog.wasm", args: ["8", "0", "600"] });
      await until("memhog to have touched its memory", async () => ((await outputOf(n1.address, pid)).stdout.toString().includes("touched") ? true : undefined));
      const r = await request(n1.address, "POST", `/v1/processes/${pid}/checkpoint`, {});
      assert.equal(r.status, 507, r.body.toString());
      const error = (JSON.parse(r.body.toString()) as { error: { code: string; message: string } }).error;
      assert.equal(error.code, "ERR_CHECKPOINT_LIMIT");
      assert.match(error.message, /--checkpoint-disk-max of 4194304 bytes/);
      const cli = await ferry(["checkpoint", "--cluster", n1.address, pid]);
      assert.notEqual(cli.status, 0);
      assert.match(cli.stderr.toString(), /ERR_CHECKPOINT_LIMIT/);
      const dialer = await nodeDialer();
      assert.equal((await request(n2.address, "GET", `/v1/internal/ckpt/${pid}`, undefined, dialer)).status, 409, "the keeper keeps nothing of it");
      assert.equal(await lastCheckpoint(n1.address, pid), null);
      const help = await ferry(["node", "start", "--help"]);
      assert.match(help.stdout.toString(), /--checkpoint-disk-max SIZE/);
      await json(n1.address, "DELETE", `/v1/processes/${pid}`);
    } finally {
      await cluster.stop();
    }
  });

  it("checkpoints asked for 10 times a second of a process that keeps writing are stored one after another, those that fall due meanwhile folded into the next and counted; increments that outweigh the base are merged without holding up the next checkpoint", async () => {
    const cluster = await startCluster(["n1", "n2"]);
    const [n1, n2] = cluster.nodes as [NodeProc, NodeProc];
    try {
      const sha = await upload(n1.address, memhog);
      // 16 MiB rewritten at 16 MiB/s: every increment holds what 100 ms (or the last checkpoint's time) wrote.
      const { pid } = await run(n1.address, { module_sha256: sha, module_name: "memhog.wasm", args: ["16", "16", "600"], checkpoint_every_ms: 100 });
      const tap = await tapEvents(n1.address, "/v1/events?local=1&follow=1");
      await tap.until((e, d) => e.event === "checkpoint.taken" && d["pid"] === pid && d["checkpoint"] === 6);
      tap.close();
      const taken = tap.events.map((e) => JSON.parse(e.data) as Record<string, unknown>).filter((d) => d["type"] === "checkpoint.taken" && d["pid"] === pid);
      assert.deepEqual(
        taken.map((d) => d["checkpoint"]).slice(0, 6),
        [1, 2, 3, 4, 5, 6],
        "one chain, each checkpoint stored after the one before",
      );
      for (const d of taken) {
        assert.equal(typeof d["pause_ms"], "number");
        assert.ok((d["bytes"] as number) > 0 && (d["pages"] as number) > 0, JSON.stringify(d));
        assert.ok(Number.isInteger(d["coalesced"]) && (d["coalesced"] as number) >= 0, JSON.stringify(d));
        assertSlowdown(d);
      }
      const last = await lastCheckpoint(n1.address, pid);
      assert.ok(last !== null && last.seq >= 6 && last.keeper === "n2", JSON.stringify(last));
      assertSlowdown(last as unknown as Record<string, unknown>);
      const metrics = (await request(n1.address, "GET", "/metrics")).body.toString();
      const coalesced = Number(/^ferry_checkpoints_coalesced_total\{[^}]*\} (\d+)/m.exec(metrics)?.[1]);
      assert.ok(coalesced >= taken.reduce((n, d) => n + (d["coalesced"] as number), 0), `the metric counts every folded checkpoint (${coalesced})`);
      // Retention: once the increments outweigh the base they are merged into a new one, while checkpoints go on.
      const dialer = await nodeDialer();
      // Every look at the chain on the keeper: outside a compaction it holds at most twice its base, a base at most its memory plus 1 MiB (docs/checkpoints.md, "Retention policy").
      const look = async (): Promise<Kept | undefined> => {
        const kept = await request(n2.address, "GET", `/v1/internal/ckpt/${pid}`, undefined, dialer);
        if (kept.status !== 200) return undefined;
        const k = JSON.parse(kept.body.toString()) as Kept;
        if (!k.compacting) {
          assert.ok(k.bytes <= 2 * (k.memory_bytes + MiB), `the keeper holds ${k.bytes} bytes in ${k.checkpoints} checkpoints of a ${k.memory_bytes}-byte memory, with no compaction under way`);
        }
        return k;
      };
      const merged = await until("the keeper to merge the chain while checkpoints go on", async () => {
        const k = await look();
        return k !== undefined && k.checkpoints < k.seq ? k : undefined;
      });
      const after = await until("a checkpoint stored after the merge", async () => {
        await look();
        const l = await lastCheckpoint(n1.address, pid);
        return l !== null && l.seq > merged.seq ? l : undefined;
      });
      assert.equal(after.keeper, "n2");
      // The base a compaction wrote holds at most its memory plus 1 MiB, whenever it is looked at. A keeper
      // busy enough starts the next compaction the moment one ends (what arrived meanwhile outweighs the new
      // base), so a look outside one is not always to be had: the whole chain's bound is checked at those there were.
      const rebased = await until("a look at the chain after its merge", async () => {
        const k = await look();
        return k !== undefined && k.seq > merged.seq ? k : undefined;
      });
      assert.ok(rebased.base_bytes <= rebased.memory_bytes + MiB, `a base of ${rebased.base_bytes} bytes for a ${rebased.memory_bytes}-byte memory`);
      assert.ok(merged.base_bytes <= merged.memory_bytes + MiB, `a base of ${merged.base_bytes} bytes for a ${merged.memory_bytes}-byte memory`);
      await json(n1.address, "DELETE", `/v1/processes/${pid}`);
      await until("the chain dropped on the keeper", async () => ((await request(n2.address, "GET", `/v1/internal/ckpt/${pid}`, undefined, dialer)).status === 409 ? true : undefined));
    } finally {
      await cluster.stop();
    }
  });

  it("ferry checkpoint: incremental (the second sends only what was written since), reported as events and metrics; retention keeps a chain short; the chain goes when its process ends", async () => {
    const cluster = await startCluster(["n1", "n2"]);
    const [n1, n2] = cluster.nodes as [NodeProc, NodeProc];
    try {
      const sha = await upload(n1.address, memhog);
      // 8 MiB written once, then idle: a base of all of it, increments of almost nothing.
      const started = performance.now();
      const { pid } = await run(n1.address, { module_sha256: sha, module_name: "memhog.wasm", args: ["8", "0", "600"] });
      await until("memhog to have touched its memory", async () => ((await outputOf(n1.address, pid)).stdout.toString().includes("touched") ? true : undefined));
      type Taken = { seq: number; pages: number; bytes: number; pause_ms: number; keeper: string; interval_ms: number; slowdown_ratio: number };
      const take = async (): Promise<Taken> => {
        const r = await ferry(["checkpoint", "--json", "--cluster", n1.address, pid]);
        assert.equal(r.status, 0, r.stderr.toString());
        return JSON.parse(r.stdout.toString()) as Taken;
      };
      const before = performance.now();
      const first = await take();
      const second = await take();
      // The first's interval runs from when the process began running, the second's from the end of the first's pause: within what this test saw.
      assert.ok(first.interval_ms <= performance.now() - started, `the first checkpoint's interval, ${first.interval_ms} ms`);
      assert.ok(second.interval_ms <= performance.now() - before, `the second checkpoint's interval, ${second.interval_ms} ms`);
      for (const t of [first, second]) assertSlowdown(t);
      assert.equal(first.keeper, "n2");
      assert.deepEqual([first.seq, second.seq], [1, 2]);
      assert.ok(first.pages >= 2048, `the base sent ${first.pages} pages`);
      assert.ok(second.pages < first.pages, `the increment sent ${second.pages} pages, the base ${first.pages}`);
      assert.ok(second.bytes < first.bytes);
      assert.ok(first.pause_ms >= 0 && second.pause_ms >= 0);
      const tap = await tapEvents(n1.address, "/v1/events?local=1");
      const event = await tap.until((e, d) => e.event === "checkpoint.taken" && d["pid"] === pid && d["checkpoint"] === 2);
      tap.close();
      assert.equal(event["pages"], second.pages);
      assert.equal(event["keeper"], "n2");
      const metrics = (await request(n1.address, "GET", "/metrics")).body.toString();
      assert.match(metrics, /ferry_checkpoints_total\{result="stored",code="",node="n1"\} 2/);
      assert.match(metrics, new RegExp(`ferry_checkpoint_age_seconds\\{pid="${pid}",node="n1"\\} \\d`));
      assert.match(metrics, /ferry_checkpoint_slowdown_ratio_count\{node="n1"\} 2/);
      const record = (await json<{ last: Record<string, unknown> }>(n1.address, "GET", `/v1/processes/${pid}/checkpoints`)).last;
      assert.equal(record["seq"], 2);
      assert.equal(record["slowdown_ratio"], second.slowdown_ratio);
      assert.equal(record["interval_ms"], second.interval_ms);
      assert.equal(event["slowdown_ratio"], second.slowdown_ratio);
      const text = await ferry(["checkpoint", "--cluster", n1.address, pid]);
      assert.match(text.stdout.toString(), /^checkpoint 3 of \S+ on n2: paused [\d.]+ ms, \d+ bytes, \d+ pages \([\d.]+ ms in all\); slowdown [\d.]+% of the [\d.]+ ms since the last\n$/);
      // Retention: increments that weigh little next to the base are kept as they are (merging would rebuild the whole memory each time).
      for (let i = 0; i < 20; i += 1) await json(n1.address, "POST", `/v1/processes/${pid}/checkpoint`, {});
      const dialer = await nodeDialer();
      const kept = await request(n2.address, "GET", `/v1/internal/ckpt/${pid}`, undefined, dialer);
      assert.equal(kept.status, 200, kept.body.toString());
      const k = JSON.parse(kept.body.toString()) as { seq: number; checkpoints: number };
      assert.equal(k.seq, 23);
      assert.equal(k.checkpoints, 23, "23 small increments of an idle process are not merged");
      await json(n1.address, "DELETE", `/v1/processes/${pid}`);
      await until("the chain dropped on the keeper", async () => ((await request(n2.address, "GET", `/v1/internal/ckpt/${pid}`, undefined, dialer)).status === 409 ? true : undefined));
      assert.equal(await lastCheckpoint(n1.address, pid), null);
    } finally {
      await cluster.stop();
    }
  });
});
