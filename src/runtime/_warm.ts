/**
 * Warm process workers (issue 15, "setup"): a worker thread takes tens of
 * milliseconds to start and load the runtime, most of a small process's
 * migration when the destination starts one for its standby. A node keeps a
 * few started and idle; a process takes one and hands it its init by
 * message, and a new one starts in the background.
 */
import { Worker } from "node:worker_threads";
import type { WorkerBoot, WorkerInit } from "./_protocol.js";

/**
 * Native stack of a process worker. Deeply recursive guests need more than
 * Node's default 4 MiB; this is address space, committed only when touched.
 */
const WORKER_STACK_MB = 256;

/** Most workers kept idle: each is a thread with the runtime loaded, a few MiB. */
export const WARM_WORKERS_MAX = 8;

/** How long after a worker is taken its replacement starts warming. */
const REFILL_DELAY_MS = 250;

const WORKER_URL = new URL("./_worker.js", import.meta.url);

const idle: Worker[] = [];
let wanted = 0;
let taken = 0;

function spawn(boot: WorkerBoot): Worker {
  return new Worker(WORKER_URL, { workerData: boot, resourceLimits: { stackSizeMb: WORKER_STACK_MB }, stdout: false, stderr: false });
}

function refill(): void {
  while (idle.length < wanted) {
    const w = spawn({ kind: "warm" });
    // An idle worker must not keep its process alive.
    w.unref();
    const drop = (): void => {
      const at = idle.indexOf(w);
      if (at >= 0) idle.splice(at, 1);
    };
    // A warm worker that died idle is simply not used; one that died after it was taken is its process's business.
    w.once("error", drop);
    w.once("exit", drop);
    idle.push(w);
  }
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
 * for, and one node stopping does not empty it under the others.
 */
export function claimWarm(count: number): () => void {
  const id = Symbol("warm claim");
  claims.set(id, checkCount(count));
  apply();
  return () => {
    if (claims.delete(id)) apply();
  };
}

/** Claims made with {@link claimWarm} that are still held, and what {@link keepWarm} asked. */
const claims = new Map<symbol, number>();
let direct = 0;

function checkCount(count: number): number {
  if (!Number.isSafeInteger(count) || count < 0 || count > WARM_WORKERS_MAX) throw new RangeError(`warm workers must be 0 to ${WARM_WORKERS_MAX}, not ${count}`);
  return count;
}

function apply(): void {
  wanted = Math.max(direct, ...claims.values());
  for (const w of idle.splice(wanted)) void w.terminate();
  refill();
}

/** A worker running `init`: a warm one if any is idle (then another starts warming), else a new one. */
export function takeWorker(init: WorkerInit): Worker {
  const w = idle.shift();
  if (w === undefined) return spawn({ kind: "init", init });
  taken += 1;
  w.removeAllListeners("error").removeAllListeners("exit");
  w.ref();
  w.postMessage(init);
  // Started a little later: warming a worker takes a core for tens of ms, which the move or start that took this one needs now.
  setTimeout(refill, REFILL_DELAY_MS).unref();
  return w;
}

/** Workers started and idle now, and how many processes took one so far. */
export function warmWorkers(): { idle: number; taken: number } {
  return { idle: idle.length, taken };
}
