/**
 * A node's events (docs/operations.md, "Events"): what happened here, as it
 * happens — processes started and ended, migration phases and outcomes,
 * stalls, peers seen up or down. Each is published once to the node's
 * {@link EventHub}, which keeps the last few for a newcomer and hands each to
 * the subscribers (the `GET /v1/events` streams) at once. The hub holds no
 * per-subscriber queue: a stream writes to its socket or drops (see
 * `_event_stream.ts`), so a slow reader never makes the node hold more.
 */
import type { RestorePhases } from "./_checkpoint_routes.js";

/** What an event says, keyed on `type`. */
export type NodeEventBody =
  | { type: "node.started"; address: string }
  | { type: "node.stopping" }
  | { type: "node.up"; peer: string; address: string }
  | { type: "node.down"; peer: string | null; address: string; reason: string }
  /** The directory's verdicts (docs/directory.md): a member took a lease, or its lease ended. */
  | { type: "node.alive"; peer: string; address: string }
  | { type: "node.dead"; peer: string; address: string; reason: string }
  | { type: "process.started"; pid: string; module_name: string; home: string }
  | { type: "process.ended"; pid: string; home: string; status: unknown }
  | { type: "migration.started"; pid: string; to: string; strategy: string }
  | { type: "migration.phase"; pid: string; to: string; strategy: string; phase: string; round?: number; bytes: number; memory_bytes?: number; dirty_bytes_per_s?: number }
  /** Bytes moved within the phase under way: live only ({@link EventHub.live}), at most every PROGRESS_MS_MIN per migration. */
  | { type: "migration.progress"; pid: string; to: string; strategy: string; phase: string; round?: number; bytes: number; memory_bytes: number }
  | { type: "migration.succeeded"; pid: string; to: string; strategy: string; total_ms: number; downtime_ms: number; bytes: number }
  | { type: "migration.failed"; pid: string; to: string; strategy: string; code: string; message: string }
  | { type: "migration.stalled"; pid: string; to: string; strategy: string; phase: string; idle_ms: number }
  /** A committed move the directory did not take (refused, or did not answer in time); the process runs at `to` (`_move_record.ts`). */
  | { type: "migration.unrecorded"; pid: string; to: string; moves: number; reason: string; detail: string; source_copy: "kept" | "dropped" }
  /** The load module decided an automatic move (docs/load.md): why, how, and what it expected it to cost. */
  | { type: "load.move"; pid: string; from: string; to: string; reason: string; strategy: string; memory_bytes: number; dirty_bytes_per_s: number; detail: string; expected_total_ms: number; expected_downtime_ms: number }
  /** This node, the target of an automatic move, refused it on its load now (docs/load.md). */
  | { type: "load.refused"; pid: string; from: string | null; reason: string; detail: string }
  /** The target of an automatic move refused it on its load now; the source tries another target or keeps the process. */
  | { type: "load.move_refused"; pid: string; to: string; reason: string; detail: string }
  /** An automatic move did not happen; the process stays where it was. */
  | { type: "load.move_failed"; pid: string; to: string; reason: string; strategy: string; code: string; message: string }
  /** `ferry run` without `--node` was placed by the policy. */
  | { type: "load.placed"; pid: string; to: string; detail: string }
  /** Pack mode: the nodes left with nothing to run, ready to power down. */
  | { type: "load.idle"; nodes: string[] }
  | { type: "node.drain"; draining: boolean }
  | { type: "policy.changed"; set: Record<string, unknown> }
  | { type: "checkpoint.taken"; pid: string; keeper: string; checkpoint: number; pause_ms: number; bytes: number; pages: number; total_ms: number; coalesced: number; interval_ms: number; slowdown_ratio: number }
  | { type: "checkpoint.failed"; pid: string; keeper: string | null; code: string; message: string }
  | { type: "process.restored"; pid: string; from: string; to: string; keeper: string; checkpoint: number; moves: number; total_ms: number; prepared_ahead: boolean; phases_ms: RestorePhases };

/** An event as streamed: the body with who reported it, when, and its number on that node. */
export type NodeEvent = NodeEventBody & {
  /** The node that saw it. */
  node: string;
  /** Its number among that node's events since the node started (1, 2, ...). */
  seq: number;
  time_unix_ms: number;
};

/** Events a hub keeps for a newcomer (`ferry events` without -f shows them): a few minutes of a busy node. */
export const RECENT_EVENTS_MAX = 256;

/** Streams of events a node serves at once; one more is 503 ERR_QUOTA. Each costs a socket and, cluster-wide, one stream per peer. */
export const EVENT_SUBSCRIBERS_MAX = 64;

/** A node's events: the recent ones, and whoever listens. */
export class EventHub {
  readonly #node: string;
  readonly #now: () => number;
  readonly #recent: NodeEvent[] = [];
  readonly #subscribers = new Set<(e: NodeEvent) => void>();
  #seq = 0;

  constructor(node: string, now: () => number = Date.now) {
    this.#node = node;
    this.#now = now;
  }

  /** Publishes one event: kept among the recent, and given to every subscriber now. */
  publish(body: NodeEventBody): NodeEvent {
    this.#seq += 1;
    const event = { ...body, node: this.#node, seq: this.#seq, time_unix_ms: this.#now() } as NodeEvent;
    this.#recent.push(event);
    if (this.#recent.length > RECENT_EVENTS_MAX) this.#recent.shift();
    for (const s of this.#subscribers) s(event);
    return event;
  }

  /**
   * Gives one event to the subscribers now, and keeps nothing: for updates
   * that matter only while they are fresh (a bar that moves), which would
   * push the events a newcomer needs out of the recent ones. Nobody
   * listening: nothing is made.
   */
  live(body: NodeEventBody): void {
    if (this.#subscribers.size === 0) return;
    this.#seq += 1;
    const event = { ...body, node: this.#node, seq: this.#seq, time_unix_ms: this.#now() } as NodeEvent;
    for (const s of this.#subscribers) s(event);
  }

  /** The recent events, oldest first. */
  recent(): NodeEvent[] {
    return [...this.#recent];
  }

  /** Subscribers now. */
  get subscribers(): number {
    return this.#subscribers.size;
  }

  /** Calls `listener` with each event from now on; returns the unsubscribe. Null when {@link EVENT_SUBSCRIBERS_MAX} listen already. */
  subscribe(listener: (e: NodeEvent) => void): (() => void) | null {
    if (this.#subscribers.size >= EVENT_SUBSCRIBERS_MAX) return null;
    this.#subscribers.add(listener);
    return () => this.#subscribers.delete(listener);
  }
}
