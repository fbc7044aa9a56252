/**
 * Balance benchmark (issue 12): the skewed batch on real nodes — 2 nodes of
 * one core (`--cpus 1`), 8 equal CPU-bound jobs (examples/c/compute.wasm)
 * all started on n1 — with the balancer on and then off, in the same run,
 * against the ideal (4 × one job's time alone, measured first); and a
 * chatty pair's round trip (examples/c/pingpong.wasm, one message in
 * flight) split over two nodes and after the balancer brought it onto one.
 */
import fs from "node:fs";
import path from "node:path";
import { createHash } from "node:crypto";
import { ROOT, startPair, type NodePair } from "./_nodes.js";

/** Rounds of compute.wasm per job: a few seconds of one core. */
const JOB_ROUNDS = "30";
const JOBS = 8;

type Request = NodePair["request"];

async function json<T>(request: Request, address: string, method: string, p: string, body?: object): Promise<T> {
  const r = await request(address, method, p, body);
  if (r.status >= 400) throw new Error(`${method} ${p}: ${r.status} ${r.body.toString()}`);
  return JSON.parse(r.body.toString()) as T;
}

/** Runs `count` jobs on `node` (or round the nodes named) at once; resolves with the makespan (ms), how many moved and when. */
async function batch(pair: NodePair, node: string | string[], count: number): Promise<{ ms: number; moved: number; on: Record<string, number>; moves: { at_ms: number; pid: unknown; took_ms: number | null }[] }> {
  const t0 = performance.now();
  const t0_unix = Date.now();
  // Started all at once: the skew is there from the first round.
  const pids = await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const where = Array.isArray(node) ? (node[i % node.length] as string) : node;
      return (await json<{ pid: string }>(pair.request, pair.a1, "POST", "/v1/processes", { module_sha256: pair.sha, module_name: "compute.wasm", args: [JOB_ROUNDS], node: where })).pid;
    }),
  );
  await Promise.all(pids.map((pid) => json(pair.request, pair.a1, "GET", `/v1/processes/${pid}/wait`)));
  const ms = performance.now() - t0;
  const procs = await Promise.all(pids.map((pid) => json<{ moves: number; node: string }>(pair.request, pair.a1, "GET", `/v1/processes/${pid}`)));
  const on: Record<string, number> = {};
  for (const p of procs) on[p.node] = (on[p.node] ?? 0) + 1;
  // When each automatic move was decided (from the batch's start), and how long it took.
  const events = (await pair.request(pair.a1, "GET", "/v1/events")).body
    .toString()
    .split("\n\n")
    .map((b) => /^data: (.*)$/m.exec(b)?.[1])
    .filter((d): d is string => d !== undefined)
    .map((d) => JSON.parse(d) as Record<string, unknown>)
    .filter((e) => pids.includes(String(e["pid"])) && (e["time_unix_ms"] as number) >= t0_unix);
  const moves = events
    .filter((e) => e["type"] === "load.move")
    .map((e) => ({
      at_ms: (e["time_unix_ms"] as number) - t0_unix,
      pid: e["pid"],
      took_ms: (events.find((x) => x["type"] === "migration.succeeded" && x["pid"] === e["pid"])?.["total_ms"] as number | undefined) ?? null,
    }));
  return { ms, moved: procs.filter((p) => p.moves > 0).length, on, moves: moves.map((m) => ({ ...m, took_ms: m.took_ms === null ? null : Math.round(m.took_ms) })) };
}

/** Messages per second of the pair `from` → `to`, over about a second. */
async function rate(pair: NodePair, from: string, to: string): Promise<number> {
  const count = async (): Promise<number> => {
    const links = await json<{ from: string; to: string; messages: number }[]>(pair.request, pair.a1, "GET", "/v1/links");
    return links.filter((l) => l.from === from && l.to === to).reduce((n, l) => n + l.messages, 0);
  };
  const m0 = await count();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, 1500));
  return ((await count()) - m0) / ((performance.now() - t0) / 1000);
}

/** Prints the balance figures as one JSON object. */
export async function balanceBench(): Promise<void> {
  const pair = await startPair("c/compute.wasm", "tls", ["--cpus", "1", "--balance", "on"]);
  try {
    const one_ms = (await batch(pair, "n2", 1)).ms;
    // One job per node at once: one job's time with both nodes computing, as in the batch (on a machine
    // shared with other work, two busy threads each get less than one did alone).
    const two_ms = (await batch(pair, ["n1", "n2"], 2)).ms;
    const ideal_ms = (JOBS / 2) * one_ms;
    const ideal_parallel_ms = (JOBS / 2) * two_ms;
    const on = await batch(pair, "n1", JOBS);
    await json(pair.request, pair.a1, "PUT", "/v1/policy", { set: { balance: "off" } });
    const off = await batch(pair, "n1", JOBS);

    // The pair: split while the balancer is off, then brought together.
    await json(pair.request, pair.a1, "PUT", "/v1/policy", { set: { cpus: "2", colocate_bytes_per_s_min: "1024" } });
    const wasm = fs.readFileSync(path.join(ROOT, "examples", "c", "pingpong.wasm"));
    const pp = createHash("sha256").update(wasm).digest("hex");
    for (const a of [pair.a1, pair.a2]) await pair.request(a, "PUT", `/v1/modules/${pp}`, wasm);
    const start = async (args: string[], node: string): Promise<string> =>
      (await json<{ pid: string }>(pair.request, pair.a1, "POST", "/v1/processes", { module_sha256: pp, module_name: "pingpong.wasm", args, node })).pid;
    const pong = await start(["pong", "1000000000"], "n1");
    const ping = await start(["ping", pong, "1000000000", "1"], "n2");
    const split_per_s = await rate(pair, ping, pong);
    const t_on = performance.now();
    await json(pair.request, pair.a1, "PUT", "/v1/policy", { set: { balance: "on" } });
    for (;;) {
      const p = await json<{ node: string }>(pair.request, pair.a1, "GET", `/v1/processes/${ping}`);
      if (p.node === "n1") break;
      if (performance.now() - t_on > 30_000) throw new Error("the pair was not brought together within 30 s");
      await new Promise((r) => setTimeout(r, 50));
    }
    const together_ms = performance.now() - t_on;
    const together_per_s = await rate(pair, ping, pong);
    for (const pid of [ping, pong]) await pair.request(pair.a1, "DELETE", `/v1/processes/${pid}`);
    const r2 = (x: number): number => Math.round(x * 100) / 100;
    console.log(
      JSON.stringify({
        balance: {
          one_job_ms: Math.round(one_ms),
          one_job_per_node_ms: Math.round(two_ms),
          ideal_ms: Math.round(ideal_ms),
          ideal_parallel_ms: Math.round(ideal_parallel_ms),
          balanced: { makespan_ms: Math.round(on.ms), over_ideal: r2(on.ms / ideal_ms), over_ideal_parallel: r2(on.ms / ideal_parallel_ms), moved: on.moved, ended_on: on.on, moves: on.moves },
          unbalanced: { makespan_ms: Math.round(off.ms), over_ideal: r2(off.ms / ideal_ms), over_ideal_parallel: r2(off.ms / ideal_parallel_ms), moved: off.moved, ended_on: off.on },
          colocation: {
            round_trip_split_ms: r2(1000 / split_per_s),
            round_trip_together_ms: r2(1000 / together_per_s),
            brought_together_after_ms: Math.round(together_ms),
          },
        },
      }),
    );
  } finally {
    await pair.stop();
  }
}
