/**
 * The processes a simulation runs, drawn from its seed into typed arrays:
 * arrival, CPU time, memory, dirty rate, message group and requirement.
 */
import type { Prng } from "../_prng.js";
import type { SimConfig } from "./config.js";

/** Work-time cap over the mean: an exponential tail, bounded so one job cannot make the makespan. */
const WORK_CAP_OVER_MEAN = 20;

/** The workload in typed arrays, indexed by process. */
export interface Workload {
  readonly arrival_s: Float64Array;
  readonly work_s: Float64Array;
  readonly memory_bytes: Float64Array;
  readonly dirty_bytes_per_s: Float64Array;
  /** First process of its group, and the group's size: members talk pairwise at `talk_bytes_per_s`. */
  readonly group_first: Int32Array;
  readonly group_size: Uint8Array;
  readonly talk_bytes_per_s: Float64Array;
  /** 1: requires gpu=yes. */
  readonly requires_gpu: Uint8Array;
  /**
   * What describing a process reads, side by side: {@link PACKED_FIELDS}
   * numbers per process (one cache line), at `p * PACKED_FIELDS` plus a
   * `Packed` offset. A decision round describes processes at random among a
   * million; read from the arrays above, each figure was a cache miss of
   * its own.
   */
  readonly packed: Float64Array;
  readonly total_work_s: number;
}

/** Numbers per process in {@link Workload.packed}: eight doubles, one 64-byte cache line. */
export const PACKED_FIELDS = 8;

/** Offsets of a process's figures in {@link Workload.packed}. */
export const Packed = { memory_bytes: 0, dirty_bytes_per_s: 1, work_s: 2, requires_gpu: 3, group_first: 4, group_size: 5, talk_bytes_per_s: 6 } as const;

function logUniform(r: Prng, lo: number, hi: number): number {
  return lo * Math.exp(r.float() * Math.log(hi / lo));
}

/** Draws the workload; `arrival_s` is the (resolved) arrival window. */
export function drawWorkload(c: SimConfig, arrival_s: number, r: Prng): Workload {
  const m = c.processes;
  const w: Workload = {
    arrival_s: new Float64Array(m),
    work_s: new Float64Array(m),
    memory_bytes: new Float64Array(m),
    dirty_bytes_per_s: new Float64Array(m),
    group_first: new Int32Array(m),
    group_size: new Uint8Array(m),
    talk_bytes_per_s: new Float64Array(m),
    requires_gpu: new Uint8Array(m),
    packed: new Float64Array(m * PACKED_FIELDS),
    total_work_s: 0,
  };
  let t = 0;
  let total = 0;
  const gap_s = m > 0 ? arrival_s / m : 0;
  for (let p = 0; p < m; ) {
    const size = Math.min(m - p, 1 + r.int(c.group_max));
    const talk = size > 1 ? logUniform(r, c.talk_min_bytes_per_s, c.talk_max_bytes_per_s) : 0;
    for (let k = 0; k < size; k += 1, p += 1) {
      if (gap_s > 0) t += -Math.log(1 - r.float()) * gap_s;
      w.arrival_s[p] = t;
      const work = Math.min(-Math.log(1 - r.float()) * c.work_mean_s, c.work_mean_s * WORK_CAP_OVER_MEAN);
      w.work_s[p] = Math.max(0.01, work);
      total += w.work_s[p] as number;
      const mem = logUniform(r, c.memory_min_bytes, c.memory_max_bytes);
      w.memory_bytes[p] = mem;
      // Up to dirty_share_max of its memory (half, by default) rewritten per second at full speed, mostly far less.
      w.dirty_bytes_per_s[p] = mem * c.dirty_share_max * r.float() ** 3;
      w.group_first[p] = p - k;
      w.group_size[p] = size;
      w.talk_bytes_per_s[p] = talk;
      w.requires_gpu[p] = r.chance(c.require_share) ? 1 : 0;
      const at = p * PACKED_FIELDS;
      w.packed[at + Packed.memory_bytes] = mem;
      w.packed[at + Packed.dirty_bytes_per_s] = w.dirty_bytes_per_s[p] as number;
      w.packed[at + Packed.work_s] = w.work_s[p] as number;
      w.packed[at + Packed.requires_gpu] = w.requires_gpu[p] as number;
      w.packed[at + Packed.group_first] = p - k;
      w.packed[at + Packed.group_size] = size;
      w.packed[at + Packed.talk_bytes_per_s] = talk;
    }
  }
  return { ...w, total_work_s: total };
}
