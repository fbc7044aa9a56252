/**
 * What the policies look at: a node's load vector, a process's description,
 * and the arithmetic both share (how slow a node makes a process, whether a
 * node's labels meet a process's requirements). Plain data: the daemon fills
 * it from its measurements, the simulator from its model.
 */

/** Labels of a node (`--label k=v`) or requirements of a process (`--require k=v`). */
export type Labels = Readonly<Record<string, string>>;

/** One node's load, as it measured it. */
export interface NodeLoad {
  /** The node's name. */
  readonly node: string;
  /** Guests it runs at once (`--cpus`): its capacity. */
  readonly cpus: number;
  /** Relative speed of one of its cores (1 = the reference core a process's CPU time is counted in). */
  readonly speed: number;
  /** Processes it hosts, runnable or waiting on I/O, counting incoming migrations it has accepted. */
  readonly processes: number;
  /** Processes an automatic move may take now: not pinned, not moving, not in their cooldown, under their move cap. */
  readonly movable: number;
  /** Cores its processes want: the sum of their CPU shares (a CPU-bound process counts 1), counting incoming migrations. */
  readonly runnable: number;
  /** Cores busy over the last interval, 0..cpus: real use, not a request. */
  readonly cpu_used: number;
  /** Memory its processes hold, counting incoming migrations. */
  readonly memory_used_bytes: number;
  /** Memory still free for processes. */
  readonly memory_free_bytes: number;
  /** Link traffic of its processes to processes on other nodes, both directions. */
  readonly remote_bytes_per_s: number;
  /** Rate at which it has been measured to send a migration's pages. */
  readonly transfer_bytes_per_s: number;
  /** Its labels; a process with requirements goes only where they all hold. */
  readonly labels: Labels;
  /** Drained: everything movable leaves, and nothing new lands. */
  readonly draining: boolean;
}

/** Traffic from a process to one of its link peers. */
export interface LinkPeer {
  readonly pid: string;
  /** The node the peer runs on now. */
  readonly node: string;
  /** Bytes per second between the two, both directions. */
  readonly bytes_per_s: number;
}

/** One process, as its runner sees it. */
export interface ProcessInfo {
  readonly pid: string;
  /** Memory it holds: what a migration must carry. */
  readonly memory_bytes: number;
  /** Bytes of memory it writes per second: what pre-copy must send again. */
  readonly dirty_bytes_per_s: number;
  /** Share of one core it wants (runnable time over wall time lately): 1 when CPU-bound, near 0 when it mostly waits. */
  readonly cpu_share: number;
  /** CPU time it has used so far, in reference-core seconds. */
  readonly cpu_s: number;
  /** Requirements on the node's labels. */
  readonly requires: Labels;
  /** Never moved automatically (`ferry run --pin`). */
  readonly pinned: boolean;
  /** Moves so far. */
  readonly moves: number;
  /** When it last moved (caller's clock, ms); -Infinity if never. */
  readonly last_move_ms: number;
  /** Its link peers with their traffic, heaviest first or in any order. */
  readonly peers: readonly LinkPeer[];
}

/**
 * How much longer a process takes on `load` than on a free reference core
 * (1 = full speed), if the node ran `runnable` processes: cores are shared
 * fairly, so past `cpus` each process gets `cpus / runnable` of one.
 */
export function slowdown(load: Pick<NodeLoad, "cpus" | "speed">, runnable: number): number {
  const share = runnable <= load.cpus ? 1 : load.cpus / runnable;
  return 1 / (load.speed * share);
}

const KEYS = new WeakMap<Labels, readonly string[]>();
/** The set asked last and its keys: a round checks one process against every target in a row, so this answers almost every call without hashing. */
let last_labels: Labels | undefined;
let last_keys: readonly string[] = [];

/** The keys of a label set, listed once per set: checks run on every target of every decision, and `for...in` is slow. */
function keysOf(labels: Labels): readonly string[] {
  if (labels === last_labels) return last_keys;
  let keys = KEYS.get(labels);
  if (keys === undefined) {
    keys = Object.keys(labels);
    KEYS.set(labels, keys);
  }
  last_labels = labels;
  last_keys = keys;
  return keys;
}

/** Whether a node with `labels` meets every requirement in `requires`. */
export function satisfies(labels: Labels, requires: Labels): boolean {
  const keys = keysOf(requires);
  for (let i = 0; i < keys.length; i += 1) {
    const key = keys[i] as string;
    if (labels[key] !== requires[key]) return false;
  }
  return true;
}

/** Largest label set accepted from a command line: a label is matched on every decision, so its count is bounded. */
export const LABELS_MAX = 32;

/**
 * Parses `k=v` strings (`--label`, `--require`) into labels. Returns an
 * error message for the first malformed one instead of throwing: the caller
 * knows whether that is a usage error or a bad request.
 */
export function parseLabels(items: readonly string[]): Labels | string {
  if (items.length > LABELS_MAX) return `at most ${LABELS_MAX} labels`;
  const out: Record<string, string> = {};
  for (const item of items) {
    const m = /^([A-Za-z0-9_.\-/]{1,63})=([A-Za-z0-9_.\-/]{0,63})$/.exec(item);
    if (m === null) return `${JSON.stringify(item)}: want k=v (letters, digits, _ . - /)`;
    out[m[1] as string] = m[2] as string;
  }
  return out;
}
