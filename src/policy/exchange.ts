/**
 * Load exchange, after MOSIX: every interval a node sends its own load
 * vector, with a window of the freshest entries it knows, to a few random
 * peers; each receiver keeps the fresher of what it had and what it got.
 * A view is bounded, so a node's cost stays the same at 3 nodes and at
 * 10,000, and decisions look at a sample of the cluster, not all of it.
 *
 * No shared clock: an entry carries its age (how long ago its node measured
 * it) and every hop adds the time it sat in a view. Which of two entries
 * about one node is fresher is decided by that node's own version counter,
 * so clock skew never lets stale load win.
 */
import type { Labels, NodeLoad } from "./load.js";

/** One node's load as it travels: its origin's version counter and its age when sent. */
export interface LoadEntry {
  readonly load: NodeLoad;
  /** Incremented by the origin at every measurement: higher is fresher. */
  readonly version: number;
  /** How long ago (ms) the origin measured it, when this copy was sent. */
  readonly age_ms: number;
}

/** An entry as a view holds it. Read-only outside this file. */
export interface ViewRecord {
  load: NodeLoad;
  version: number;
  /** Age when it was received. */
  age_ms: number;
  /** Receiver's clock (ms) when it was received. */
  received_ms: number;
}

/** Entries a view holds by default: enough to find a target, few enough to scan every round. */
export const VIEW_ENTRIES_MAX_DEFAULT = 16;
/** Entries a message carries by default, after MOSIX's small window of fresh entries. */
export const WINDOW_ENTRIES_DEFAULT = 4;

/** Age of `record` at `now_ms` on the holder's clock. */
export function ageOf(record: ViewRecord, now_ms: number): number {
  return record.age_ms + Math.max(0, now_ms - record.received_ms);
}

/**
 * Views up to this many entries find a node by scanning their list of names
 * rather than through a hash map: a full view replaces an entry on almost
 * every merge in a large cluster, and a map's delete-and-set churn (with its
 * periodic rehash) costs more than comparing a few pointers.
 */
const SCAN_ENTRIES_MAX = 32;

/**
 * Offsets of an entry's numbers in its view's block. A view keeps every
 * number it holds in one typed array: a merge writes an entry's figures
 * into two cache lines, and a round reads them all from a few
 * consecutive ones. As object fields the same figures were each a boxed
 * double of their own: a merge touched a dozen scattered lines, and at
 * 10,000 nodes the simulator spent a fifth of its time there.
 */
const F = {
  version: 0,
  age_ms: 1,
  received_ms: 2,
  cpus: 3,
  speed: 4,
  processes: 5,
  movable: 6,
  runnable: 7,
  cpu_used: 8,
  memory_used_bytes: 9,
  memory_free_bytes: 10,
  remote_bytes_per_s: 11,
  transfer_bytes_per_s: 12,
  draining: 13,
} as const;
const FIELDS = 14;

/** Where a view's entries live: their numbers, their names and their labels, by place. */
interface Store {
  readonly f: Float64Array;
  readonly nodes: string[];
  readonly labels: Labels[];
}

/**
 * The load vector of the entry at one place of a view: read through to the
 * view's block, so it always shows what the place holds now. Serialised as a
 * plain load vector.
 */
class HeldLoad implements NodeLoad {
  readonly #s: Store;
  readonly #at: number;
  readonly #b: number;

  constructor(s: Store, at: number, b: number) {
    this.#s = s;
    this.#at = at;
    this.#b = b;
  }

  get node(): string {
    return this.#s.nodes[this.#at] as string;
  }
  get cpus(): number {
    return this.#s.f[this.#b + F.cpus] as number;
  }
  get speed(): number {
    return this.#s.f[this.#b + F.speed] as number;
  }
  get processes(): number {
    return this.#s.f[this.#b + F.processes] as number;
  }
  get movable(): number {
    return this.#s.f[this.#b + F.movable] as number;
  }
  get runnable(): number {
    return this.#s.f[this.#b + F.runnable] as number;
  }
  get cpu_used(): number {
    return this.#s.f[this.#b + F.cpu_used] as number;
  }
  get memory_used_bytes(): number {
    return this.#s.f[this.#b + F.memory_used_bytes] as number;
  }
  get memory_free_bytes(): number {
    return this.#s.f[this.#b + F.memory_free_bytes] as number;
  }
  get remote_bytes_per_s(): number {
    return this.#s.f[this.#b + F.remote_bytes_per_s] as number;
  }
  get transfer_bytes_per_s(): number {
    return this.#s.f[this.#b + F.transfer_bytes_per_s] as number;
  }
  get labels(): Labels {
    return this.#s.labels[this.#at] as Labels;
  }
  get draining(): boolean {
    return this.#s.f[this.#b + F.draining] === 1;
  }

  toJSON(): NodeLoad {
    return loadCopy(this);
  }
}

/** The entry at one place of a view, read through like its {@link HeldLoad}. */
class HeldRecord implements ViewRecord {
  readonly load: HeldLoad;
  readonly #f: Float64Array;
  readonly #b: number;

  constructor(s: Store, at: number, b: number) {
    this.load = new HeldLoad(s, at, b);
    this.#f = s.f;
    this.#b = b;
  }

  get version(): number {
    return this.#f[this.#b + F.version] as number;
  }
  get age_ms(): number {
    return this.#f[this.#b + F.age_ms] as number;
  }
  get received_ms(): number {
    return this.#f[this.#b + F.received_ms] as number;
  }

  toJSON(): ViewRecord {
    return { load: loadCopy(this.load), version: this.version, age_ms: this.age_ms, received_ms: this.received_ms };
  }
}

/** A plain copy of `l`, for a caller that keeps a load past the view's next change, or spreads it. */
export function loadCopy(l: NodeLoad): NodeLoad {
  return {
    node: l.node,
    cpus: l.cpus,
    speed: l.speed,
    processes: l.processes,
    movable: l.movable,
    runnable: l.runnable,
    cpu_used: l.cpu_used,
    memory_used_bytes: l.memory_used_bytes,
    memory_free_bytes: l.memory_free_bytes,
    remote_bytes_per_s: l.remote_bytes_per_s,
    transfer_bytes_per_s: l.transfer_bytes_per_s,
    labels: l.labels,
    draining: l.draining,
  };
}

/**
 * One node's view of the cluster: a bounded set of other nodes' load
 * entries. Deterministic and free of I/O; the caller passes the time.
 * An entry's place is fixed while it is held; its figures sit in the
 * view's block (see {@link F}) with, beside them, each place's staleness,
 * so finding the oldest is a scan of a few cache lines, done only when the
 * oldest was just replaced: merging stays cheap at 10,000 nodes, where
 * almost every entry received is about a node not held.
 */
export class LoadView {
  /** This node's name: entries about it are never kept (its own load is measured, not heard). */
  readonly self: string;
  readonly entries_max: number;
  /**
   * Each place's staleness first, then each place's {@link FIELDS} numbers.
   * The staleness (age when received minus when received) does not change
   * with time, and every held age grows at the same pace (the caller's
   * clock never goes back), so the order by staleness is the order by age:
   * finding the oldest or the freshest reads only these few lines.
   */
  readonly #f: Float64Array;
  /** Node and labels of each place. A lookup scans the names' few pointers instead of hashing (see #find). */
  readonly #nodes: string[] = [];
  readonly #labels: Labels[] = [];
  /** The records of the places in use, in place order: what {@link records} returns. */
  readonly #records: HeldRecord[] = [];
  /** A record for every place, made with the view. */
  readonly #places: HeldRecord[] = [];
  /** Only for views larger than {@link SCAN_ENTRIES_MAX}, where a scan would cost more than a hash: place by node. */
  readonly #index: Map<string, number> | undefined;
  /** Place of the oldest record, or -1 when it must be found again. */
  #oldest = -1;
  /** Scratch of window(): no allocation but the entries it returns. */
  readonly #best: number[] = [];
  readonly #ages: number[] = [];

  constructor(self: string, entries_max = VIEW_ENTRIES_MAX_DEFAULT) {
    if (!(Number.isInteger(entries_max) && entries_max >= 1)) throw new RangeError(`entries_max must be a positive integer, not ${entries_max}`);
    this.self = self;
    this.entries_max = entries_max;
    this.#f = new Float64Array(entries_max * (1 + FIELDS));
    this.#index = entries_max > SCAN_ENTRIES_MAX ? new Map() : undefined;
    const store: Store = { f: this.#f, nodes: this.#nodes, labels: this.#labels };
    for (let i = 0; i < entries_max; i += 1) this.#places.push(new HeldRecord(store, i, entries_max + i * FIELDS));
  }

  /**
   * The entries held, in no particular order. Valid until the next merge:
   * a record reads its place in the view, which later merges and accounts
   * rewrite, so a caller copies what it keeps ({@link loadCopy}).
   */
  records(): readonly ViewRecord[] {
    return this.#records;
  }

  /** The entry about `node`, if held. */
  get(node: string): ViewRecord | undefined {
    const at = this.#find(node);
    return at < 0 ? undefined : this.#places[at];
  }

  /**
   * Merges a received window; returns how many entries it took. An entry
   * wins over the held one for its node when its version is higher, or equal
   * and younger. When the view is full, a newcomer replaces the oldest entry
   * if it is younger than it.
   */
  merge(window: readonly LoadEntry[], now_ms: number): number {
    const f = this.#f;
    const max = this.entries_max;
    let taken = 0;
    for (const entry of window) {
      const node = entry.load.node;
      if (node === this.self) continue;
      const held = this.#find(node);
      if (held >= 0) {
        const b = max + held * FIELDS;
        const version = f[b + F.version] as number;
        if (entry.version > version || (entry.version === version && entry.age_ms < this.#ageAt(b, now_ms))) {
          this.#fill(held, entry, now_ms);
          if (held === this.#oldest) this.#oldest = -1;
          taken += 1;
        }
        continue;
      }
      const n = this.#records.length;
      if (n < max) {
        this.#fill(n, entry, now_ms);
        this.#index?.set(node, n);
        this.#records.push(this.#places[n] as HeldRecord);
        this.#oldest = -1;
        taken += 1;
        continue;
      }
      const victim = this.#oldestAt();
      if (this.#ageAt(max + victim * FIELDS, now_ms) <= entry.age_ms) continue;
      this.#index?.delete(this.#nodes[victim] as string);
      this.#fill(victim, entry, now_ms);
      this.#index?.set(node, victim);
      this.#oldest = -1;
      taken += 1;
    }
    return taken;
  }

  /**
   * Adjusts the entry about `node` by a change this node caused (it placed
   * or sent a process there) until fresher news arrives, so that decisions
   * later in the same interval do not all pick the same node. Returns
   * whether the entry was held.
   */
  account(node: string, change: { processes: number; runnable: number; memory_bytes: number }): boolean {
    const at = this.#find(node);
    if (at < 0) return false;
    const f = this.#f;
    const b = this.entries_max + at * FIELDS;
    f[b + F.processes] = (f[b + F.processes] as number) + change.processes;
    f[b + F.runnable] = (f[b + F.runnable] as number) + change.runnable;
    f[b + F.memory_used_bytes] = (f[b + F.memory_used_bytes] as number) + change.memory_bytes;
    f[b + F.memory_free_bytes] = (f[b + F.memory_free_bytes] as number) - change.memory_bytes;
    return true;
  }

  /** Drops entries older than `age_max_ms` (a node that stopped answering fades out); returns how many. */
  expire(age_max_ms: number, now_ms: number): number {
    let dropped = 0;
    for (let i = this.#records.length - 1; i >= 0; i -= 1) {
      if (this.#ageAt(this.entries_max + i * FIELDS, now_ms) <= age_max_ms) continue;
      this.#remove(i);
      dropped += 1;
    }
    return dropped;
  }

  /** Forgets `node` (it left the cluster); returns whether it was held. */
  forget(node: string): boolean {
    const at = this.#find(node);
    if (at < 0) return false;
    this.#remove(at);
    return true;
  }

  /**
   * The window to send: `own` first (age 0), then the `size - 1` freshest
   * entries held, freshest first, each aged to `now_ms`. Like
   * {@link records}, to be sent (or merged) before this view changes.
   */
  window(own: LoadEntry, at: { size: number; now_ms: number }): LoadEntry[] {
    const { size, now_ms } = at;
    const out: LoadEntry[] = [own];
    const n = this.#records.length;
    const k = Math.min(size - 1, n);
    if (k <= 0) return out;
    // Top-k by staleness with an insertion list: k is small, most places fail the first comparison, and only the staleness is read.
    const f = this.#f;
    const best = this.#best;
    const ages = this.#ages;
    let count = 0;
    for (let i = 0; i < n; i += 1) {
      const age = f[i] as number;
      if (count === k && age >= (ages[k - 1] as number)) continue;
      let to = count === k ? k - 1 : count;
      if (count < k) count += 1;
      while (to > 0 && (ages[to - 1] as number) > age) {
        best[to] = best[to - 1] as number;
        ages[to] = ages[to - 1] as number;
        to -= 1;
      }
      best[to] = i;
      ages[to] = age;
    }
    const max = this.entries_max;
    for (let i = 0; i < count; i += 1) {
      const place = best[i] as number;
      const b = max + place * FIELDS;
      out.push({ load: (this.#places[place] as HeldRecord).load, version: f[b + F.version] as number, age_ms: this.#ageAt(b, now_ms) });
    }
    return out;
  }

  /** Writes `entry` into place `at`, received now. */
  #fill(at: number, entry: LoadEntry, now_ms: number): void {
    const f = this.#f;
    const b = this.entries_max + at * FIELDS;
    const l = entry.load;
    this.#nodes[at] = l.node;
    this.#labels[at] = l.labels;
    f[b + F.version] = entry.version;
    f[b + F.age_ms] = entry.age_ms;
    f[b + F.received_ms] = now_ms;
    f[b + F.cpus] = l.cpus;
    f[b + F.speed] = l.speed;
    f[b + F.processes] = l.processes;
    f[b + F.movable] = l.movable;
    f[b + F.runnable] = l.runnable;
    f[b + F.cpu_used] = l.cpu_used;
    f[b + F.memory_used_bytes] = l.memory_used_bytes;
    f[b + F.memory_free_bytes] = l.memory_free_bytes;
    f[b + F.remote_bytes_per_s] = l.remote_bytes_per_s;
    f[b + F.transfer_bytes_per_s] = l.transfer_bytes_per_s;
    f[b + F.draining] = l.draining ? 1 : 0;
    f[at] = entry.age_ms - now_ms;
  }

  /** Age at `now_ms` of the entry whose numbers start at `b`: as {@link ageOf} computes it, to the last bit. */
  #ageAt(b: number, now_ms: number): number {
    const f = this.#f;
    return (f[b + F.age_ms] as number) + Math.max(0, now_ms - (f[b + F.received_ms] as number));
  }

  #oldestAt(): number {
    if (this.#oldest >= 0) return this.#oldest;
    const f = this.#f;
    let at = 0;
    for (let i = 1; i < this.#records.length; i += 1) if ((f[i] as number) > (f[at] as number)) at = i;
    this.#oldest = at;
    return at;
  }

  /** The place of the record about `node`, or -1. */
  #find(node: string): number {
    if (this.#index !== undefined) return this.#index.get(node) ?? -1;
    const nodes = this.#nodes;
    const n = this.#records.length;
    for (let i = 0; i < n; i += 1) if (nodes[i] === node) return i;
    return -1;
  }

  /** Empties place `at`: the last place in use moves into it. */
  #remove(at: number): void {
    this.#index?.delete(this.#nodes[at] as string);
    const last = this.#records.length - 1;
    this.#records.pop();
    if (at !== last) {
      const f = this.#f;
      const max = this.entries_max;
      f.copyWithin(max + at * FIELDS, max + last * FIELDS, max + (last + 1) * FIELDS);
      f[at] = f[last] as number;
      this.#nodes[at] = this.#nodes[last] as string;
      this.#labels[at] = this.#labels[last] as Labels;
      this.#index?.set(this.#nodes[at] as string, at);
    }
    this.#oldest = -1;
  }
}
