/**
 * Warm process workers (issue 15, "setup"): a worker thread takes tens of
 * milliseconds to start and load the runtime, most of a small process's
 * migration when the destination starts one for its standby. A node keeps a
 * few started and idle; a process takes one and hands it its init by
 * message, and a new one starts in the background.
 */
import { Worker } from "node:worker_threads";
import type { FromWorker, ToWorker, WorkerBoot, WorkerInit } from "./_protocol.js";
import { workerEntry } from "./_worker_code.js";

/**
 * Native stack of a process worker. Deeply recursive guests need more than
 * Node's default 4 MiB; this is address space, committed only when touched.
 */
const WORKER_STACK_MB = 256;

/** Most workers kept idle: each is a thread with the runtime loaded, a few MiB. */
export const WARM_WORKERS_MAX = 8;

/** How long after a worker is taken its replacement starts warming. */
const REFILL_DELAY_MS = 250;

const idle: Worker[] = [];
let wanted = 0;
let taken = 0;
/** Workers started (cold boots: Node's worker bootstrap and the runtime's load, ~55 ms of CPU each here). */
let spawned = 0;
/** Workers given back by a process whose guest ended or hibernated, on their way to the pool (they count towards it: the refill waits for them). */
let returning = 0;
/** Workers given back and taken into the pool so far. */
let recycled = 0;

function spawn(boot: WorkerBoot): Worker {
  spawned += 1;
  const entry = workerEntry();
  const data: WorkerBoot = entry.script === undefined ? boot : { ...boot, script: entry.script };
  return new Worker(entry.url, { workerData: data, resourceLimits: { stackSizeMb: WORKER_STACK_MB }, stdout: false, stderr: false });
}

/**
 * Whether every claim's owner has a core to spare now. Warming a worker
 * takes tens of ms of a core; a node whose guests want all its cores would
 * pay them out of its guests' time (a burst of starts or arrivals then costs
 * every guest there), so the pool refills when there is room, and a start
 * that finds it empty starts its own worker meanwhile.
 */
function roomToWarm(): boolean {
  for (const c of claims.values()) if (c.spare !== undefined && !c.spare()) return false;
  return true;
}

/** When a worker was last taken (performance.now()). */
let taken_at_ms = -Infinity;

/** The timer that comes back to refill once a take is old enough. */
let refill_timer: NodeJS.Timeout | null = null;

/**
 * The worker warming now, until it runs: one at a time. Warming is work a
 * node does for itself with a core to spare; several boots at once take
 * several cores (an empty worker's boot is ~55 ms of CPU here), one after
 * another they take one. It is the newest in the pool.
 */
let warming: Worker | null = null;

/** Starts warming workers up to the pool's size if its claimants have a core to spare (cheap when the pool is full). */
export function refillWarm(): void {
  if (idle.length + returning >= wanted) return;
  // Not while the start or move that took a worker may still need the core: this comes back when it no longer does.
  const wait_ms = REFILL_DELAY_MS - (performance.now() - taken_at_ms);
  if (wait_ms > 0) {
    refill_timer ??= setTimeout(() => {
      refill_timer = null;
      refillWarm();
    }, Math.ceil(wait_ms) + 1).unref();
    return;
  }
  if (warming !== null || !roomToWarm()) return;
  const w = spawn({ kind: "warm" });
  // An idle worker must not keep its process alive.
  w.unref();
  warming = w;
  // Up and running its code (most of a boot's CPU is behind it): the next one may start.
  const warmed = (): void => {
    if (warming !== w) return;
    warming = null;
    refillWarm();
  };
  w.once("online", warmed);
  pool(w, warmed);
}

/**
 * Puts `w` in the pool. One that dies idle is simply not used (`gone` is
 * called then); one that dies after it was taken is its process's business
 * (takeWorker removes these listeners).
 */
function pool(w: Worker, gone?: () => void): void {
  const drop = (): void => {
    const at = idle.indexOf(w);
    if (at >= 0) idle.splice(at, 1);
    gone?.();
  };
  w.once("error", drop);
  w.once("exit", drop);
  idle.push(w);
}

/** Keeps `count` workers started and idle from now on (0 stops keeping any, and ends the idle ones), unless a claim wants more. */
export function keepWarm(count: number): void {
  direct = checkCount(count);
  apply();
}

/**
 * Claims `count` warm workers for one user (a node) until the returned
 * function is called. The pool is the process's: several nodes in one
 * process (tests, benchmarks) share it, so it keeps the most any claim asks
 * for, and one node stopping does not empty it under the others. With
 * `spare`, the pool refills only while it says the claimant has a core to
 * spare; the claimant then calls {@link refillWarm} when it has.
 */
export function claimWarm(count: number, spare?: () => boolean): () => void {
  const id = Symbol("warm claim");
  claims.set(id, { count: checkCount(count), spare });
  apply();
  return () => {
    if (claims.delete(id)) apply();
  };
}

/** Claims made with {@link claimWarm} that are still held, and what {@link keepWarm} asked. */
const claims = new Map<symbol, { count: number; spare: (() => boolean) | undefined }>();
let direct = 0;

function checkCount(count: number): number {
  if (!Number.isSafeInteger(count) || count < 0 || count > WARM_WORKERS_MAX) throw new RangeError(`warm workers must be 0 to ${WARM_WORKERS_MAX}, not ${count}`);
  return count;
}

function apply(): void {
  wanted = direct;
  for (const c of claims.values()) wanted = Math.max(wanted, c.count);
  for (const w of idle.splice(wanted)) void w.terminate();
  refillWarm();
}

/**
 * A worker running `init`: a warm one if any is idle (then another starts
 * warming), else a new one. The most recently warmed that is up goes first: a worker
 * idle for long starts its guest slower (16 MiB moves back and forth with
 * 4 kept: downtime 35-42 ms taking the oldest, 25-27 ms the newest).
 */
export function takeWorker(init: WorkerInit): Worker {
  // The newest that is up: the one still booting only when no other is there.
  const at = idle.length >= 2 && idle[idle.length - 1] === warming ? idle.length - 2 : idle.length - 1;
  const w = at < 0 ? undefined : idle.splice(at, 1)[0];
  if (w === undefined) return spawn({ kind: "init", init });
  taken += 1;
  taken_at_ms = performance.now();
  // Its process watches it from now on; the next one warms when the pool comes back to refill.
  if (w === warming) warming = null;
  w.removeAllListeners("error").removeAllListeners("exit").removeAllListeners("online");
  w.ref();
  w.postMessage(init);
  // Started a little later: warming a worker takes a core for tens of ms, which the move or start that took this one needs now.
  refillWarm();
  return w;
}

/**
 * Takes back the worker of a process whose guest is done with it: it ended
 * (an exit or a trap its worker reported, so the worker waits idle), or it
 * hibernated. The worker drops its guest and closes its files (`recycle`,
 * `_worker.ts`) and joins the pool, if the pool has room; else it ends. A
 * recycled worker saves the next start or wake a cold boot, the CPU a
 * burst of starts or a crowd of sleepers waking spends most on. The caller
 * has removed its listeners and sends it nothing more. `discard`: the
 * guest's memory is given back to the kernel by the worker (see
 * `discardPages`), which then ends if the pool has no room for it.
 */
export function recycleWorker(w: Worker, discard = false): void {
  const room = idle.length + returning < wanted;
  if (!room && !discard) {
    void w.terminate();
    return;
  }
  returning += 1;
  // An idle worker must not keep its process alive.
  w.unref();
  const settle = (ok: boolean): void => {
    returning -= 1;
    w.removeAllListeners("message").removeAllListeners("error").removeAllListeners("exit");
    if (ok && idle.length < wanted) {
      recycled += 1;
      pool(w);
    } else {
      void w.terminate();
      refillWarm();
    }
  };
  w.on("message", (msg: FromWorker) => {
    // Anything else is from the guest's last moments, already answered for (its process has ended or hibernated).
    if (msg.type === "recycled") settle(true);
  });
  w.once("error", () => settle(false));
  w.once("exit", () => settle(false));
  w.postMessage({ type: "recycle", discard, ending: !room } satisfies ToWorker);
}

/** Workers idle now (`warming`: of which one still starting), how many processes took one so far, how many were started cold, and how many came back from a guest that was done. */
export function warmWorkers(): { idle: number; warming: number; taken: number; spawned: number; recycled: number } {
  return { idle: idle.length, warming: warming === null ? 0 : 1, taken, spawned, recycled };
}
