/**
 * Builders for the policy tests: a node's load and a process with sensible
 * defaults, and a view of exact, fresh entries. Test support only.
 */
import { Prng } from "../_prng.js";
import type { ViewRecord } from "./exchange.js";
import type { NodeLoad, ProcessInfo } from "./load.js";

const GIB = 1024 ** 3;

/** A node with 4 idle cores of speed 1 and 16 GiB free, overridden by `changes`. */
export function nodeLoad(node: string, changes: Partial<NodeLoad> = {}): NodeLoad {
  return {
    node,
    cpus: 4,
    speed: 1,
    processes: changes.processes ?? changes.runnable ?? 0,
    movable: changes.movable ?? changes.processes ?? changes.runnable ?? 0,
    runnable: 0,
    cpu_used: 0,
    memory_used_bytes: 0,
    memory_free_bytes: 16 * GIB,
    remote_bytes_per_s: 0,
    transfer_bytes_per_s: 250e6,
    labels: {},
    draining: false,
    ...changes,
  };
}

/** A CPU-bound 8 MiB process that has run 10 s and never moved, overridden by `changes`. */
export function proc(pid: string, changes: Partial<ProcessInfo> = {}): ProcessInfo {
  return { pid, memory_bytes: 8 * 1024 * 1024, dirty_bytes_per_s: 1e6, cpu_share: 1, cpu_s: 10, requires: {}, pinned: false, moves: 0, last_move_ms: -Infinity, peers: [], ...changes };
}

/** View records of `loads`, all heard just now. */
export function viewOf(loads: readonly NodeLoad[], now_ms = 0): ViewRecord[] {
  return loads.map((load) => ({ load, version: 1, age_ms: 0, received_ms: now_ms }));
}

/** A generator with a fixed seed. */
export function random(seed = 1): Prng {
  return new Prng(seed);
}
