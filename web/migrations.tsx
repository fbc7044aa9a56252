/**
 * Migrations, as the cluster's events tell them: one bar per phase (offer,
 * pre-copy rounds, stop, final copy, post-copy), filled as the phase moves on:
 * `migration.phase` at each step, `migration.progress` with the bytes moved
 * within the phase under way (a few a second, sent only to open streams).
 */
import type { ClusterEvent } from "./api.js";
import { formatBytes, formatDuration } from "./format.js";

/** One migration the page has seen begin (or heard of in the recent events). */
export interface Migration {
  pid: string;
  from: string;
  to: string;
  strategy: string;
  state: "running" | "succeeded" | "failed" | "stalled";
  started_unix_ms: number;
  /** The phase now, its round, and the bytes sent so far. */
  phase: string;
  round: number;
  bytes: number;
  memory_bytes: number | null;
  /** Pre-copy from its second round: how fast the process writes memory, bytes per second (null: not measured yet). */
  dirty_bytes_per_s: number | null;
  /** Phases seen, in order. */
  seen: string[];
  /** Bytes sent when each phase began. */
  phase_start_bytes: Record<string, number>;
  total_ms?: number;
  downtime_ms?: number;
  message?: string;
}

/** Migrations kept on the page: the ones under way and the latest that ended. */
export const MIGRATIONS_SHOWN_MAX = 12;

/** The phases of each strategy, in order. */
const PHASES: Record<string, string[]> = {
  "stop-copy": ["offered", "stopping", "copying"],
  "pre-copy": ["offered", "round", "stopping", "copying"],
  "post-copy": ["offered", "stopping", "copying", "post-copy"],
  hybrid: ["offered", "round", "stopping", "copying", "post-copy"],
};

const PHASE_NAMES: Record<string, string> = { offered: "offer", round: "rounds", stopping: "stop", copying: "final copy", "post-copy": "post-copy" };

/** Folds one event into the migrations; returns the same map (changed) or null if the event is not a migration's. */
export function foldMigration(migrations: Map<string, Migration>, e: ClusterEvent): Map<string, Migration> | null {
  if (!e.type.startsWith("migration.") || e.pid === undefined) return null;
  const key = e.pid;
  let m = migrations.get(key);
  const moving = e.type === "migration.phase" || e.type === "migration.progress";
  if (e.type === "migration.started" || m === undefined || (m.state !== "running" && moving)) {
    m = {
      pid: e.pid,
      from: e.node,
      to: e.to ?? "?",
      strategy: e.strategy ?? "?",
      state: "running",
      started_unix_ms: e.time_unix_ms,
      phase: "offered",
      round: 0,
      bytes: 0,
      memory_bytes: null,
      dirty_bytes_per_s: null,
      seen: [],
      phase_start_bytes: {},
    };
  }
  const next: Migration = { ...m };
  if (moving && e.phase !== undefined) {
    if (!next.seen.includes(e.phase)) {
      next.seen = [...next.seen, e.phase];
      next.phase_start_bytes = { ...next.phase_start_bytes, [e.phase]: next.bytes };
    }
    next.phase = e.phase;
    next.round = e.round ?? next.round;
    next.bytes = e.bytes ?? next.bytes;
    next.memory_bytes = e.memory_bytes ?? next.memory_bytes;
    next.dirty_bytes_per_s = e.dirty_bytes_per_s ?? next.dirty_bytes_per_s;
  } else if (e.type === "migration.succeeded") {
    next.state = "succeeded";
    next.bytes = e.bytes ?? next.bytes;
    next.total_ms = e.total_ms;
    next.downtime_ms = e.downtime_ms;
  } else if (e.type === "migration.failed") {
    next.state = "failed";
    next.message = `${e.code ?? ""} ${e.message ?? ""}`.trim();
  } else if (e.type === "migration.stalled") {
    next.state = "stalled";
  }
  migrations.delete(key);
  migrations.set(key, next);
  // The oldest ended ones go first; one under way is always shown.
  while (migrations.size > MIGRATIONS_SHOWN_MAX) {
    const oldest = [...migrations.values()].find((x) => x.state !== "running");
    if (oldest === undefined) break;
    migrations.delete(oldest.pid);
  }
  return migrations;
}

/** How full a phase's bar is, 0..1. */
function fill(m: Migration, phase: string, index: number, phases: string[]): number {
  if (m.state === "succeeded") return 1;
  const now = phases.indexOf(m.phase);
  if (index < now) return 1;
  if (index > now) return 0;
  // The phase under way: its bytes against the memory to move, where both are known.
  const start = m.phase_start_bytes[phase] ?? 0;
  if (m.memory_bytes === null || m.memory_bytes === 0) return 0.5;
  return Math.min(1, Math.max(0.05, (m.bytes - start) / m.memory_bytes));
}

/** The migrations panel. */
export function Migrations(props: { migrations: Migration[]; now: number }) {
  return (
    <section class="panel migrations" aria-label="Migrations">
      <header>
        <h2>Migrations</h2>
      </header>
      {props.migrations.length === 0 && <p class="muted">None since this page opened. Drag a process onto a node, or use its Move… button.</p>}
      {[...props.migrations].reverse().map((m) => {
        const phases = PHASES[m.strategy] ?? ["offered", "stopping", "copying"];
        return (
          <article class={`migration ${m.state}`} key={m.pid} data-testid="migration" data-pid={m.pid} data-state={m.state} data-phase={m.phase}>
            <p>
              <b>{m.pid}</b> {m.from} → {m.to} <span class="muted">{m.strategy}</span>
              <span class={`badge ${m.state}`}>{m.state}</span>
            </p>
            <div class="phases">
              {phases.map((p, i) => (
                <div class="phase" key={p} title={PHASE_NAMES[p] ?? p}>
                  <span class="bar">
                    <span class="fill" style={{ width: `${(fill(m, p, i, phases) * 100).toFixed(0)}%` }} />
                  </span>
                  <small>
                    {PHASE_NAMES[p] ?? p}
                    {p === "round" && m.round > 0 ? ` ${m.round}` : ""}
                  </small>
                </div>
              ))}
            </div>
            <p class="muted small">
              {formatBytes(m.bytes)} sent
              {m.memory_bytes !== null ? ` of ${formatBytes(m.memory_bytes)} memory` : ""}
              {m.state === "running" && m.dirty_bytes_per_s !== null ? ` · writing ${formatBytes(m.dirty_bytes_per_s)}/s` : ""}
              {m.state === "succeeded" && m.total_ms !== undefined ? ` · ${m.total_ms.toFixed(0)} ms total, ${(m.downtime_ms ?? 0).toFixed(1)} ms down` : ""}
              {m.state === "running" ? ` · ${formatDuration(props.now - m.started_unix_ms)}` : ""}
              {m.message !== undefined ? ` · ${m.message}` : ""}
            </p>
          </article>
        );
      })}
    </section>
  );
}
