/**
 * The dashboard's own data (docs/operations.md, "Dashboard"): each node's
 * load and memory, and the cluster's processes with their memory, as pages.
 * The node asked gathers its peers' answers (`GET /dashboard/peer/local`,
 * node certificates only) when a viewer asks, and keeps nothing between
 * asks: the page holds the history it plots.
 */
import type http from "node:http";
import os from "node:os";
import * as v from "valibot";
import { integer, list, parse, queryUint, text, Uint } from "../validate.js";
import { errorField } from "../log/mod.js";
import { NodeName, Pid } from "../process_spec.js";
import type { FerryNode } from "./node.js";
import { requestJson, sendJson } from "./_http.js";
import { queryOf } from "./_api_schemas.js";
import { comparatorOf, pageProcesses, ProcessQuerySchema, type ProcessPage, type ProcessQuery, type ProcessRow } from "./dashboard_query.js";
import type { NodeDown, NodeStats } from "./dashboard_rows.js";

/** Processes one peer may list: more than any node holds (its process quota is far lower). */
const PEER_ROWS_MAX = 100_000;
/** Arguments of a process the list shows: enough to tell processes apart, never a whole command line of megabytes. */
const ROW_ARGS_MAX = 8;
/** Characters of each argument the list shows. */
const ROW_ARG_CHARS_MAX = 80;



/** One node's stats as answered to the dashboard and `ferry top` (checked the same way on both). */
export const NodeStatsSchema = v.object({
  name: NodeName,
  address: text(300),
  up: v.literal(true),
  processes: Uint,
  processes_max: Uint,
  guest_memory_bytes: Uint,
  rss_bytes: Uint,
  heap_used_bytes: Uint,
  load1: v.pipe(v.number(), v.minValue(0)),
  cpus: integer(1, 1 << 20),
  node_cpus: integer(1, 1 << 20),
  runnable: v.pipe(v.number(), v.minValue(0), v.maxValue(1 << 20)),
  cpu_used: v.pipe(v.number(), v.minValue(0), v.maxValue(1 << 20)),
  draining: v.boolean(),
  post_copy: v.boolean(),
  started_unix_ms: Uint,
  time_unix_ms: Uint,
});

const ProcessRowSchema = v.object({
  pid: Pid,
  node: NodeName,
  home: NodeName,
  state: text(32),
  module_name: text(300),
  args: list(text(ROW_ARG_CHARS_MAX), ROW_ARGS_MAX),
  started_unix_ms: Uint,
  moves: Uint,
  memory_bytes: v.nullable(Uint),
});

/** A peer's first rows of a query, and its counts (`top` given). */
const PeerPageSchema = v.object({
  total: Uint,
  all: Uint,
  states: v.pipe(v.record(text(32), Uint), v.check((m) => Object.keys(m).length <= 16, "at most 16 states")),
  rows: list(ProcessRowSchema, PEER_ROWS_MAX),
});

/** A peer's answer to `GET /dashboard/peer/local`. */
const PeerLocalSchema = v.object({
  stats: NodeStatsSchema,
  page: v.optional(PeerPageSchema),
  rows: v.optional(list(ProcessRowSchema, PEER_ROWS_MAX)),
  /** Memory of the processes running there whose home is elsewhere, by pid: their homes' rows get theirs from it. */
  memory: v.optional(v.pipe(v.record(Pid, Uint), v.check((m) => Object.keys(m).length <= PEER_ROWS_MAX, `at most ${PEER_ROWS_MAX} processes`))),
});

/**
 * What a node asks a peer: its stats, and with `rows=1` its process rows:
 * every one, or with `top=K` only the first K that pass the list's filter
 * in its order (the query's own fields), with the counts. A page of the
 * list needs no more than its offset plus its length from any one node, so
 * a watched list costs each node a page, not its whole table, every poll.
 */
const PeerQuerySchema = v.object({
  rows: v.optional(v.picklist(["0", "1"], "must be 0 or 1"), "0"),
  top: v.optional(queryUint(PEER_ROWS_MAX)),
  q: ProcessQuerySchema.entries.q,
  state: ProcessQuerySchema.entries.state,
  node: ProcessQuerySchema.entries.node,
  pids: ProcessQuerySchema.entries.pids,
  sort: ProcessQuerySchema.entries.sort,
});

/** What this node says of itself to the dashboard. */
export function localStats(node: FerryNode): NodeStats {
  const mem = process.memoryUsage();
  const info = node.info();
  const load = node.load.own;
  return {
    name: node.name,
    address: node.address,
    up: true,
    processes: node.table.running_count,
    processes_max: node.limits.processes_max,
    guest_memory_bytes: node.table.guestMemoryBytes(),
    rss_bytes: mem.rss,
    heap_used_bytes: mem.heapUsed,
    load1: os.loadavg()[0] ?? 0,
    cpus: Math.max(1, os.availableParallelism()),
    node_cpus: load.cpus,
    runnable: load.runnable,
    cpu_used: load.cpu_used,
    draining: node.load.draining,
    post_copy: info.post_copy.available,
    started_unix_ms: node.started_unix_ms,
    time_unix_ms: Date.now(),
  };
}

/**
 * The processes this node is home to, with the memory of those running
 * here. A process running elsewhere gets its memory from its runner's
 * answer (see {@link clusterRows}).
 */
export function localRows(node: FerryNode): ProcessRow[] {
  const memory = node.table.runningMemoryBytes();
  return node.table.homes().map((r) => ({
    pid: r.pid,
    node: r.node,
    home: r.home,
    state: r.state,
    module_name: r.module_name,
    args: r.args.slice(0, ROW_ARGS_MAX).map((a) => a.slice(0, ROW_ARG_CHARS_MAX)),
    started_unix_ms: r.started_unix_ms,
    moves: r.moves,
    memory_bytes: r.exit === null ? (memory.get(r.pid) ?? null) : null,
  }));
}

/**
 * Memory of the processes running here whose home is elsewhere: the rows
 * their homes list have none. Only those (the processes that moved), not
 * every guest here: a node of thousands sent its whole table every poll.
 */
function visitorMemory(node: FerryNode): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of node.table.runningAll()) if (r.home !== node.name) out.set(r.pid, r.proc.memory_bytes);
  return out;
}

/** `GET /dashboard/peer/local`: a peer asks for this node's stats (and with `rows=1`, its rows and running memory). */
export function servePeerLocal(node: FerryNode, url: URL, res: http.ServerResponse): void {
  const query = parse(PeerQuerySchema, queryOf(url), "query");
  if (query.rows !== "1") return sendJson(res, 200, { stats: localStats(node) });
  if (query.top === undefined) return sendJson(res, 200, { stats: localStats(node), rows: localRows(node), memory: Object.fromEntries(visitorMemory(node)) });
  const { total, all, states, rows } = pageProcesses(localRows(node), { ...query, offset: 0, limit: query.top });
  sendJson(res, 200, { stats: localStats(node), page: { total, all, states, rows }, memory: Object.fromEntries(visitorMemory(node)) });
}

/**
 * One page of the cluster's process list: each node's first rows of the
 * query (as many as the page's end), merged in the query's order. Sorting by
 * memory needs every row (a home does not know the memory of its processes
 * that run elsewhere), so that sort still asks for all of them.
 */
async function gatherPage(node: FerryNode, query: ProcessQuery): Promise<ProcessPage> {
  const top = query.sort === "memory" ? PEER_ROWS_MAX : Math.min(PEER_ROWS_MAX, query.offset + query.limit);
  const ask = new URLSearchParams({ rows: "1", top: String(top), q: query.q, state: query.state, node: query.node, pids: query.pids, sort: query.sort });
  const memory = visitorMemory(node);
  const local = pageProcesses(localRows(node), { ...query, offset: 0, limit: top });
  const pages = [local];
  await Promise.all(
    node.peers.map(async (address) => {
      try {
        const answer = parse(PeerLocalSchema, await requestJson(node.dialer, address, "GET", `/dashboard/peer/local?${ask}`), `node ${address}'s dashboard answer`);
        for (const [pid, bytes] of Object.entries(answer.memory ?? {})) memory.set(pid, bytes);
        // A peer of an older version answers with every row: paged here instead.
        pages.push(answer.page !== undefined ? { ...answer.page, offset: 0 } : pageProcesses(answer.rows ?? [], { ...query, offset: 0, limit: top }));
      } catch (err: unknown) {
        // A peer that is down (or answers nonsense) lists nothing; the overview shows it down.
        node.log.debug({ address, err: errorField(err) }, "a peer did not answer the dashboard");
      }
    }),
  );
  const rows: ProcessRow[] = [];
  const states: Record<string, number> = {};
  let total = 0;
  let all = 0;
  for (const p of pages) {
    total += p.total;
    all += p.all;
    for (const [state, n] of Object.entries(p.states)) states[state] = (states[state] ?? 0) + n;
    rows.push(...p.rows);
  }
  // A row's memory comes from its runner, which may not be its home.
  for (const r of rows) if (r.memory_bytes === null && (r.state === "running" || r.state === "migrating")) r.memory_bytes = memory.get(r.pid) ?? null;
  rows.sort(comparatorOf(query.sort));
  return { total, all, offset: query.offset, rows: rows.slice(query.offset, query.offset + query.limit), states };
}

/** Every node's stats, this one's first; a peer that does not answer is down. */
async function gather(node: FerryNode): Promise<(NodeStats | NodeDown)[]> {
  const answers = await Promise.all(
    node.peers.map(async (address): Promise<NodeStats | NodeDown> => {
      try {
        return parse(PeerLocalSchema, await requestJson(node.dialer, address, "GET", "/dashboard/peer/local"), `node ${address}'s dashboard answer`).stats;
      } catch (err: unknown) {
        // A peer that is down (or answers nonsense) is shown down; `ferry nodes` and the events say more.
        node.log.debug({ address, err: errorField(err) }, "a peer did not answer the dashboard");
        return { address, up: false };
      }
    }),
  );
  return [localStats(node), ...answers];
}

/** `GET /dashboard/api/overview`: every node's stats now. */
export async function serveOverview(node: FerryNode, res: http.ServerResponse): Promise<void> {
  const nodes = await gather(node);
  sendJson(res, 200, { node: node.name, time_unix_ms: Date.now(), nodes });
}

/** `GET /dashboard/api/processes?q=&state=&node=&sort=&offset=&limit=`: one page of the cluster's processes. */
export async function serveProcesses(node: FerryNode, url: URL, res: http.ServerResponse): Promise<void> {
  const query = parse(ProcessQuerySchema, queryOf(url), "query");
  sendJson(res, 200, await gatherPage(node, query));
}
