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
import type { NodeLoad } from "./load.js";

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

/** A load vector a view owns and rewrites in place. */
type OwnLoad = { -readonly [K in keyof NodeLoad]: NodeLoad[K] };

/** A copy of `l` for a view to own. */
function ownCopy(l: NodeLoad): OwnLoad {
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

/** Rewrites `to` with `l`'s figures (every field of {@link ownCopy}). */
function copyInto(to: OwnLoad, l: NodeLoad): void {
  to.node = l.node;
  to.cpus = l.cpus;
  to.speed = l.speed;
  to.processes = l.processes;
  to.movable = l.movable;
  to.runnable = l.runnable;
  to.cpu_used = l.cpu_used;
  to.memory_used_bytes = l.memory_used_bytes;
  to.memory_free_bytes = l.memory_free_bytes;
  to.remote_bytes_per_s = l.remote_bytes_per_s;
  to.transfer_bytes_per_s = l.transfer_bytes_per_s;
  to.labels = l.labels;
  to.draining = l.draining;
}

/**
 * A record with its place in the view's list. Its load is the view's own
 * copy, rewritten in place by later news: the record and its load sit
 * together in memory for the scans every round makes, and a received load
 * vector is garbage as soon as it is merged, instead of living on in every
 * view that heard it (at 10,000 nodes those copies were most of the heap).
 */
interface Held extends ViewRecord {
  load: OwnLoad;
  at: number;
}

/**
 * The record a small view fills later, made with the view. Its numbers have
 * the kinds real figures have (counts small integers, the rest doubles), so
 * filling it does not change its shape (a change would move its fields
 * elsewhere in memory).
 */
function blank(at: number): Held {
  const load: OwnLoad = { node: "", cpus: 0, speed: NaN, processes: 0, movable: 0, runnable: 0, cpu_used: 0, memory_used_bytes: NaN, memory_free_bytes: NaN, remote_bytes_per_s: NaN, transfer_bytes_per_s: NaN, labels: {}, draining: false };
  return { load, version: 0, age_ms: NaN, received_ms: NaN, at };
}

/** Staleness that does not change with time: every held age grows at the same pace, so the order by this key is the order by age. */
function staleness(r: ViewRecord): number {
  return r.age_ms - r.received_ms;
}

/**
 * One node's view of the cluster: a bounded set of other nodes' load
 * entries. Deterministic and free of I/O; the caller passes the time.
 * The entries' staleness sits in one typed array beside the list, so
 * finding the oldest is a scan of a few cache lines, done only when the
 * oldest was just replaced: merging stays cheap at 10,000 nodes, where
 * almost every entry received is about a node not held.
 */
export class LoadView {
  /** This node's name: entries about it are never kept (its own load is measured, not heard). */
  readonly self: string;
  readonly entries_max: number;
  readonly #records: Held[] = [];
  /** Node of each record, beside the list: a lookup scans these few pointers instead of hashing (see #find). */
  readonly #nodes: string[] = [];
  /** Only for views larger than {@link SCAN_ENTRIES_MAX}, where a scan would cost more than a hash. */
  readonly #index: Map<string, Held> | undefined;
  readonly #stale: Float64Array;
  /**
   * Records not in use, made side by side with the view (small views only):
   * a round scans all of a view's records and a merge writes a few of them,
   * and made one at a time as news arrived they lay scattered among other
   * views' (a cache miss each at 10,000 nodes). Last is taken first.
   */
  readonly #spare: Held[] = [];
  /** Index of the oldest record, or -1 when it must be found again. */
  #oldest = -1;
  /** Scratch of window(): no allocation but the entries it returns. */
  readonly #best: ViewRecord[] = [];
  readonly #ages: number[] = [];

  constructor(self: string, entries_max = VIEW_ENTRIES_MAX_DEFAULT) {
    if (!(Number.isInteger(entries_max) && entries_max >= 1)) throw new RangeError(`entries_max must be a positive integer, not ${entries_max}`);
    this.self = self;
    this.entries_max = entries_max;
    this.#stale = new Float64Array(entries_max);
    this.#index = entries_max > SCAN_ENTRIES_MAX ? new Map() : undefined;
    if (this.#index === undefined) {
      for (let i = 0; i < entries_max; i += 1) this.#spare.push(blank(i));
      this.#spare.reverse();
    }
  }

  /**
   * The entries held, in no particular order. Valid until the next merge:
   * later merges and accounts rewrite the records and their loads in place,
   * so a caller copies what it keeps.
   */
  records(): readonly ViewRecord[] {
    return this.#records;
  }

  /** The entry about `node`, if held. */
  get(node: string): ViewRecord | undefined {
    return this.#find(node);
  }

  /**
   * Merges a received window; returns how many entries it took. An entry
   * wins over the held one for its node when its version is higher, or equal
   * and younger. When the view is full, a newcomer replaces the oldest entry
   * if it is younger than it.
   */
  merge(window: readonly LoadEntry[], now_ms: number): number {
    let taken = 0;
    for (const entry of window) {
      const node = entry.load.node;
      if (node === this.self) continue;
      const held = this.#find(node);
      if (held !== undefined) {
        if (entry.version > held.version || (entry.version === held.version && entry.age_ms < ageOf(held, now_ms))) {
          this.#fill(held, entry, now_ms);
          if (held.at === this.#oldest) this.#oldest = -1;
          taken += 1;
        }
        continue;
      }
      const n = this.#records.length;
      if (n < this.entries_max) {
        const record = this.#made(entry, now_ms, n);
        this.#index?.set(node, record);
        this.#records.push(record);
        this.#nodes.push(node);
        this.#stale[n] = staleness(record);
        this.#oldest = -1;
        taken += 1;
        continue;
      }
      const victim = this.#records[this.#oldestAt()] as Held;
      if (ageOf(victim, now_ms) <= entry.age_ms) continue;
      // The newcomer takes the oldest entry's record (no allocation: views merge millions of entries in a simulation).
      this.#index?.delete(victim.load.node);
      this.#fill(victim, entry, now_ms);
      this.#index?.set(node, victim);
      this.#nodes[victim.at] = node;
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
    const r = this.#find(node);
    if (r === undefined) return false;
    const l = r.load;
    l.processes += change.processes;
    l.runnable += change.runnable;
    l.memory_used_bytes += change.memory_bytes;
    l.memory_free_bytes -= change.memory_bytes;
    return true;
  }

  /** Drops entries older than `age_max_ms` (a node that stopped answering fades out); returns how many. */
  expire(age_max_ms: number, now_ms: number): number {
    let dropped = 0;
    for (let i = this.#records.length - 1; i >= 0; i -= 1) {
      const r = this.#records[i] as Held;
      if (ageOf(r, now_ms) <= age_max_ms) continue;
      this.#remove(r);
      dropped += 1;
    }
    return dropped;
  }

  /** Forgets `node` (it left the cluster); returns whether it was held. */
  forget(node: string): boolean {
    const r = this.#find(node);
    if (r === undefined) return false;
    this.#remove(r);
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
    const k = Math.min(size - 1, this.#records.length);
    if (k <= 0) return out;
    // Top-k by age with an insertion list: k is small and most entries fail the first comparison.
    const best = this.#best;
    const ages = this.#ages;
    let count = 0;
    for (const r of this.#records) {
      const age = ageOf(r, now_ms);
      if (count === k && age >= (ages[k - 1] as number)) continue;
      let at = count === k ? k - 1 : count;
      if (count < k) count += 1;
      while (at > 0 && (ages[at - 1] as number) > age) {
        best[at] = best[at - 1] as ViewRecord;
        ages[at] = ages[at - 1] as number;
        at -= 1;
      }
      best[at] = r;
      ages[at] = age;
    }
    for (let i = 0; i < count; i += 1) out.push({ load: (best[i] as ViewRecord).load, version: (best[i] as ViewRecord).version, age_ms: ages[i] as number });
    return out;
  }

  /** A record holding `entry` at place `at`: a spare one if there is one. */
  #made(entry: LoadEntry, now_ms: number, at: number): Held {
    const spare = this.#spare.pop();
    if (spare === undefined) return { load: ownCopy(entry.load), version: entry.version, age_ms: entry.age_ms, received_ms: now_ms, at };
    spare.at = at;
    this.#fill(spare, entry, now_ms);
    return spare;
  }

  #fill(r: Held, entry: LoadEntry, now_ms: number): void {
    copyInto(r.load, entry.load);
    r.version = entry.version;
    r.age_ms = entry.age_ms;
    r.received_ms = now_ms;
    this.#stale[r.at] = staleness(r);
  }

  #oldestAt(): number {
    if (this.#oldest >= 0) return this.#oldest;
    const stale = this.#stale;
    let at = 0;
    for (let i = 1; i < this.#records.length; i += 1) if ((stale[i] as number) > (stale[at] as number)) at = i;
    this.#oldest = at;
    return at;
  }

  /** The record about `node`, if held. */
  #find(node: string): Held | undefined {
    if (this.#index !== undefined) return this.#index.get(node);
    const nodes = this.#nodes;
    for (let i = 0; i < nodes.length; i += 1) if (nodes[i] === node) return this.#records[i];
    return undefined;
  }

  #remove(r: Held): void {
    this.#index?.delete(r.load.node);
    const last = this.#records.pop() as Held;
    const last_node = this.#nodes.pop() as string;
    if (last !== r) {
      this.#records[r.at] = last;
      this.#nodes[r.at] = last_node;
      last.at = r.at;
      this.#stale[last.at] = staleness(last);
    }
    if (this.#index === undefined) this.#spare.push(r);
    this.#oldest = -1;
  }
}
