/**
 * The capturable state of a WASI host: a plain JSON value (no bigint: 64-bit
 * numbers are decimal strings), versioned by `v`. `parse_wasi_state` checks a
 * value that came from outside (an image, a frame) before anything is
 * restored from it, so bad input is a typed error that changes nothing.
 *
 * Paths: every fd below a preopen is recorded as (preopen index, path
 * relative to it). Restore opens it there, inside the directory the resuming
 * side grants for that preopen, through the sandbox's resolver, so a runtime
 * that maps a preopen to another host directory on the destination moves its
 * open files along. `host_path` and `guest_path` are recorded as well, for
 * error messages and people reading a capture; no host path from a state is
 * ever opened.
 */

import { RestoreError } from "../errors.js";
import { STREAM_KINDS, type Preopen, type StreamKind } from "./deps.js";
import { FDS_MAX, type ConnStreams } from "./fd_table.js";

/** The only state version this code writes and reads. */
export const WASI_STATE_VERSION = 1;

/** Fields every fd has. */
type FdStateCommon = {
  /** The guest's fd number. */
  fd: number;
  /** preview1 fdflags. */
  fdflags: number;
  /** Rights, u64 as a decimal string. */
  rights_base: string;
  /** Inheriting rights, u64 as a decimal string. */
  rights_inheriting: string;
};

/**
 * stdin/stdout/stderr at some fd number, and what it is. A state captured
 * before streams had kinds has no `as`: it is read as `terminal`, which is
 * what such a process saw.
 */
export type StdioFdState = FdStateCommon & { kind: "stdio"; stream: 0 | 1 | 2; as: StreamKind };

/** Where a file or directory lies. */
type Location = {
  /** Index into {@link WasiState.preopens}. */
  preopen: number;
  /** Path below that preopen, "" for the preopen itself; no ".", "..", or empty components. */
  rel_path: string;
  /** Host path at capture time (informational). */
  host_path: string;
  /** Path as the guest would name it (informational). */
  guest_path: string;
};

/** An open directory. */
export type DirFdState = FdStateCommon & Location & { kind: "dir"; is_preopen: boolean };

/** An open file. */
export type FileFdState = FdStateCommon &
  Location & {
    kind: "file";
    read: boolean;
    write: boolean;
    /** oflags path_open got; restore drops CREAT, EXCL and TRUNC. */
    oflags: number;
    /** Offset, u64 as a decimal string. */
    offset: string;
    /**
     * True when, at capture, the path no longer named the open file (deleted
     * or replaced while open): such a file cannot be reopened.
     */
    detached: boolean;
  };

/** A listening socket (preopened; its real socket is the relay's). */
export type ListenerFdState = FdStateCommon & { kind: "listener"; listener: number; address: string; accepted: number };

/** An accepted connection: the guest's position in each direction of the stream. */
export type ConnFdState = FdStateCommon & ConnStreams & { kind: "conn" };

/** Any fd. */
export type FdState = StdioFdState | DirFdState | FileFdState | ListenerFdState | ConnFdState;

/** A poll_oneoff interrupted by a suspension; see poll.ts. */
export type PendingPollState = {
  import: "poll_oneoff";
  /** in_ptr, out_ptr, nsubscriptions, nevents_ptr of the interrupted call. */
  args: number[];
  /** Absolute guest-monotonic deadlines of its relative clock subscriptions. */
  clocks: Array<{ index: number; timeout_ns: string; deadline_ns: string }>;
};

/** Everything needed to restore a {@link WasiHost} elsewhere. */
export type WasiState = {
  v: 1;
  args: string[];
  env: string[];
  /**
   * The preopens the process had, in fd order. A restore matches the
   * directories it is granted to these by guest path; the host paths are a
   * record only, never opened (grant.ts).
   */
  preopens: Preopen[];
  fds: FdState[];
  /** Guest monotonic time at capture, ns as a decimal string; the clock continues from here. */
  monotonic_ns: string;
  /** Bytes the guest read from stdin (absent in states captured before it was counted: 0). */
  stdin_bytes: number;
  stdout_bytes: number;
  stderr_bytes: number;
  pending: PendingPollState | null;
};

/** Checks that `value` is a well-formed {@link WasiState}; throws RestoreError ERR_RESTORE_STATE if not. */
export function parse_wasi_state(value: unknown): WasiState {
  const s = record(value, "state");
  if (s["v"] !== WASI_STATE_VERSION) bad(`state version ${String(s["v"])} is not ${WASI_STATE_VERSION}`);
  const preopens = array(s["preopens"], "preopens").map((p, i) => {
    const o = record(p, `preopens[${i}]`);
    return { host_path: string(o["host_path"], "host_path"), guest_path: string(o["guest_path"], "guest_path") };
  });
  const fds = array(s["fds"], "fds").map((f, i) => parse_fd(record(f, `fds[${i}]`), preopens.length));
  const numbers = new Set(fds.map((f) => f.fd));
  if (numbers.size !== fds.length) bad("two fds share a number");
  const pending = s["pending"] === null ? null : parse_pending(record(s["pending"], "pending"));
  return {
    v: WASI_STATE_VERSION,
    args: array(s["args"], "args").map((a) => string(a, "args[]")),
    env: array(s["env"], "env").map((e) => string(e, "env[]")),
    preopens,
    fds,
    monotonic_ns: u64(s["monotonic_ns"], "monotonic_ns"),
    stdin_bytes: s["stdin_bytes"] === undefined ? 0 : count(s["stdin_bytes"], "stdin_bytes"),
    stdout_bytes: count(s["stdout_bytes"], "stdout_bytes"),
    stderr_bytes: count(s["stderr_bytes"], "stderr_bytes"),
    pending,
  };
}

/** The sockets in a captured state: what a relay needs to take up each stream where the guest is. */
export function socket_positions(state: WasiState): { listeners: ListenerFdState[]; conns: ConnFdState[] } {
  const listeners: ListenerFdState[] = [];
  const conns: ConnFdState[] = [];
  for (const fd of state.fds) {
    if (fd.kind === "listener") listeners.push(fd);
    else if (fd.kind === "conn") conns.push(fd);
  }
  return { listeners, conns };
}

/** Components of a checked `rel_path`. */
export function rel_components(rel_path: string): string[] {
  return rel_path === "" ? [] : rel_path.split("/");
}

function parse_fd(o: Record<string, unknown>, preopen_count: number): FdState {
  const fd = count(o["fd"], "fd");
  if (fd >= FDS_MAX) bad(`fd ${fd} is not below ${FDS_MAX}`);
  const common = {
    fd,
    fdflags: count(o["fdflags"], "fdflags"),
    rights_base: u64(o["rights_base"], "rights_base"),
    rights_inheriting: u64(o["rights_inheriting"], "rights_inheriting"),
  };
  if (o["kind"] === "stdio") {
    const stream = o["stream"];
    if (stream !== 0 && stream !== 1 && stream !== 2) bad(`fd ${common.fd}: stream ${String(stream)}`);
    const as = o["as"] ?? "terminal";
    if (!STREAM_KINDS.includes(as as StreamKind)) bad(`fd ${common.fd}: stream kind ${String(as)}`);
    return { ...common, kind: "stdio", stream, as: as as StreamKind };
  }
  if (o["kind"] === "listener") {
    return { ...common, kind: "listener", listener: count(o["listener"], "listener"), address: string(o["address"], "address"), accepted: count(o["accepted"], "accepted") };
  }
  if (o["kind"] === "conn") {
    return {
      ...common,
      kind: "conn",
      listener: count(o["listener"], "listener"),
      seq: count(o["seq"], "seq"),
      received: count(o["received"], "received"),
      sent: count(o["sent"], "sent"),
      shut_rd: boolean(o["shut_rd"], "shut_rd"),
      shut_wr: boolean(o["shut_wr"], "shut_wr"),
    };
  }
  const preopen = count(o["preopen"], "preopen");
  if (preopen >= preopen_count) bad(`fd ${common.fd}: preopen ${preopen} does not exist`);
  const rel_path = string(o["rel_path"], "rel_path");
  if (rel_path !== "" && rel_path.split("/").some((c) => c === "" || c === "." || c === ".." || c.includes("\0"))) {
    bad(`fd ${common.fd}: rel_path ${JSON.stringify(rel_path)} is not a plain relative path`);
  }
  const location = {
    preopen,
    rel_path,
    host_path: string(o["host_path"], "host_path"),
    guest_path: string(o["guest_path"], "guest_path"),
  };
  if (o["kind"] === "dir") return { ...common, ...location, kind: "dir", is_preopen: boolean(o["is_preopen"], "is_preopen") };
  if (o["kind"] !== "file") bad(`fd ${common.fd}: kind ${String(o["kind"])}`);
  return {
    ...common,
    ...location,
    kind: "file",
    read: boolean(o["read"], "read"),
    write: boolean(o["write"], "write"),
    oflags: count(o["oflags"], "oflags"),
    offset: u64(o["offset"], "offset"),
    detached: boolean(o["detached"], "detached"),
  };
}

function parse_pending(o: Record<string, unknown>): PendingPollState {
  if (o["import"] !== "poll_oneoff") bad(`pending import ${String(o["import"])}`);
  return {
    import: "poll_oneoff",
    args: array(o["args"], "pending.args").map((a) => count(a, "pending.args[]")),
    clocks: array(o["clocks"], "pending.clocks").map((c) => {
      const r = record(c, "pending.clocks[]");
      return { index: count(r["index"], "index"), timeout_ns: u64(r["timeout_ns"], "timeout_ns"), deadline_ns: u64(r["deadline_ns"], "deadline_ns") };
    }),
  };
}

function bad(message: string): never {
  throw new RestoreError("ERR_RESTORE_STATE", `malformed WASI state: ${message}`);
}

function record(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) bad(`${what} is not an object`);
  return value as Record<string, unknown>;
}

function array(value: unknown, what: string): unknown[] {
  if (!Array.isArray(value)) bad(`${what} is not an array`);
  return value;
}

function string(value: unknown, what: string): string {
  if (typeof value !== "string") bad(`${what} is not a string`);
  return value;
}

function boolean(value: unknown, what: string): boolean {
  if (typeof value !== "boolean") bad(`${what} is not a boolean`);
  return value;
}

function count(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) bad(`${what} is not a non-negative integer`);
  return value;
}

function u64(value: unknown, what: string): string {
  if (typeof value !== "string" || !/^(0|[1-9][0-9]{0,19})$/.test(value) || BigInt(value) >= 1n << 64n) {
    bad(`${what} is not a u64 decimal string`);
  }
  return value;
}
