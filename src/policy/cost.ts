/**
 * What a migration costs, and which strategy a move uses. The defaults are
 * Ferry's measured figures (the `npm run bench` migration section): a small
 * process takes about 1 s from request to running elsewhere, mostly
 * preparing the destination while it keeps running at the source, and
 * stop-and-copy moves pages at about 250 MB/s.
 */
import type { ProcessInfo } from "./load.js";

/** The four ways to move a process (`ferry migrate --strategy`). */
export type Strategy = "stop-copy" | "pre-copy" | "post-copy" | "hybrid";

/** The cost model of one migration. */
export interface MigrationModel {
  /** Fixed time before pages flow (connect, offer, fetch the module, prepare the standby); the process runs meanwhile. */
  readonly setup_ms: number;
  /** Page transfer rate when the node has not measured its own. */
  readonly transfer_bytes_per_s: number;
  /** Fixed pause of any strategy (suspend at a safe point, flush, restore). */
  readonly pause_ms: number;
  /** At most this much memory moves by stop-and-copy: its whole transfer is downtime. */
  readonly stop_copy_bytes_max: number;
  /** Pre-copy when the dirty rate is at most this share of the transfer rate: rounds shrink fast enough. */
  readonly pre_copy_dirty_share_max: number;
  /** Post-copy (rather than hybrid) when the dirty rate is at least this share: pre-copy rounds would not shrink. */
  readonly post_copy_dirty_share_min: number;
  /** Pre-copy stops sending rounds when the rest fits this downtime. */
  readonly downtime_target_ms: number;
}

/** Measured defaults (see the file's comment). */
export const MIGRATION_MODEL_DEFAULT: MigrationModel = {
  setup_ms: 900,
  transfer_bytes_per_s: 250e6,
  pause_ms: 20,
  stop_copy_bytes_max: 16 * 1024 * 1024,
  pre_copy_dirty_share_max: 0.25,
  post_copy_dirty_share_min: 0.8,
  downtime_target_ms: 100,
};

/** What one move is expected to cost. */
export interface MigrationEstimate {
  readonly strategy: Strategy;
  /** Request to running at the destination. */
  readonly total_ms: number;
  /** Stopped at the source to running at the destination. */
  readonly downtime_ms: number;
  /** Bytes sent. */
  readonly bytes: number;
}

/**
 * The strategy for `proc` at `rate_bytes_per_s`: small processes stop and
 * copy (one short pause beats rounds); a process whose writes are slow
 * against the link pre-copies; one that writes nearly as fast as the link
 * post-copies (rounds would never shrink); between the two, hybrid (one
 * pre-copy round for the cold pages, then post-copy).
 */
export function chooseStrategy(proc: Pick<ProcessInfo, "memory_bytes" | "dirty_bytes_per_s">, link: { rate_bytes_per_s: number; model: MigrationModel }): Strategy {
  const model = link.model;
  if (proc.memory_bytes <= model.stop_copy_bytes_max) return "stop-copy";
  const share = proc.dirty_bytes_per_s / link.rate_bytes_per_s;
  if (share <= model.pre_copy_dirty_share_max) return "pre-copy";
  if (share >= model.post_copy_dirty_share_min) return "post-copy";
  return "hybrid";
}

/** Rounds pre-copy sends at most before it stops regardless (as the migration layer's limit). */
const PRE_COPY_ROUNDS_MAX = 30;

/** Expected time, downtime and bytes of moving `proc` with `how.strategy` at `how.rate_bytes_per_s`. */
export function estimateMigration(proc: Pick<ProcessInfo, "memory_bytes" | "dirty_bytes_per_s">, how: { strategy: Strategy; rate_bytes_per_s: number; model: MigrationModel }): MigrationEstimate {
  const { strategy, model } = how;
  const rate = Math.max(1, how.rate_bytes_per_s);
  const mem = proc.memory_bytes;
  const all_ms = (mem / rate) * 1000;
  switch (strategy) {
    case "stop-copy":
      return { strategy, total_ms: model.setup_ms + all_ms + model.pause_ms, downtime_ms: all_ms + model.pause_ms, bytes: mem };
    case "post-copy":
      // State first, then every page once: on demand or pushed.
      return { strategy, total_ms: model.setup_ms + all_ms + model.pause_ms, downtime_ms: model.pause_ms, bytes: mem };
    case "hybrid": {
      // One full round while it runs, then what it dirtied meanwhile by post-copy.
      const dirtied = Math.min(mem, (proc.dirty_bytes_per_s * all_ms) / 1000);
      const rest_ms = (dirtied / rate) * 1000;
      return { strategy, total_ms: model.setup_ms + all_ms + rest_ms + model.pause_ms, downtime_ms: model.pause_ms, bytes: mem + dirtied };
    }
    case "pre-copy": {
      const target_bytes = (rate * model.downtime_target_ms) / 1000;
      let round = mem;
      let bytes = 0;
      let ms = 0;
      for (let i = 0; i < PRE_COPY_ROUNDS_MAX && round > target_bytes; i += 1) {
        const round_ms = (round / rate) * 1000;
        bytes += round;
        ms += round_ms;
        const next = Math.min(mem, (proc.dirty_bytes_per_s * round_ms) / 1000);
        if (next >= round) break; // not shrinking: stop and send the rest
        round = next;
      }
      const last_ms = (round / rate) * 1000;
      return { strategy, total_ms: model.setup_ms + ms + last_ms + model.pause_ms, downtime_ms: last_ms + model.pause_ms, bytes: bytes + round };
    }
  }
}
