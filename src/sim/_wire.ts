/**
 * What the parts of a partitioned run (`Simulation.batch` and `sync` in
 * simulate.ts) tell each other at a
 * sync: one batch of numbers per part and sync, in a growable
 * Float64Array, so a batch crosses to another thread as one buffer.
 *
 * A batch is sections in a fixed order, each a count then its records:
 * the part's figures at the sync (`Head`), its nodes as they are (load
 * vector, version, up, life, draining), the processes it changed (state and
 * node), its messages to other parts' nodes, and its link-traffic changes.
 */

import type { Labels, NodeLoad } from "../policy/mod.js";

/** Numbers of the head of a batch, at `Head` offsets. */
export const HEAD_FIELDS = 7;
export const Head = { done: 0, load_sum: 1, load_sq: 2, load_max: 3, up: 4, busy: 5, drain_left: 6 } as const;

/** Numbers per node in a batch: its index and then {@link NodeField} offsets. */
export const NODE_FIELDS = 16;
export const NodeField = {
  index: 0,
  version: 1,
  up: 2,
  life: 3,
  draining: 4,
  gpu: 5,
  cpus: 6,
  speed: 7,
  processes: 8,
  movable: 9,
  runnable: 10,
  cpu_used: 11,
  memory_used_bytes: 12,
  memory_free_bytes: 13,
  remote_bytes_per_s: 14,
  transfer_bytes_per_s: 15,
} as const;

/** Numbers per load entry in a gossip message: node, version, age, the load vector's numbers ({@link putLoad}), then flags (1: gpu, 2: draining). */
export const ENTRY_FIELDS = 14;

/** The numbers of a load vector in a batch (a node's record from `NodeField.cpus` on, a gossip entry's from its fourth number on). */
export const LOAD_NUMBERS = 10;

/** Writes the numbers of `l` into `f` from `at`, in `NodeField` order (cpus first). */
export function putLoad(f: Float64Array, at: number, l: NodeLoad): void {
  f[at] = l.cpus;
  f[at + 1] = l.speed;
  f[at + 2] = l.processes;
  f[at + 3] = l.movable;
  f[at + 4] = l.runnable;
  f[at + 5] = l.cpu_used;
  f[at + 6] = l.memory_used_bytes;
  f[at + 7] = l.memory_free_bytes;
  f[at + 8] = l.remote_bytes_per_s;
  f[at + 9] = l.transfer_bytes_per_s;
}

/** The load vector of node `node` whose numbers `putLoad` wrote into `f` from `at`. */
export function loadAt(f: Float64Array, at: number, node: string, labels: Labels, draining: boolean): NodeLoad {
  return {
    node,
    cpus: f[at] as number,
    speed: f[at + 1] as number,
    processes: f[at + 2] as number,
    movable: f[at + 3] as number,
    runnable: f[at + 4] as number,
    cpu_used: f[at + 5] as number,
    memory_used_bytes: f[at + 6] as number,
    memory_free_bytes: f[at + 7] as number,
    remote_bytes_per_s: f[at + 8] as number,
    transfer_bytes_per_s: f[at + 9] as number,
    labels,
    draining,
  };
}

/** A message from one part to a node another part owns. */
export const Msg = {
  /** A gossip window: to-node, sent-at ms, entry count, then the entries. */
  gossip: 1,
  /** A move's reservation at its target: p, target, target's life when decided. */
  reserve: 2,
  /** A reservation given back (the move ended before its target took it): p, target, target's life. */
  unreserve: 3,
  /** A moved process reaches its target: p, target, source, CPU left, moves, last move ms, epoch, target's life. */
  arrive: 4,
  /** A moved process its target could not take resumes at its source: p, source, CPU left, moves, last move ms, epoch. */
  resume: 5,
  /** A process starts on a node of another part: p, node, CPU needed, fresh, moves, last move ms, epoch. */
  start: 6,
} as const;

/** Numbers per link-traffic change: time, process, node, sign. */
export const TRAFFIC_FIELDS = 4;

/** An append-only list of numbers that grows as needed. */
export class NumberList {
  #a: Float64Array;
  length = 0;

  constructor(capacity = 1024) {
    this.#a = new Float64Array(capacity);
  }

  push(x: number): void {
    if (this.length === this.#a.length) this.#grow(this.length + 1);
    this.#a[this.length] = x;
    this.length += 1;
  }

  /** Room for `n` more numbers; returns where they start (write them with {@link set}). */
  reserve(n: number): number {
    if (this.length + n > this.#a.length) this.#grow(this.length + n);
    const at = this.length;
    this.length += n;
    return at;
  }

  set(at: number, x: number): void {
    this.#a[at] = x;
  }

  get(at: number): number {
    return this.#a[at] as number;
  }

  /** Appends all of `xs`. */
  append(xs: Float64Array): void {
    const at = this.reserve(xs.length);
    this.#a.set(xs, at);
  }

  /** The numbers in place: valid until the list changes. */
  view(): Float64Array {
    return this.#a.subarray(0, this.length);
  }

  /** The numbers, copied into an array of their own. */
  copy(): Float64Array {
    return this.#a.slice(0, this.length);
  }

  clear(): void {
    this.length = 0;
  }

  #grow(need: number): void {
    let size = this.#a.length * 2;
    while (size < need) size *= 2;
    const a = new Float64Array(size);
    a.set(this.#a.subarray(0, this.length));
    this.#a = a;
  }
}
