/**
 * The checkpoint benchmark's choice of dirtier's WORK for a dirty rate
 * (`checkpoints.ts`), as pure arithmetic on the runs it measured.
 *
 * The write phase's time per MiB is about a + b × WORK. A first guess comes
 * from a line through a run at WORK 0 and one at {@link PROBE_WORK}; each
 * try after that scales the WORK part of the time by what the rate missed by.
 * On a loaded machine any of these runs may be slowed by its neighbours
 * alone: the probe at WORK 0 once took longer than the one with work, the
 * line's slope fell to its floor, and the guess became the largest WORK
 * dirtier takes (10^7): a calibration run of hours, then runs of a 0.2 MB/s
 * process that never ended within the benchmark's patience. So no guess goes
 * further than {@link STEP_MAX} times from a WORK actually measured: a noisy
 * run costs a try, never a runaway.
 */

/** The largest WORK dirtier accepts (examples/c/dirtier.c). */
export const WORK_MAX = 10_000_000;
/** The WORK of the probe the line is drawn through (its other end is WORK 0). */
export const PROBE_WORK = 16_000;
/** The most a guess may move from the WORK it is derived from, either way (a factor). */
export const STEP_MAX = 4;

/** Milliseconds per MiB written at `mb_s` (10^6 bytes per second). */
export function msPerMib(mb_s: number): number {
  return 1000 / ((mb_s * 1e6) / 1048576);
}

function clamp(work: number): number {
  return Math.min(WORK_MAX, Math.max(0, Math.round(work)));
}

/** `work` kept within {@link STEP_MAX} times of `from` (from 0: up to {@link PROBE_WORK}). */
function bounded(work: number, from: number): number {
  if (from <= 0) return clamp(Math.min(work, PROBE_WORK));
  return clamp(Math.min(from * STEP_MAX, Math.max(from / STEP_MAX, work)));
}

/**
 * The first guess: `plain_ms_per_mib` and `probe_ms_per_mib` are the write
 * phase's time per MiB at WORK 0 and at {@link PROBE_WORK}. Within
 * {@link STEP_MAX} of the probe's WORK; 0 when even WORK 0 is slower than the
 * target; the probe's WORK when the two runs say nothing (the probe no
 * slower than the plain run).
 */
export function firstWork(target_mb_s: number, plain_ms_per_mib: number, probe_ms_per_mib: number): number {
  const a = Math.max(0.01, plain_ms_per_mib);
  const target = msPerMib(target_mb_s);
  if (target <= a) return 0;
  const slope = (probe_ms_per_mib - plain_ms_per_mib) / PROBE_WORK;
  if (!(slope > 0)) return PROBE_WORK;
  return bounded((target - a) / slope, PROBE_WORK);
}

/**
 * The next try after a run at `work` took `ms_per_mib`: the WORK part of the
 * time (less `plain_ms_per_mib`) scaled to what the target leaves for it,
 * within {@link STEP_MAX} of `work`.
 */
export function nextWork(target_mb_s: number, plain_ms_per_mib: number, work: number, ms_per_mib: number): number {
  const a = Math.max(0.01, plain_ms_per_mib);
  const target = msPerMib(target_mb_s);
  if (target <= a) return 0;
  if (work === 0) return bounded(PROBE_WORK, 0);
  const work_part = ms_per_mib - a;
  // The run was no slower than one without work: the load moved; more work is the only way towards the target.
  if (!(work_part > 0)) return bounded(work * STEP_MAX, work);
  return bounded(work * ((target - a) / work_part), work);
}
