/**
 * `ferry top`'s frame: nodes (load, memory, processes) and the processes
 * using the most memory, as lines that fit a terminal. Pure: text in the
 * answers, text out, so a frame is tested without a terminal or a cluster.
 */
import * as v from "valibot";
import { NodeStatsSchema } from "../node/mod.js";
import { text, Uint } from "../validate.js";

/** `GET /dashboard/api/overview` as top reads it. */
export const OverviewSchema = v.object({
  node: text(64),
  time_unix_ms: Uint,
  nodes: v.array(
    v.union([
      NodeStatsSchema,
      v.object({ address: text(300), up: v.literal(false) }),
    ]),
  ),
});

/** `GET /dashboard/api/processes` as top reads it. */
export const PageSchema = v.object({
  total: Uint,
  all: Uint,
  rows: v.array(
    v.object({
      pid: text(64),
      node: text(64),
      state: text(32),
      module_name: text(300),
      args: v.array(text(200)),
      started_unix_ms: Uint,
      moves: Uint,
      memory_bytes: v.nullable(Uint),
    }),
  ),
  states: v.record(v.string(), Uint),
});

/** What one frame shows. */
export interface TopFrame {
  overview: v.InferOutput<typeof OverviewSchema>;
  page: v.InferOutput<typeof PageSchema>;
  now_unix_ms: number;
  /** The terminal's size: lines are cut to `columns`, and no more than `rows` are made. */
  columns: number;
  rows: number;
}

/** Lines above the process table besides one per node: title, blank, node header, blank, process summary, process header. */
export const TOP_CHROME_LINES = 6;

/** The frame's lines. */
export function renderTop(frame: TopFrame): string[] {
  const { overview, page } = frame;
  const up = overview.nodes.filter((n) => n.up).length;
  const lines: string[] = [];
  lines.push(`ferry top — ${new Date(frame.now_unix_ms).toISOString().slice(11, 19)} UTC — asked node ${overview.node} — ${up} of ${overview.nodes.length} nodes up   (q quits)`);
  lines.push("");
  // The node's own figures from its load module (cores its guests want and use, over its --cpus), as the dashboard plots them:
  // the machine's load average would be the same for every node on one host.
  const nodeRows = overview.nodes.map((n) =>
    n.up
      ? [n.name, n.address, `${n.processes}/${n.processes_max}`, (n.runnable / n.node_cpus).toFixed(2), (n.cpu_used / n.node_cpus).toFixed(2), bytes(n.guest_memory_bytes), bytes(n.rss_bytes), duration(n.time_unix_ms - n.started_unix_ms)]
      : ["?", n.address, "down", "", "", "", "", ""],
  );
  lines.push(...table(["NODE", "ADDRESS", "PROCS", "LOAD/CPU", "USED/CPU", "GUEST MEM", "NODE MEM", "UP"], nodeRows, [false, false, true, true, true, true, true, true]));
  lines.push("");
  const states = Object.entries(page.states)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([s, n]) => `${n} ${s}`)
    .join(", ");
  lines.push(`${page.all} processes${states === "" ? "" : ` (${states})`}; by memory:`);
  const room = Math.max(0, frame.rows - lines.length - 1);
  const procRows = page.rows.slice(0, room).map((r) => [
    r.pid,
    r.node,
    r.state,
    bytes(r.memory_bytes),
    r.state === "running" || r.state === "migrating" ? duration(frame.now_unix_ms - r.started_unix_ms) : "",
    String(r.moves),
    [r.module_name, ...r.args].join(" "),
  ]);
  lines.push(...table(["PID", "NODE", "STATE", "MEMORY", "UPTIME", "MOVES", "PROGRAM"], procRows, [false, false, false, true, true, true, false]));
  return lines.slice(0, frame.rows).map((l) => cut(l, frame.columns));
}

/** Columns two spaces apart; numbers right-aligned; the last column unpadded. */
function table(header: string[], rows: string[][], right: boolean[]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : right[i] === true ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [header, ...rows].map(line);
}

function cut(line: string, columns: number): string {
  return line.length <= columns ? line : `${line.slice(0, Math.max(0, columns - 1))}…`;
}

/** Bytes with a binary unit. */
export function bytes(n: number | null): string {
  if (n === null) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i += 1;
  }
  return `${i === 0 ? value.toFixed(0) : value.toFixed(1)} ${units[i]}`;
}

/** A duration in its two largest units. */
export function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, "0")}h`;
}
