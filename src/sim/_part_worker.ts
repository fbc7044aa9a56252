/**
 * One part of a threaded run (`threads.ts`): runs its window, sends its
 * batch to every other part, waits for theirs, syncs; at the end posts its
 * figures to the thread that started it.
 */
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from "node:worker_threads";
import type { PartStart } from "./threads.js";
import { Simulation } from "./simulate.js";

/** How long a wait for another part's batch lasts before it looks whether the run was stopped. */
const WAIT_SLICE_MS = 200;

const { config, part, flags, ports } = workerData as PartStart;
const k = config.partitions;
const stop = k * k;
const seen = new Int32Array(k);

/** The batch part `j` sent for this sync. */
function receive(j: number): Float64Array {
  const slot = j * k + part;
  while (Atomics.load(flags, slot) === (seen[j] as number)) {
    if (Atomics.load(flags, stop) === 1) throw new Error(`simulation part ${part} stopped: another part failed`);
    Atomics.wait(flags, slot, seen[j] as number, WAIT_SLICE_MS);
  }
  seen[j] = (seen[j] as number) + 1;
  // Posted before the count was raised: it is in the port's queue.
  for (;;) {
    const got = receiveMessageOnPort(ports[j] as MessagePort);
    if (got !== undefined) return got.message as Float64Array;
    if (Atomics.load(flags, stop) === 1) throw new Error(`simulation part ${part} stopped: another part failed`);
    Atomics.wait(flags, stop, 0, 1);
  }
}

const sim = new Simulation(config, part);
sim.begin();
const sync_s = config.sync_ms / 1000; // as simulate() computes each sync: i * sync, never a running sum
// Each sync takes the batches made at the one before (see Simulation.sync): a part runs a window ahead of the others at most.
let previous: Float64Array | null = null;
for (let i = 1; ; i += 1) {
  sim.window(i * sync_s);
  const mine = sim.batch();
  for (let j = 0; j < k; j += 1) {
    if (j === part) continue;
    (ports[j] as MessagePort).postMessage(mine);
    Atomics.add(flags, part * k + j, 1);
    Atomics.notify(flags, part * k + j);
  }
  if (previous !== null) {
    const batches: Float64Array[] = [];
    for (let j = 0; j < k; j += 1) batches.push(j === part ? previous : receive(j));
    if (sim.sync(batches, (i - 1) * sync_s)) break;
  }
  previous = mine;
}
parentPort?.postMessage(sim.figures());
