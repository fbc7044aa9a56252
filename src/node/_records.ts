/**
 * What a node keeps of processes, as plain types: the home's record of each
 * process it is home to, and the runner's of each process it runs
 * (`process_table.ts` holds and changes them).
 */
import type { ExitStatus, GuestProcess } from "../runtime/mod.js";
import type { Endpoint } from "../links/mod.js";
import type { OutputLog } from "./output_log.js";
import type { OutputRelay } from "./relay.js";
import type { NetHome } from "./net_home.js";
import type { NetLink } from "./net_link.js";
import type { Recorded } from "./_location.js";

/** How a process ended, as the API reports it. */
export type ProcessStatus = ExitStatus;

/** What a client asks to run. */
export interface RunRequest {
  module_sha256: string;
  module_name: string;
  args: string[];
  env: string[];
  dirs: { host: string; guest: string }[];
  /** Addresses to listen on, "HOST:PORT": the home owns the sockets, the guest gets them as preopened fds. */
  listen: string[];
  /** Most bytes its memory may grow to; it travels with it, and every node it runs on checks it against its own maximum. */
  memory_max_bytes: number;
  /** Labels a node must have to run it (`--require`); absent: none. */
  requires?: Readonly<Record<string, string>>;
  /** Never moved automatically (`--pin`). */
  pinned?: boolean;
  /** Periodic checkpoints every this many ms (docs/checkpoints.md); absent or 0: none. It travels with the process. */
  checkpoint_every_ms?: number;
}

/** What the home node keeps of a process. */
export interface HomeRecord extends RunRequest {
  pid: string;
  home: string;
  /** Where it runs now. */
  node: string;
  state: "running" | "migrating" | "exited" | "killed" | "failed";
  exit: ProcessStatus | null;
  /** Moves it has made that this home has recorded; `node` is where the last one took it. */
  moves: number;
  /** Where the last move took it from (null before its first move). */
  previous: string | null;
  started_unix_ms: number;
  output: OutputLog;
  /** Its listening sockets and connections, when it listens. */
  net: NetHome | null;
  done: Promise<ProcessStatus>;
  settle: (status: ProcessStatus) => void;
}

/** What the table needs of the node's links (`_links.ts`). */
export interface TableLinks {
  /** A new endpoint for `pid` (not yet serving). */
  endpoint(pid: string): Endpoint;
  /** The endpoint serves its pid here now. */
  add(ep: Endpoint): void;
  /** The process ended here. */
  ended(pid: string): void;
  /** The guest asked to move itself to `node`. */
  selfMigrate(pid: string, node: string): void;
}

/** A process running on this node. */
export interface Running extends RunRequest {
  pid: string;
  home: string;
  proc: GuestProcess;
  relay: OutputRelay;
  /** Its end of its links. */
  links: Endpoint;
  /** Its TCP connections as this node relays them. */
  net: NetLink;
  /** Set while a migration out is under way: a second one is refused. */
  migrating: boolean;
  /** Moves it had made when it began running here. */
  moves: number;
  /** When it began running here (`performance.now()`): its first checkpoint's slowdown is measured from here. */
  runs_since_ms: number;
  /** While a migration out is under way, its destination (saved: after a crash that node is asked whether it took the process). */
  moving_to?: string;
}

/**
 * How long a runner keeps trying to tell the home a location or an end. A
 * home that restarts is back well within this; one gone for longer is a
 * failure the directory and failover handle (issue 11).
 */
export const REPORT_GIVE_UP_MS = 60_000;

/** The public view of a home record. */
export function describeProcess(r: HomeRecord): Record<string, unknown> {
  const { pid, home, node, state, module_name, module_sha256, args, exit, started_unix_ms, memory_max_bytes, moves } = r;
  const listen = r.net?.addresses ?? [];
  return { pid, home, node, state, module_name, module_sha256, args, exit, started_unix_ms, listen, connections: r.net?.connections ?? 0, memory_max_bytes, moves, requires: r.requires ?? {}, pinned: r.pinned ?? false };
}

/** What the location rules (`_location.ts`) look at of a home record. */
export function recorded(r: HomeRecord): Recorded {
  return { pid: r.pid, node: r.node, moves: r.moves, previous: r.previous, ended: r.exit !== null };
}
