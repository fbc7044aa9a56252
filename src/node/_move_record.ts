/**
 * The last step of a move, at its source: the new location is recorded
 * before the source's copy is terminated (docs/directory.md, "A move"). The
 * directory first (compare-and-set on the move counter, tried until it is
 * taken or definitely refused), then the home. What becomes of the source's
 * copy follows from the outcome:
 *
 * - recorded: the copy goes at once;
 * - refused (the directory holds a later move, a takeover's say, or the
 *   end, or still lacks the record the move follows): the move will not be
 *   recorded there, and the copy can never be the process again (the
 *   destination runs it), so it goes; the home is told as ever, and its own
 *   compare-and-set (`_location.ts`) refuses a location its record
 *   contradicts (a takeover's move, an end);
 * - not recorded in time (the directory does not answer): the copy is kept,
 *   stopped and never resumed, while the record is tried on in the
 *   background; it goes once the record is taken or refused, or the node
 *   stops.
 *
 * Both failures publish `migration.unrecorded`. A pure step over the parts
 * it is given, so its decisions are tested without nodes.
 */
import { errorField, type Logger } from "../log/mod.js";
import type { MoveRecord, NodeDirectory } from "./cluster_directory.js";
import type { NodeEventBody } from "./events.js";

/** Pause between the background tries of a move's record. */
const TRY_ON_PAUSE_MS = 1000;

/** A committed move: `pid`, whose home is `home`, now runs on `to` as its move `moves`. */
export interface CommittedMove {
  pid: string;
  home: string;
  to: string;
  moves: number;
}

/** What {@link recordMove} uses of the node. */
export interface MoveRecordHost {
  /** The node's directory part; null: no directory (the home is the only record). */
  cluster: Pick<NodeDirectory, "moved" | "stopping"> | null;
  /** Tells the home (retried, bounded; throws when it gives up). */
  tellHome(move: CommittedMove): Promise<void>;
  publish(body: NodeEventBody): void;
  log: Logger;
}

/** What became of the record, and when the source's copy may go. */
export interface MoveRecordOutcome {
  /** The directory's answer within its give-up time ("recorded" without a directory). */
  record: MoveRecord["kind"];
  /** Resolves once the source's copy may be terminated: at once unless the record is still being tried. */
  copy_may_go: Promise<void>;
}

/**
 * Records `move` in the directory, then at the home, and says when the
 * source's copy may go (see the module comment). Never rejects: a home that
 * cannot be told is logged (the move stands; its exit report is retried
 * from the destination).
 */
export async function recordMove(host: MoveRecordHost, move: CommittedMove): Promise<MoveRecordOutcome> {
  const { cluster, log } = host;
  const { pid, to, moves } = move;
  const tellHome = async (): Promise<void> => {
    try {
      await host.tellHome(move);
    } catch (err: unknown) {
      // The move itself succeeded: the destination runs the process, and this copy is never resumed.
      log.warn({ pid, to, home: move.home, err: errorField(err) }, `${pid} moved to ${to}, but its home ${move.home} could not record it`);
    }
  };
  if (cluster === null) {
    await tellHome();
    return { record: "recorded", copy_may_go: Promise.resolve() };
  }
  const first = await cluster.moved(pid, to, moves);
  if (first.kind === "recorded") {
    await tellHome();
    return { record: "recorded", copy_may_go: Promise.resolve() };
  }
  const kept = first.kind === "unrecorded";
  const reason = first.kind === "refused" ? first.reason : "unavailable";
  const detail = first.kind === "refused" ? describeRefusal(first) : first.detail;
  host.publish({ type: "migration.unrecorded", pid, to, moves, reason, detail, source_copy: kept ? "kept" : "dropped" });
  log.error(
    { pid, to, moves, reason, detail },
    kept
      ? `${pid} runs on ${to}, but the directory has not taken move ${moves}: this node keeps its stopped copy and tries on`
      : `${pid} runs on ${to}, but the directory refused move ${moves} (${detail}); this node drops its copy`,
  );
  if (!kept) {
    await tellHome();
    return { record: first.kind, copy_may_go: Promise.resolve() };
  }
  return { record: first.kind, copy_may_go: tryOn(host, move, tellHome) };
}

/** Tries the record on until it is taken or refused, or the node stops; then the home is told (unless the node stops) and the copy may go. */
async function tryOn(host: MoveRecordHost, move: CommittedMove, tellHome: () => Promise<void>): Promise<void> {
  const cluster = host.cluster as NonNullable<MoveRecordHost["cluster"]>;
  for (;;) {
    if (cluster.stopping) {
      host.log.warn({ pid: move.pid, to: move.to }, `the node stops before the directory took move ${move.moves} of ${move.pid}; its stopped copy goes with it`);
      return;
    }
    const r = await cluster.moved(move.pid, move.to, move.moves);
    if (r.kind === "recorded") {
      host.log.info({ pid: move.pid, to: move.to, moves: move.moves }, `the directory took move ${move.moves} of ${move.pid} at last; this node drops its copy`);
      await tellHome();
      return;
    }
    if (r.kind === "refused") {
      host.log.error({ pid: move.pid, to: move.to, moves: move.moves, detail: describeRefusal(r) }, `the directory refused move ${move.moves} of ${move.pid}; this node drops its copy`);
      await tellHome();
      return;
    }
    // Each try waits up to its give-up time on a directory that does not answer; one that fails at once is not hammered.
    await new Promise((resolve) => setTimeout(resolve, TRY_ON_PAUSE_MS));
  }
}

function describeRefusal(r: Extract<MoveRecord, { kind: "refused" }>): string {
  const c = r.current;
  if (c === null) return `${r.reason}: the directory has no record`;
  return `${r.reason}: the directory records move ${c.moves}, on ${c.runner}, state ${c.state}`;
}
