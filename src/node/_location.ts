/**
 * The home's rules for where a process runs (issue 11): every move adds one
 * to the process's move counter, and the home takes what it is told only in
 * counter order. Pure checks over what the home has recorded, so the
 * protocol is tested without a network; the table applies them.
 */
import { FerryError } from "../errors.js";

/** What the home has recorded of a process. */
export interface Recorded {
  pid: string;
  /** Where it runs, as of move `moves`. */
  node: string;
  moves: number;
  /** Where move `moves` took it from (null before its first move). */
  previous: string | null;
  /** Whether it has ended. */
  ended: boolean;
}

/**
 * Checks a location update: move `moves` took the process to `node`, says
 * `from` (null: an unauthenticated node, --insecure). Taken only as the next
 * move and only from the runner recorded (compare-and-set on the counter).
 * Returns "repeat" for the move already recorded (a retry whose answer was
 * lost), "apply" for the next one; throws ERR_LOCATION_STALE for an older or
 * contradicting one, ERR_LOCATION_PENDING for one past the next (an earlier
 * update is still on its way: the sender retries), ERR_FORBIDDEN for the
 * next move told by a node that does not run the process.
 */
export function checkLocation(r: Recorded, from: string | null, node: string, moves: number): "repeat" | "apply" {
  if (moves === r.moves && node === r.node) return "repeat";
  if (moves <= r.moves) throw new FerryError("ERR_LOCATION_STALE", `${r.pid}: move ${moves} to ${node} is older than, or contradicts, the move recorded (move ${r.moves}, to ${r.node})`);
  if (moves > r.moves + 1) throw new FerryError("ERR_LOCATION_PENDING", `${r.pid}: move ${moves} to ${node} comes before move ${r.moves + 1} is recorded`);
  // Only the node that runs a process may say where it went: no node can move another's process on paper.
  if (from !== null && from !== r.node) throw new FerryError("ERR_FORBIDDEN", `node ${from} does not run ${r.pid} (node ${r.node} does)`);
  if (r.ended) throw new FerryError("ERR_LOCATION_STALE", `${r.pid} has ended; it moves no more`);
  return "apply";
}

/**
 * Checks an exit report from node `from` at move `moves`: taken only from
 * the runner and move recorded, or, for a loss, from the source of that
 * move (a post-copy move still draws its pages from there, and the source
 * is the one that learns they will never arrive). Returns "repeat" once the
 * process has ended (a retry changes nothing), "apply" otherwise; throws
 * ERR_LOCATION_PENDING for a move not recorded yet (the runner retries: its
 * location update is on its way), ERR_NOT_RUNNER for any other node or an
 * earlier move.
 */
export function checkExit(r: Recorded, from: string, moves: number, kind: "exit" | "trap" | "killed" | "lost"): "repeat" | "apply" {
  if (r.ended) return "repeat";
  if (moves > r.moves) throw new FerryError("ERR_LOCATION_PENDING", `${r.pid}: move ${moves} to ${from} is not recorded yet (the home has move ${r.moves}, to ${r.node})`);
  if (moves === r.moves && (from === r.node || (kind === "lost" && from === r.previous))) return "apply";
  throw new FerryError("ERR_NOT_RUNNER", `${r.pid} runs on ${r.node} (move ${r.moves}); an end reported by ${from} at move ${moves} is refused`);
}
