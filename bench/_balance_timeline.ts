/**
 * The skewed batch's timeline, from the cluster's events: when each job
 * started, when each automatic move was decided and when it arrived, when
 * each job ended, and from these where the makespan went. Pure: events in,
 * figures out.
 *
 * On two nodes of one core each, the batch's work W (8 jobs of T) is done
 * by 2 cores over the makespan M, so 2M = W + idle + lost, where idle is the
 * core time a node had nothing to run (the idle node before the moves
 * arrive, a node that finished first at the tail) and lost is core time
 * spent on anything but the jobs' progress (moves' pauses, a slower
 * machine than when T was measured). With W = 8T, M over the ideal 4T is
 * 1 + (idle + lost) / 8T: the timeline names both.
 */

/** An event as `GET /v1/events` streams it (the fields read here). */
export type BatchEvent = Record<string, unknown> & { type: string; node: string; time_unix_ms: number };

/** One automatic move of the batch. */
export interface BatchMove {
  pid: string;
  from: string;
  to: string;
  /** When the source published the move (decided, and its target had taken it), from the batch's start. */
  decided_ms: number;
  /** When the migration succeeded (the job runs at its target from then), from the batch's start; null if it did not. */
  arrived_ms: number | null;
  /** The migration's own figures: request to running, and stopped to running. */
  took_ms: number | null;
  downtime_ms: number | null;
  strategy: string;
}

/** Where the batch's time went. */
export interface BatchTimeline {
  /** Last job started (its process.started event), from the batch's start. */
  all_started_ms: number;
  /** First move decided, and first arrival, from the batch's start (null: no move). */
  first_decision_ms: number | null;
  first_arrival_ms: number | null;
  moves: BatchMove[];
  /** Jobs on each node when the last move of the first burst (the moves decided before any arrived... and those within a second) had arrived. */
  jobs_per_node_after_spread: Record<string, number>;
  /** Per node: core time with nothing to run between the batch's start and its end (ms). */
  idle_ms: Record<string, number>;
  /** Per node: job time spent waiting for its core (jobs present beyond one, integrated; ms). */
  queued_ms: Record<string, number>;
  /** From the first node running out of jobs to the last job's end (the other core idle meanwhile). */
  tail_ms: number;
  /** Each job's start (its process.started event) and end, from the batch's start, by pid. */
  started_ms: Record<string, number>;
  ended_ms: Record<string, number>;
}

/** Builds the timeline of the batch of `pids` started at `t0_unix_ms` on `start_node`, over `nodes`. */
export function batchTimeline(events: readonly BatchEvent[], batch: { pids: readonly string[]; t0_unix_ms: number; start_node: string; nodes: readonly string[] }): BatchTimeline {
  const { pids, t0_unix_ms, start_node, nodes } = batch;
  const mine = new Set(pids);
  const rel = (e: BatchEvent): number => e.time_unix_ms - t0_unix_ms;
  const ours = events.filter((e) => mine.has(String(e["pid"])) && e.time_unix_ms >= t0_unix_ms).sort((a, b) => a.time_unix_ms - b.time_unix_ms);
  const started = new Map<string, number>();
  const ended = new Map<string, number>();
  const moves: BatchMove[] = [];
  for (const e of ours) {
    const pid = String(e["pid"]);
    if (e.type === "process.started" && !started.has(pid)) started.set(pid, rel(e));
    if (e.type === "process.ended" && !ended.has(pid)) ended.set(pid, rel(e));
    if (e.type === "load.move") moves.push({ pid, from: String(e["from"]), to: String(e["to"]), decided_ms: rel(e), arrived_ms: null, took_ms: null, downtime_ms: null, strategy: String(e["strategy"]) });
    if (e.type === "migration.succeeded") {
      const m = moves.find((x) => x.pid === pid && x.arrived_ms === null);
      if (m !== undefined) {
        m.arrived_ms = rel(e);
        m.took_ms = Math.round(Number(e["total_ms"]));
        m.downtime_ms = Math.round(Number(e["downtime_ms"]));
      }
    }
  }
  const end_ms = Math.max(0, ...ended.values());
  // Each node's count of jobs over time: +1 where a job starts or arrives, -1 where it leaves or ends.
  const steps: { t: number; node: string; d: number }[] = [];
  const where = new Map<string, string>();
  for (const pid of pids) {
    steps.push({ t: started.get(pid) ?? 0, node: start_node, d: 1 });
    where.set(pid, start_node);
  }
  for (const m of moves) {
    if (m.arrived_ms === null) continue;
    steps.push({ t: m.arrived_ms, node: m.from, d: -1 }, { t: m.arrived_ms, node: m.to, d: 1 });
    where.set(m.pid, m.to);
  }
  // A job ends where it last arrived (moves are in time order, so `where` holds its last node).
  for (const [pid, t] of ended) steps.push({ t, node: where.get(pid) ?? start_node, d: -1 });
  steps.sort((a, b) => a.t - b.t || a.d - b.d);
  const idle: Record<string, number> = {};
  const queued: Record<string, number> = {};
  const count: Record<string, number> = {};
  const emptied: Record<string, number> = {};
  for (const n of nodes) {
    idle[n] = 0;
    queued[n] = 0;
    count[n] = 0;
  }
  let t_prev = 0;
  const first_arrival = moves.reduce((a, m) => (m.arrived_ms === null ? a : Math.min(a, m.arrived_ms)), Infinity);
  let after_spread: Record<string, number> | null = null;
  const burst_end = spreadEnd(moves);
  for (const s of steps) {
    const dt = Math.max(0, Math.min(s.t, end_ms) - t_prev);
    for (const n of nodes) {
      const k = count[n] as number;
      if (k === 0) idle[n] = (idle[n] as number) + dt;
      else queued[n] = (queued[n] as number) + (k - 1) * dt;
    }
    t_prev = Math.max(t_prev, Math.min(s.t, end_ms));
    if (after_spread === null && burst_end !== null && s.t > burst_end) after_spread = { ...count };
    count[s.node] = (count[s.node] ?? 0) + s.d;
    if (count[s.node] === 0 && s.d < 0) emptied[s.node] = s.t;
  }
  after_spread ??= { ...count };
  const first_empty = Math.min(...nodes.map((n) => emptied[n] ?? end_ms));
  const round = (r: Record<string, number>): Record<string, number> => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Math.round(v)]));
  const decisions = moves.map((m) => m.decided_ms);
  return {
    all_started_ms: Math.max(0, ...started.values()),
    first_decision_ms: decisions.length === 0 ? null : Math.min(...decisions),
    first_arrival_ms: first_arrival === Infinity ? null : first_arrival,
    moves,
    jobs_per_node_after_spread: after_spread,
    idle_ms: round(idle),
    queued_ms: round(queued),
    tail_ms: Math.round(end_ms - first_empty),
    started_ms: Object.fromEntries([...started].map(([pid, t]) => [pid, Math.round(t)])),
    ended_ms: Object.fromEntries([...ended].map(([pid, t]) => [pid, Math.round(t)])),
  };
}

/** When the first burst of moves (all decided before the first of them arrived, or within a second of the first decision) had all arrived; null without moves. */
function spreadEnd(moves: readonly BatchMove[]): number | null {
  const arrived = moves.filter((m) => m.arrived_ms !== null);
  if (arrived.length === 0) return null;
  const first_decision = Math.min(...moves.map((m) => m.decided_ms));
  const first_arrival = Math.min(...arrived.map((m) => m.arrived_ms as number));
  const burst = arrived.filter((m) => m.decided_ms <= Math.max(first_arrival, first_decision + 1000));
  return Math.max(...burst.map((m) => m.arrived_ms as number));
}
