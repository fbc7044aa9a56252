/**
 * The simulated nodes' CPUs: each node shares its cores fairly among the
 * processes it runs (processor sharing), so a process on a node with k
 * running processes advances at speed * min(1, cpus / k) reference-core
 * seconds per second; a node past its memory thrashes (its rate falls with
 * the square of the overcommit). Each node keeps a virtual clock V (service
 * every one of its processes received) and a heap of its processes keyed by
 * the V at which each finishes, so a completion is found in O(log k) and
 * nothing is touched per tick.
 */

/** Nodes' CPU state in typed arrays, and each node's heap of process indexes. */
export class Cpus {
  readonly cpus: Int32Array;
  readonly speed: Float64Array;
  readonly memory_cap: Float64Array;
  readonly memory_used: Float64Array;
  /** Virtual service time per process, and when it was last brought forward. */
  readonly V: Float64Array;
  readonly last_s: Float64Array;
  /** Incremented whenever a node's next completion changes: a queued completion with an older epoch is stale. */
  readonly epoch: Uint32Array;
  readonly heaps: number[][];
  /** Per process: V at which it finishes, and its place in its node's heap. */
  readonly finish_V: Float64Array;
  readonly heap_pos: Int32Array;

  constructor(nodes: number, processes: number) {
    this.cpus = new Int32Array(nodes);
    this.speed = new Float64Array(nodes);
    this.memory_cap = new Float64Array(nodes);
    this.memory_used = new Float64Array(nodes);
    this.V = new Float64Array(nodes);
    this.last_s = new Float64Array(nodes);
    this.epoch = new Uint32Array(nodes);
    this.heaps = Array.from({ length: nodes }, () => []);
    this.finish_V = new Float64Array(processes);
    this.heap_pos = new Int32Array(processes).fill(-1);
  }

  /** Processes node `n` runs now. */
  running(n: number): number {
    return (this.heaps[n] as number[]).length;
  }

  /** Reference-core seconds per second each of `n`'s processes receives. */
  rate(n: number): number {
    const k = this.running(n);
    const cpus = this.cpus[n] as number;
    let r = (this.speed[n] as number) * (k <= cpus ? 1 : cpus / k);
    const used = this.memory_used[n] as number;
    const cap = this.memory_cap[n] as number;
    if (used > cap) r *= (cap / used) ** 2;
    return r;
  }

  /** Brings node `n`'s virtual clock to `t_s`; call before anything changes its rate. */
  advance(n: number, t_s: number): void {
    const dt = t_s - (this.last_s[n] as number);
    if (dt > 0 && this.running(n) > 0) this.V[n] = (this.V[n] as number) + this.rate(n) * dt;
    this.last_s[n] = t_s;
  }

  /** CPU time `p` still needs (reference-core seconds), node `n` advanced. */
  remaining(n: number, p: number): number {
    return Math.max(0, (this.finish_V[p] as number) - (this.V[n] as number));
  }

  /** Starts `p` on `n` with `work_s` left. */
  add(n: number, p: number, work_s: number): void {
    const heap = this.heaps[n] as number[];
    this.finish_V[p] = (this.V[n] as number) + work_s;
    heap.push(p);
    this.#up(heap, heap.length - 1);
  }

  /** Removes `p` from `n`; returns the CPU time it still needed. */
  remove(n: number, p: number): number {
    const heap = this.heaps[n] as number[];
    const i = this.heap_pos[p] as number;
    const left = this.remaining(n, p);
    const last = heap.pop() as number;
    this.heap_pos[p] = -1;
    if (i < heap.length) {
      heap[i] = last;
      this.heap_pos[last] = i;
      this.#down(heap, i);
      this.#up(heap, this.heap_pos[last] as number);
    }
    return left;
  }

  /** The process on `n` that finishes first, or -1. */
  first(n: number): number {
    const heap = this.heaps[n] as number[];
    return heap.length === 0 ? -1 : (heap[0] as number);
  }

  /** When `n`'s first process finishes at the current rate (seconds from its last advance), or Infinity. */
  nextCompletion_s(n: number): number {
    const p = this.first(n);
    if (p < 0) return Infinity;
    return (this.last_s[n] as number) + this.remaining(n, p) / this.rate(n);
  }

  #up(heap: number[], i: number): void {
    const p = heap[i] as number;
    const key = this.finish_V[p] as number;
    while (i > 0) {
      const up = (i - 1) >> 1;
      const q = heap[up] as number;
      if ((this.finish_V[q] as number) <= key) break;
      heap[i] = q;
      this.heap_pos[q] = i;
      i = up;
    }
    heap[i] = p;
    this.heap_pos[p] = i;
  }

  #down(heap: number[], i: number): void {
    const n = heap.length;
    const p = heap[i] as number;
    const key = this.finish_V[p] as number;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && (this.finish_V[heap[r] as number] as number) < (this.finish_V[heap[l] as number] as number) ? r : l;
      const q = heap[c] as number;
      if ((this.finish_V[q] as number) >= key) break;
      heap[i] = q;
      this.heap_pos[q] = i;
      i = c;
    }
    heap[i] = p;
    this.heap_pos[p] = i;
  }
}
