/**
 * Balance benchmark (issue 12): the skewed batch on real nodes — 2 nodes of
 * one core (`--cpus 1`), 8 equal CPU-bound jobs (examples/c/compute.wasm)
 * all started on n1 — with the balancer on and then off, in the same run,
 * against the ideal (4 × one job's time), and the same jobs started half
 * on each node with nothing moved (the floor of placement); and a chatty pair's round trip
 * (examples/c/pingpong.wasm, one message in flight) split over two nodes
 * and after the balancer brought it onto one.
 *
 * Self-checking, because the machine it runs on is shared: one job's time
 * (alone, and one per node at once) is measured before, between and after
 * the two batches, and each batch's ideal is 4 × the mean of the two
 * measurements around it. A batch is valid only if those two agree (the
 * machine did not get busier or quieter meanwhile), if one job per node at
 * once takes about as long as one alone (the machine could give both nodes
 * a core), and if the node daemons got most of a core each while they
 * computed (their CPU time over wall time, from /proc). The balanced
 * batch's timeline (bench/_balance_timeline.ts) says where its time went.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createHash } from "node:crypto";
import { ROOT, startPair, type NodePair } from "./_nodes.js";
import { batchTimeline, type BatchEvent, type BatchTimeline } from "./_balance_timeline.js";

/** Rounds of compute.wasm per job: a few seconds of one core. */
const JOB_ROUNDS = "30";
const JOBS = 8;
/** Two measurements of one job around a batch may differ by this share before the batch is called invalid: more means the machine's load changed under it. */
const DRIFT_MAX = 0.15;
/** One job per node at once may take this much longer than one alone: more means the machine could not give both nodes a core, and 4 × one job is no ideal for two. */
const PAIR_SLOWDOWN_MAX = 1.15;
/** A computing node daemon must get at least this share of a core for its figures to say anything about Ferry. */
const CORE_SHARE_MIN = 0.8;
/** Linux's USER_HZ: /proc counts CPU time in these ticks per second on every architecture Node runs on. */
const TICKS_PER_S = 100;

type Request = NodePair["request"];

async function json<T>(request: Request, address: string, method: string, p: string, body?: object): Promise<T> {
  const r = await request(address, method, p, body);
  if (r.status >= 400) throw new Error(`${method} ${p}: ${r.status} ${r.body.toString()}`);
  return JSON.parse(r.body.toString()) as T;
}

/** CPU seconds process `pid` has used (all its threads), from /proc; null where there is no /proc. */
function cpuSeconds(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command's closing parenthesis: state is field 3, utime 14, stime 15.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(rest[11]) + Number(rest[12])) / TICKS_PER_S;
  } catch (err: unknown) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
}

/** The cluster's recent events (every node's, through n1). */
async function events(pair: NodePair): Promise<BatchEvent[]> {
  return (await pair.request(pair.a1, "GET", "/v1/events")).body
    .toString()
    .split("\n\n")
    .map((b) => /^data: (.*)$/m.exec(b)?.[1])
    .filter((d): d is string => d !== undefined)
    .map((d) => JSON.parse(d) as BatchEvent);
}

interface Batch {
  ms: number;
  pids: string[];
  t0_unix_ms: number;
  /** Share of a core each node daemon used over the batch (null without /proc). */
  cores: (number | null)[];
  moved: number;
  ended_on: Record<string, number>;
}

/** Runs `count` jobs on `node` (or round the nodes named) at once; resolves with the makespan (ms) and what each node used. */
async function batch(pair: NodePair, node: string | string[], count: number): Promise<Batch> {
  const cpu0 = pair.pids.map(cpuSeconds);
  const t0 = performance.now();
  const t0_unix_ms = Date.now();
  // Started all at once: the skew is there from the first round.
  const pids = await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const where = Array.isArray(node) ? (node[i % node.length] as string) : node;
      return (await json<{ pid: string }>(pair.request, pair.a1, "POST", "/v1/processes", { module_sha256: pair.sha, module_name: "compute.wasm", args: [JOB_ROUNDS], node: where })).pid;
    }),
  );
  await Promise.all(pids.map((pid) => json(pair.request, pair.a1, "GET", `/v1/processes/${pid}/wait`)));
  const ms = performance.now() - t0;
  const cores = pair.pids.map((pid, i) => {
    const a = cpu0[i];
    const b = cpuSeconds(pid);
    return a === null || a === undefined || b === null ? null : round2((b - a) / (ms / 1000));
  });
  const procs = await Promise.all(pids.map((pid) => json<{ moves: number; node: string }>(pair.request, pair.a1, "GET", `/v1/processes/${pid}`)));
  const ended_on: Record<string, number> = {};
  for (const p of procs) ended_on[p.node] = (ended_on[p.node] ?? 0) + 1;
  return { ms, pids, t0_unix_ms, cores, moved: procs.filter((p) => p.moves > 0).length, ended_on };
}

/** One job's time: alone on n2, and one on each node at once. */
interface Reference {
  alone_ms: number;
  alone_cores: number | null;
  per_node_ms: number;
  per_node_cores: (number | null)[];
  load_average: number;
}

async function reference(pair: NodePair): Promise<Reference> {
  const alone = await batch(pair, "n2", 1);
  const both = await batch(pair, ["n1", "n2"], 2);
  return { alone_ms: Math.round(alone.ms), alone_cores: alone.cores[1] ?? null, per_node_ms: Math.round(both.ms), per_node_cores: both.cores, load_average: round2(os.loadavg()[0] ?? 0) };
}

/** A batch judged against the references measured before and after it. */
function judged(b: Batch, before: Reference, after: Reference, busy_nodes: number): Record<string, unknown> {
  const one_ms = (before.alone_ms + after.alone_ms) / 2;
  const ideal_ms = (JOBS / 2) * one_ms;
  const drift = Math.abs(after.alone_ms - before.alone_ms) / Math.min(after.alone_ms, before.alone_ms);
  const invalid: string[] = [];
  if (drift > DRIFT_MAX) invalid.push(`one job took ${before.alone_ms} ms before and ${after.alone_ms} ms after (${Math.round(drift * 100)} % apart, over ${DRIFT_MAX * 100} %): the machine's load changed`);
  for (const r of [before, after]) {
    if (r.per_node_ms > r.alone_ms * PAIR_SLOWDOWN_MAX) invalid.push(`one job per node at once took ${r.per_node_ms} ms against ${r.alone_ms} ms alone: the machine could not give both nodes a core`);
  }
  // The nodes that had jobs to run the whole batch should each have had most of a core.
  const cores = b.cores.slice(0, busy_nodes);
  if (cores.some((c) => c !== null && c < CORE_SHARE_MIN)) invalid.push(`the computing nodes had ${cores.join(" and ")} of a core (under ${CORE_SHARE_MIN}): the machine was busy with other work`);
  return {
    makespan_ms: Math.round(b.ms),
    ideal_ms: Math.round(ideal_ms),
    over_ideal: round2(b.ms / ideal_ms),
    valid: invalid.length === 0,
    invalid_because: invalid,
    one_job_before_ms: before.alone_ms,
    one_job_after_ms: after.alone_ms,
    node_cores: b.cores,
    moved: b.moved,
    ended_on: b.ended_on,
  };
}

/** The makespan's parts, in words: how far it is over the ideal and why. */
function explain(t: BatchTimeline, makespan_ms: number, ideal_ms: number): string {
  const idle = Object.values(t.idle_ms).reduce((a, b) => a + b, 0);
  const over = makespan_ms - ideal_ms;
  const rest = over - idle / 2;
  const moves = t.moves.map((m) => `${m.pid} ${m.from}->${m.to} decided ${m.decided_ms} ms, arrived ${m.arrived_ms ?? "never"} ms (took ${m.took_ms ?? "-"} ms, paused ${m.downtime_ms ?? "-"} ms)`).join("; ");
  return (
    `makespan ${Math.round(makespan_ms)} ms = ideal ${Math.round(ideal_ms)} ms + ${Math.round(over)} ms: ` +
    `half the ${idle} ms of idle core time (${Object.entries(t.idle_ms).map(([n, v]) => `${n} ${v} ms`).join(", ")}; of which ${t.tail_ms} ms at the tail) is ${Math.round(idle / 2)} ms, ` +
    `the other ${Math.round(rest)} ms is core time lost to moves' pauses and to the machine running slower than when one job was timed. ` +
    `Jobs all started by ${t.all_started_ms} ms; first move decided at ${t.first_decision_ms ?? "-"} ms, first arrival at ${t.first_arrival_ms ?? "-"} ms; ` +
    `${t.moves.length} moves: ${moves}; after the first burst the nodes held ${JSON.stringify(t.jobs_per_node_after_spread)}.`
  );
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
    const load_start = round2(os.loadavg()[0] ?? 0);
    // Untimed: nodes just started are still warming their workers and compiling the module's hot code,
    // which made the first reference's pair of jobs read as a machine that cannot give both nodes a core.
    await reference(pair);
    const ref0 = await reference(pair);
    const on = await batch(pair, "n1", JOBS);
    const timeline = batchTimeline(await events(pair), { pids: on.pids, t0_unix_ms: on.t0_unix_ms, start_node: "n1", nodes: ["n1", "n2"] });
    const ref1 = await reference(pair);
    await json(pair.request, pair.a1, "PUT", "/v1/policy", { set: { balance: "off" } });
    const off = await batch(pair, "n1", JOBS);
    const ref2 = await reference(pair);
    // The floor of placement: the same jobs started half on each node, nothing moved. Its distance from the
    // ideal is what starting and running 8 jobs on two nodes of one machine costs over one job alone (daemons,
    // worker boots, output), which no balancer can take back; the balanced batch's distance from it is the balancer's.
    const even = await batch(pair, ["n1", "n2"], JOBS);
    const ref3 = await reference(pair);
    const balanced = judged(on, ref0, ref1, 1);
    const unbalanced = judged(off, ref1, ref2, 1);
    const evenly = judged(even, ref2, ref3, 2);

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
    const r2 = round2;
    console.log(
      JSON.stringify(
        {
          balance: {
            load_average: { start: load_start, end: round2(os.loadavg()[0] ?? 0) },
            valid: balanced["valid"] === true && unbalanced["valid"] === true && evenly["valid"] === true,
            references: [ref0, ref1, ref2, ref3],
            balanced: { ...balanced, explained: explain(timeline, on.ms, balanced["ideal_ms"] as number), timeline },
            unbalanced,
            even_placement: evenly,
            balanced_over_even: round2(((balanced["makespan_ms"] as number) / (balanced["ideal_ms"] as number)) / ((evenly["makespan_ms"] as number) / (evenly["ideal_ms"] as number))),
            colocation: {
              round_trip_split_ms: r2(1000 / split_per_s),
              round_trip_together_ms: r2(1000 / together_per_s),
              brought_together_after_ms: Math.round(together_ms),
            },
          },
        },
        null,
        1,
      ),
    );
  } finally {
    await pair.stop();
  }
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
