/**
 * The dashboard's process list as pages: filter, sort, then one window of
 * it. The cluster may run tens of thousands of processes; the page shows a
 * few dozen rows at a time (a virtualised list) and asks only for those, so
 * neither the browser nor the wire carries the whole table each poll. Pure:
 * the node's API and the browser test's synthetic answer both use it.
 */
import * as v from "valibot";
import { queryUint, text } from "../validate.js";
import type { ProcessPage, ProcessRow } from "./dashboard_rows.js";

export type { ProcessPage, ProcessRow };

/** Rows one page may hold: more than any screen shows, few enough to send every poll. */
export const PAGE_ROWS_MAX = 500;

/** Pids one query may name: the link graph's processes. */
export const PIDS_MAX = 500;

/** Orders a list may be sorted in. */
export const SORTS = ["pid", "node", "state", "memory", "uptime"] as const;

/** `GET /dashboard/api/processes`'s query. */
export const ProcessQuerySchema = v.object({
  /** Text a row must contain (in its pid, module, arguments, node or state), case-insensitive. */
  q: v.optional(text(200), ""),
  state: v.optional(v.picklist(["", "running", "migrating", "exited", "killed", "failed", "lost"], "not a process state"), ""),
  node: v.optional(text(64), ""),
  /** Only these pids (comma-separated): the link graph's processes. */
  pids: v.optional(v.pipe(text(PIDS_MAX * 50), v.regex(/^([A-Za-z0-9_]{1,32}-\d{1,15}(,|$))*$/, "must be pids separated by commas")), ""),
  sort: v.optional(v.picklist(SORTS, `must be one of ${SORTS.join(", ")}`), "pid"),
  offset: v.optional(queryUint(Number.MAX_SAFE_INTEGER), "0"),
  limit: v.optional(queryUint(PAGE_ROWS_MAX), "100"),
});

/** A process query as checked. */
export type ProcessQuery = v.InferOutput<typeof ProcessQuerySchema>;

/** Filters, sorts and cuts `rows` as `query` says. */
export function pageProcesses(rows: readonly ProcessRow[], query: ProcessQuery): ProcessPage {
  const states: Record<string, number> = {};
  for (const r of rows) states[r.state] = (states[r.state] ?? 0) + 1;
  const needle = query.q.trim().toLowerCase();
  const pids = query.pids === "" ? null : new Set(query.pids.split(",").slice(0, PIDS_MAX));
  const kept = rows.filter(
    (r) =>
      (pids === null || pids.has(r.pid)) &&
      (query.state === "" || r.state === query.state) &&
      (query.node === "" || r.node === query.node) &&
      (needle === "" || `${r.pid} ${r.module_name} ${r.args.join(" ")} ${r.node} ${r.state}`.toLowerCase().includes(needle)),
  );
  kept.sort(comparatorOf(query.sort));
  return { total: kept.length, all: rows.length, offset: query.offset, rows: kept.slice(query.offset, query.offset + query.limit), states };
}

/** The order of one sort key; ties fall back to the pid's order, so pages never overlap or skip (also merging nodes' pages). */
export function comparatorOf(sort: ProcessQuery["sort"]): (a: ProcessRow, b: ProcessRow) => number {
  const by_pid = (a: ProcessRow, b: ProcessRow): number => comparePids(a.pid, b.pid);
  switch (sort) {
    case "pid":
      return by_pid;
    case "node":
      return (a, b) => a.node.localeCompare(b.node) || by_pid(a, b);
    case "state":
      return (a, b) => a.state.localeCompare(b.state) || by_pid(a, b);
    case "memory":
      return (a, b) => (b.memory_bytes ?? -1) - (a.memory_bytes ?? -1) || by_pid(a, b);
    case "uptime":
      return (a, b) => a.started_unix_ms - b.started_unix_ms || by_pid(a, b);
  }
}

/** Pids (`HOME-N`) by home, then by number: n1-2 before n1-10. */
export function comparePids(a: string, b: string): number {
  const da = a.lastIndexOf("-");
  const db = b.lastIndexOf("-");
  const home = a.slice(0, da).localeCompare(b.slice(0, db));
  if (home !== 0) return home;
  return Number(a.slice(da + 1)) - Number(b.slice(db + 1)) || a.localeCompare(b);
}
