/** The nodes: a card each, with load and memory plotted over the time the page has been open. */
import { useState } from "preact/hooks";
import type { NodeStats } from "./api.js";
import { formatBytes, formatDuration, nodeColour } from "./format.js";

/** One sample of a node, kept by the page (the node keeps no history for it). */
export interface Sample {
  t: number;
  /** Cores the guests want, and use, per core the node gives them (the load module's figures). */
  load_per_cpu: number;
  used_per_cpu: number;
  rss_bytes: number;
  guest_memory_bytes: number;
  processes: number;
}

/** Samples kept per node: five minutes at one every two seconds. */
export const SAMPLES_MAX = 150;

const PLOT_W = 220;
const PLOT_H = 48;

/** A line plot of `values` over `times`, scaled to at least `floor` so a quiet node does not look busy. */
function Plot(props: { label: string; times: number[]; series: { values: number[]; colour: string; name: string }[]; floor: number; format: (v: number) => string }) {
  const { times, series } = props;
  const t0 = times[0] ?? 0;
  const t1 = times[times.length - 1] ?? 1;
  const span = Math.max(t1 - t0, 1);
  const top = Math.max(props.floor, ...series.flatMap((s) => s.values));
  const x = (t: number): number => ((t - t0) / span) * PLOT_W;
  const y = (v: number): number => PLOT_H - (v / top) * (PLOT_H - 2) - 1;
  return (
    <figure class="plot">
      <figcaption>
        <span>{props.label}</span>
        {series.map((s) => (
          <span class="legend" key={s.name}>
            <i style={{ background: s.colour }} /> {s.name} {props.format(s.values[s.values.length - 1] ?? 0)}
          </span>
        ))}
      </figcaption>
      <svg viewBox={`0 0 ${PLOT_W} ${PLOT_H}`} width={PLOT_W} height={PLOT_H} role="img" aria-label={props.label}>
        <line x1="0" x2={PLOT_W} y1={y(top)} y2={y(top)} class="grid" />
        <line x1="0" x2={PLOT_W} y1={y(top / 2)} y2={y(top / 2)} class="grid" />
        {series.map((s) =>
          s.values.length < 2 ? null : (
            <polyline key={s.name} fill="none" stroke={s.colour} stroke-width="1.5" points={s.values.map((v, i) => `${x(times[i] ?? t0).toFixed(1)},${y(v).toFixed(1)}`).join(" ")} />
          ),
        )}
        <text x={PLOT_W - 2} y="9" text-anchor="end" class="scale">
          {props.format(top)}
        </text>
      </svg>
    </figure>
  );
}

/** The nodes' cards; a process dropped on a card asks to move it there. */
export function Nodes(props: { nodes: NodeStats[]; history: Map<string, Sample[]>; onDropProcess: (pid: string, node: string) => void; onDrain: (node: string, on: boolean) => void }) {
  return (
    <section class="nodes" aria-label="Nodes">
      {props.nodes.map((n) =>
        !n.up ? (
          <article class="node down" key={n.address} data-testid="node-card">
            <h3>
              <span class="dot" /> {n.address}
            </h3>
            <p class="muted">does not answer</p>
          </article>
        ) : (
          <NodeCard key={n.name} node={n} samples={props.history.get(n.name) ?? []} onDropProcess={props.onDropProcess} onDrain={props.onDrain} />
        ),
      )}
    </section>
  );
}

function NodeCard(props: { node: Extract<NodeStats, { up: true }>; samples: Sample[]; onDropProcess: (pid: string, node: string) => void; onDrain: (node: string, on: boolean) => void }) {
  const { node, samples } = props;
  // Draining moves every process: asked once more, as a kill is.
  const [asking, setAsking] = useState(false);
  const times = samples.map((s) => s.t);
  return (
    <article
      class="node"
      data-testid="node-card"
      data-node={node.name}
      onDragOver={(e) => {
        if (e.dataTransfer?.types.includes("application/x-ferry-pid")) {
          e.preventDefault();
          (e.currentTarget as HTMLElement).classList.add("drop");
        }
      }}
      onDragLeave={(e) => (e.currentTarget as HTMLElement).classList.remove("drop")}
      onDrop={(e) => {
        e.preventDefault();
        (e.currentTarget as HTMLElement).classList.remove("drop");
        const pid = e.dataTransfer?.getData("application/x-ferry-pid");
        if (pid) props.onDropProcess(pid, node.name);
      }}
    >
      <h3>
        <span class="dot" style={{ background: nodeColour(node.name) }} /> {node.name}
        {node.draining && (
          <span class="badge" data-testid="node-draining">
            draining
          </span>
        )}
        <small>{node.address}</small>
      </h3>
      <dl>
        <div>
          <dt>processes</dt>
          <dd data-testid="node-processes">
            {node.processes} / {node.processes_max}
          </dd>
        </div>
        <div>
          <dt>guests</dt>
          <dd>{formatBytes(node.guest_memory_bytes)}</dd>
        </div>
        <div>
          <dt>node</dt>
          <dd>{formatBytes(node.rss_bytes)}</dd>
        </div>
        <div>
          <dt>up</dt>
          <dd>{formatDuration(node.time_unix_ms - node.started_unix_ms)}</dd>
        </div>
      </dl>
      <Plot
        label={`load per CPU (${node.node_cpus})`}
        times={times}
        floor={1}
        format={(v) => v.toFixed(2)}
        series={[
          { name: "wanted", colour: "#f0b429", values: samples.map((s) => s.load_per_cpu) },
          { name: "used", colour: "#e07a5f", values: samples.map((s) => s.used_per_cpu) },
        ]}
      />
      <Plot
        label="memory"
        times={times}
        floor={64 * 1024 * 1024}
        format={formatBytes}
        series={[
          { name: "node", colour: "#5fa8d3", values: samples.map((s) => s.rss_bytes) },
          { name: "guests", colour: "#7bd389", values: samples.map((s) => s.guest_memory_bytes) },
        ]}
      />
      <p class="actions">
        {node.draining ? (
          <button type="button" data-testid="node-undrain" title="let processes land here again" onClick={() => props.onDrain(node.name, false)}>
            Undrain
          </button>
        ) : asking ? (
          <button
            type="button"
            class="danger"
            data-testid="node-drain-confirm"
            onClick={() => {
              setAsking(false);
              props.onDrain(node.name, true);
            }}
            onBlur={() => setAsking(false)}
          >
            Move all off?
          </button>
        ) : (
          <button type="button" data-testid="node-drain" title="move every process off, and let nothing new land here" onClick={() => setAsking(true)}>
            Drain
          </button>
        )}
      </p>
    </article>
  );
}
