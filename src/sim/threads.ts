/**
 * A run of several parts with one worker thread per part: each part runs
 * its nodes' events between syncs, and at each sync sends its batch to the
 * others and waits for theirs (`_part_worker.ts`). The report is the one
 * `simulate` gives for the same configuration in one thread, but for
 * `wall_ms`: the parts meet only at the syncs, and take each sync's batches
 * in part order.
 */
import { MessageChannel, Worker, type MessagePort } from "node:worker_threads";
import { simConfig, type SimChanges, type SimConfig } from "./config.js";
import { combine, report, type Figures } from "./_figures.js";
import type { SimReport } from "./report.js";
import { simulate } from "./simulate.js";

/** What a part's worker is started with. */
export interface PartStart {
  readonly config: SimConfig;
  readonly part: number;
  /**
   * Per ordered pair (from * parts + to): batches sent so far; then one
   * word that any part sets to stop them all (a part failed).
   */
  readonly flags: Int32Array;
  /** A port to every other part, by its index (this part's own: null). */
  readonly ports: (MessagePort | null)[];
}

/**
 * Runs one simulation with a worker thread per part (a run of one part
 * runs in this thread, as `simulate`).
 */
export async function simulateThreaded(changes: SimChanges = {}): Promise<SimReport> {
  const c = simConfig(changes);
  if (c.partitions === 1) return simulate(c);
  const wall0 = performance.now();
  const k = c.partitions;
  const flags = new Int32Array(new SharedArrayBuffer(4 * (k * k + 1)));
  const ports: (MessagePort | null)[][] = Array.from({ length: k }, () => new Array<MessagePort | null>(k).fill(null));
  for (let i = 0; i < k; i += 1) {
    for (let j = i + 1; j < k; j += 1) {
      const channel = new MessageChannel();
      (ports[i] as (MessagePort | null)[])[j] = channel.port1;
      (ports[j] as (MessagePort | null)[])[i] = channel.port2;
    }
  }
  const workers = ports.map((own, part) => {
    const start: PartStart = { config: c, part, flags, ports: own };
    return new Worker(new URL("./_part_worker.js", import.meta.url), { workerData: start, transferList: own.filter((p): p is MessagePort => p !== null) });
  });
  const stopAll = (): void => {
    Atomics.store(flags, k * k, 1);
    for (let i = 0; i < k * k; i += 1) Atomics.notify(flags, i);
  };
  try {
    const figures = await Promise.all(
      workers.map(
        (w, part) =>
          new Promise<Figures>((resolve, reject) => {
            w.once("message", (f: Figures) => resolve(f));
            w.once("error", (err) => {
              stopAll();
              reject(err);
            });
            w.once("exit", (code) => {
              stopAll();
              reject(new Error(`simulation part ${part} stopped (exit ${code}) before its figures`));
            });
          }),
      ),
    );
    return report(combine(figures), c, performance.now() - wall0);
  } finally {
    stopAll();
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
