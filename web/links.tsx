/**
 * The graph of links between processes: a process is a circle in its
 * node's colour, a pair that exchanged messages is a line as thick as its
 * traffic, labelled with its rate. Laid out on a circle, grouped by node.
 */
import type { LinkPair, ProcessRow } from "./api.js";
import { formatBytes, nodeColour } from "./format.js";

/** Processes the graph draws at most: the ones of the busiest pairs. Past a few dozen a drawing says less than the table. */
export const GRAPH_PROCESSES_MAX = 60;

const W = 420;
const H = 300;
const R = 110;

/** The pids the graph draws: those of the busiest pairs first. */
export function graphPids(pairs: LinkPair[]): string[] {
  const pids: string[] = [];
  for (const p of [...pairs].sort((a, b) => b.bytes - a.bytes)) {
    for (const pid of [p.from, p.to]) if (!pids.includes(pid) && pids.length < GRAPH_PROCESSES_MAX) pids.push(pid);
  }
  return pids;
}

/** The graph panel. `where`: the processes' rows (node, state), for colour and grouping. */
export function LinkGraph(props: { pairs: LinkPair[]; where: Map<string, ProcessRow> }) {
  const pids = graphPids(props.pairs);
  const node = (pid: string): string => props.where.get(pid)?.node ?? pid.slice(0, pid.lastIndexOf("-"));
  // Grouped by node so a node's processes sit together on the circle.
  const order = [...pids].sort((a, b) => node(a).localeCompare(node(b)) || a.localeCompare(b));
  const at = new Map(order.map((pid, i) => {
    const angle = (2 * Math.PI * i) / Math.max(order.length, 1) - Math.PI / 2;
    return [pid, { x: W / 2 + R * Math.cos(angle), y: H / 2 + R * Math.sin(angle) }];
  }));
  // One line per unordered pair, with both directions' traffic.
  const lines = new Map<string, { a: string; b: string; bytes: number; messages: number; rate: number }>();
  for (const p of props.pairs) {
    if (!at.has(p.from) || !at.has(p.to)) continue;
    const [a, b] = p.from < p.to ? [p.from, p.to] : [p.to, p.from];
    const key = `${a} ${b}`;
    const l = lines.get(key) ?? { a, b, bytes: 0, messages: 0, rate: 0 };
    l.bytes += p.bytes;
    l.messages += p.messages;
    l.rate += p.bytes_per_s;
    lines.set(key, l);
  }
  const heaviest = Math.max(1, ...[...lines.values()].map((l) => l.bytes));
  return (
    <section class="panel links" aria-label="Links">
      <header>
        <h2>Links</h2>
      </header>
      {pids.length === 0 ? (
        <p class="muted">No messages between processes yet.</p>
      ) : (
        <svg viewBox={`0 0 ${W} ${H}`} class="graph" data-testid="link-graph" role="img" aria-label="Links between processes">
          {[...lines.values()].map((l) => {
            const a = at.get(l.a) as { x: number; y: number };
            const b = at.get(l.b) as { x: number; y: number };
            return (
              <g key={`${l.a} ${l.b}`} data-testid="link-edge" data-from={l.a} data-to={l.b} data-messages={l.messages}>
                <line x1={a.x} y1={a.y} x2={b.x} y2={b.y} stroke-width={1 + 7 * (l.bytes / heaviest)} class="edge" />
                <text x={(a.x + b.x) / 2} y={(a.y + b.y) / 2 - 6} text-anchor="middle" class="edge-label">
                  {l.messages} msgs · {formatBytes(l.rate)}/s
                </text>
              </g>
            );
          })}
          {order.map((pid) => {
            const p = at.get(pid) as { x: number; y: number };
            const outside = p.x >= W / 2;
            return (
              <g key={pid} data-testid="link-process" data-pid={pid}>
                <circle cx={p.x} cy={p.y} r="9" fill={nodeColour(node(pid))} class={props.where.get(pid)?.state === "running" ? "" : "ended"} />
                <text x={p.x + (outside ? 13 : -13)} y={p.y + 4} text-anchor={outside ? "start" : "end"} class="pid-label">
                  {pid} <tspan class="muted">@{node(pid)}</tspan>
                </text>
              </g>
            );
          })}
        </svg>
      )}
    </section>
  );
}
