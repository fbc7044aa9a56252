/**
 * The runtime slowdown each checkpoint reports (docs/checkpoints.md, "What
 * a checkpoint costs"): the share of the time since the previous checkpoint
 * that the process was kept from running by checkpointing. A checkpoint
 * stops its process only for its pause (the capture and the copy of what
 * the rounds did not send) and never throttles it (auto-converge is the
 * migrations'), so that share is this checkpoint's pause over the interval
 * from the end of the previous one's pause (or from when the process began
 * running on this node) to the end of this one's.
 *
 * What it does not see: CPU the runner spends on the checkpoint's rounds
 * (comparing or walking pages, hashing and sending them) while the process
 * runs. On a node with a core to spare that costs the process nothing; on
 * shared cores it competes with the process and slows it by up to that CPU
 * time, which only a comparison of run times shows (`bench/checkpoints.ts`).
 */

/** The slowdown one checkpoint cost its process. */
export interface CheckpointSlowdown {
  /** Wall time from the end of the previous checkpoint's pause of this process here (or from when it began running here) to the end of this one's, ms. */
  interval_ms: number;
  /** The checkpoint's pause (how long checkpointing kept the process from running) over `interval_ms`, 0 to 1: 0.01 means the process ran 1% less in the interval than it would have without checkpoints. */
  slowdown_ratio: number;
}

/**
 * The slowdown of a checkpoint whose pause of `pause_ms` ended at
 * `resumed_at_ms`, the interval starting at `since_ms` (both
 * `performance.now()` values).
 */
export function checkpointSlowdown(since_ms: number, resumed_at_ms: number, pause_ms: number): CheckpointSlowdown {
  // The interval holds the pause at least (a process that began running here during its own first checkpoint cannot).
  const interval_ms = Math.max(resumed_at_ms - since_ms, pause_ms);
  const slowdown_ratio = interval_ms > 0 ? Math.min(1, pause_ms / interval_ms) : 0;
  return { interval_ms: round(interval_ms, 1e3), slowdown_ratio: round(slowdown_ratio, 1e6) };
}

function round(x: number, per: number): number {
  return Math.round(x * per) / per;
}
