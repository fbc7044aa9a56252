/**
 * The dashboard's nodes and process list as plain types, imported by the
 * node and by the page (web/), which must not pull in anything of Node's.
 */

/** One process as the dashboard lists it. */
export interface ProcessRow {
  pid: string;
  /** Where it runs now. */
  node: string;
  home: string;
  state: string;
  module_name: string;
  args: string[];
  started_unix_ms: number;
  moves: number;
  /** Its memory now, bytes; null when its runner did not say (it ended, or the runner is down). */
  memory_bytes: number | null;
}

/** One window of the filtered, sorted list. */
export interface ProcessPage {
  /** Rows that pass the filter. */
  total: number;
  /** Rows before the filter. */
  all: number;
  offset: number;
  rows: ProcessRow[];
  /** Rows by state, before the filter (for the state picker's counts). */
  states: Record<string, number>;
}

/** One node as the dashboard plots it. */
export interface NodeStats {
  name: string;
  address: string;
  up: true;
  /** Processes running here now, and how many it takes at most. */
  processes: number;
  processes_max: number;
  /** Memory of the guests running here. */
  guest_memory_bytes: number;
  /** The node's OS process: resident memory and JavaScript heap in use. */
  rss_bytes: number;
  heap_used_bytes: number;
  /** The machine's one-minute load average, and its CPUs. */
  load1: number;
  cpus: number;
  /** The load module's figures: guests that may compute at once (`--cpus`), cores the guests want and use (load per CPU is runnable over node_cpus). */
  node_cpus: number;
  runnable: number;
  cpu_used: number;
  /** Whether the node is drained (`ferry drain`): nothing new lands there. */
  draining: boolean;
  post_copy: boolean;
  started_unix_ms: number;
  time_unix_ms: number;
}

/** A node that did not answer. */
export interface NodeDown {
  address: string;
  up: false;
}
