/**
 * The dashboard's process list as plain types, imported by the node and by
 * the page (web/), which must not pull in anything of Node's.
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
