/**
 * The simulator's event queue: a 4-ary min-heap on time held in typed
 * arrays (time, kind, subject, epoch), so a million events cost no object
 * each. Ties pop in insertion order (a sequence number), which keeps a run
 * deterministic for its seed: (time, sequence) orders every event, so the
 * pop order is the same whatever the heap's shape. Four children per node
 * halve the depth of a binary heap, and with it the entries moved per pop
 * (the queue holds every node's next round and completion: tens of
 * thousands at 10,000 nodes); the four sit side by side in each array.
 */

/** Children per heap node. */
const ARITY = 4;

/** What an event is about. */
export const EventKind = {
  round: 1,
  complete: 2,
  migrationPause: 3,
  migrationDone: 4,
  fail: 5,
  repair: 6,
  drain: 7,
  sample: 8,
  coolEnd: 9,
} as const;

/** Kind of an event. */
export type EventKind = (typeof EventKind)[keyof typeof EventKind];

/** A min-heap of events. */
export class EventQueue {
  #time = new Float64Array(1024);
  #seq = new Float64Array(1024);
  #kind = new Uint8Array(1024);
  #subject = new Int32Array(1024);
  #epoch = new Uint32Array(1024);
  #size = 0;
  #next_seq = 0;
  /** Fields of the event last popped. */
  time = 0;
  kind = 0;
  subject = 0;
  epoch = 0;

  get size(): number {
    return this.#size;
  }

  /** Time of the earliest event, or Infinity. */
  peekTime(): number {
    return this.#size === 0 ? Infinity : (this.#time[0] as number);
  }

  push(time: number, kind: EventKind, subject: number, epoch = 0): void {
    if (this.#size === this.#time.length) this.#grow();
    let i = this.#size;
    this.#size += 1;
    const seq = this.#next_seq;
    this.#next_seq += 1;
    while (i > 0) {
      const up = ((i - 1) / ARITY) | 0;
      if (!this.#less(time, seq, up)) break;
      this.#copy(up, i);
      i = up;
    }
    this.#set(i, time, seq, kind, subject, epoch);
  }

  /** Pops the earliest event into `time`, `kind`, `subject`, `epoch`; false when empty. */
  pop(): boolean {
    if (this.#size === 0) return false;
    this.time = this.#time[0] as number;
    this.kind = this.#kind[0] as number;
    this.subject = this.#subject[0] as number;
    this.epoch = this.#epoch[0] as number;
    this.#size -= 1;
    const n = this.#size;
    if (n === 0) return true;
    const t = this.#time[n] as number;
    const s = this.#seq[n] as number;
    const k = this.#kind[n] as number;
    const sub = this.#subject[n] as number;
    const ep = this.#epoch[n] as number;
    let i = 0;
    for (;;) {
      const l = ARITY * i + 1;
      if (l >= n) break;
      const end = Math.min(l + ARITY, n);
      let c = l;
      for (let k = l + 1; k < end; k += 1) if (this.#lessAt(k, c)) c = k;
      if (!this.#lessThan(c, t, s)) break;
      this.#copy(c, i);
      i = c;
    }
    this.#set(i, t, s, k as EventKind, sub, ep);
    return true;
  }

  #lessThan(i: number, t: number, s: number): boolean {
    const ti = this.#time[i] as number;
    return ti < t || (ti === t && (this.#seq[i] as number) < s);
  }

  #less(t: number, s: number, i: number): boolean {
    const ti = this.#time[i] as number;
    return t < ti || (t === ti && s < (this.#seq[i] as number));
  }

  #lessAt(a: number, b: number): boolean {
    return this.#lessThan(a, this.#time[b] as number, this.#seq[b] as number);
  }

  #copy(from: number, to: number): void {
    this.#time[to] = this.#time[from] as number;
    this.#seq[to] = this.#seq[from] as number;
    this.#kind[to] = this.#kind[from] as number;
    this.#subject[to] = this.#subject[from] as number;
    this.#epoch[to] = this.#epoch[from] as number;
  }

  #set(i: number, time: number, seq: number, kind: EventKind, subject: number, epoch: number): void {
    this.#time[i] = time;
    this.#seq[i] = seq;
    this.#kind[i] = kind;
    this.#subject[i] = subject;
    this.#epoch[i] = epoch;
  }

  #grow(): void {
    const cap = this.#time.length * 2;
    const grow = <T extends Float64Array | Uint8Array | Int32Array | Uint32Array>(a: T, make: (n: number) => T): T => {
      const b = make(cap);
      b.set(a as never);
      return b;
    };
    this.#time = grow(this.#time, (n) => new Float64Array(n));
    this.#seq = grow(this.#seq, (n) => new Float64Array(n));
    this.#kind = grow(this.#kind, (n) => new Uint8Array(n));
    this.#subject = grow(this.#subject, (n) => new Int32Array(n));
    this.#epoch = grow(this.#epoch, (n) => new Uint32Array(n));
  }
}
