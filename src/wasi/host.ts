/**
 * WasiHost: a WASI preview1 host whose whole state can be captured and
 * restored, possibly in another OS process on another machine.
 *
 * It runs inside the process's worker thread and is synchronous throughout
 * (node:fs *Sync calls, a Blocker for waits). It deliberately does not wrap
 * node:wasi, whose fd table, offsets and clocks are hidden from us.
 */

import { statSync } from "node:fs";
import { resolve as resolve_host_path } from "node:path";

import { RestoreError } from "../errors.js";
import type { Preopen, WasiConfig, WasiDeps } from "./deps.js";
import { errno_of, type ErrnoValue } from "./errno.js";
import { RIGHTS_DIR, RIGHTS_FILE, RIGHTS_SOCKET_CONN, RIGHTS_SOCKET_LISTEN } from "./_layout.js";
import { STDIO_DEFAULT, stdio_rights } from "./_stdio.js";
import { FdTable } from "./fd_table.js";
import { GuestClock, clock_res_get, clock_time_get } from "./clocks.js";
import { GuestMemory } from "./_memory.js";
import { RealRoots } from "./_path.js";
import type { HostContext } from "./_context.js";
import * as io from "./fd_io.js";
import * as meta from "./fd_meta.js";
import { fd_readdir } from "./readdir.js";
import { path_open } from "./path_open.js";
import * as paths from "./path_ops.js";
import { poll_oneoff } from "./poll.js";
import * as proc from "./process_calls.js";
import * as sockets from "./sockets.js";
import { capture_fd, restore_fd } from "./_snapshot.js";
import { grant_preopens, type RestoreGrant } from "./grant.js";
import { parse_wasi_state, WASI_STATE_VERSION, type WasiState } from "./state.js";

/** An import implementation before it is bound to a host. */
type Impl = (ctx: HostContext, ...args: never[]) => ErrnoValue;

/** Every wasi_snapshot_preview1 function, by import name. */
const IMPLS: Readonly<Record<string, Impl>> = {
  args_get: proc.args_get,
  args_sizes_get: proc.args_sizes_get,
  environ_get: proc.environ_get,
  environ_sizes_get: proc.environ_sizes_get,
  clock_res_get,
  clock_time_get,
  fd_advise: meta.fd_advise,
  fd_allocate: meta.fd_allocate,
  fd_close: meta.fd_close,
  fd_datasync: meta.fd_datasync,
  fd_fdstat_get: meta.fd_fdstat_get,
  fd_fdstat_set_flags: meta.fd_fdstat_set_flags,
  fd_fdstat_set_rights: meta.fd_fdstat_set_rights,
  fd_filestat_get: meta.fd_filestat_get,
  fd_filestat_set_size: meta.fd_filestat_set_size,
  fd_filestat_set_times: meta.fd_filestat_set_times,
  fd_pread: io.fd_pread,
  fd_prestat_get: meta.fd_prestat_get,
  fd_prestat_dir_name: meta.fd_prestat_dir_name,
  fd_pwrite: io.fd_pwrite,
  fd_read: io.fd_read,
  fd_readdir,
  fd_renumber: meta.fd_renumber,
  fd_seek: io.fd_seek,
  fd_sync: meta.fd_sync,
  fd_tell: io.fd_tell,
  fd_write: io.fd_write,
  path_create_directory: paths.path_create_directory,
  path_filestat_get: paths.path_filestat_get,
  path_filestat_set_times: paths.path_filestat_set_times,
  path_link: paths.path_link,
  path_open,
  path_readlink: paths.path_readlink,
  path_remove_directory: paths.path_remove_directory,
  path_rename: paths.path_rename,
  path_symlink: paths.path_symlink,
  path_unlink_file: paths.path_unlink_file,
  poll_oneoff,
  proc_exit: proc.proc_exit,
  proc_raise: proc.proc_raise,
  sched_yield: proc.sched_yield,
  random_get: proc.random_get,
  sock_accept: sockets.sock_accept,
  sock_recv: sockets.sock_recv,
  sock_send: sockets.sock_send,
  sock_shutdown: sockets.sock_shutdown,
};

/** A WASI preview1 host with capturable state. */
export class WasiHost {
  /**
   * Imports that may block, and so where the runtime may suspend the process.
   * When one of them sees the Blocker answer "suspend" it returns 0 having
   * done nothing visible; the runtime unwinds and later repeats the call with
   * the same arguments.
   */
  static readonly blocking_imports: ReadonlySet<string> = new Set(["poll_oneoff", "fd_read", "fd_write", "sched_yield", "sock_accept", "sock_recv", "sock_send"]);

  readonly #ctx: HostContext;

  /**
   * A fresh process: stdio at 0-2, the preopens at 3, 4, ..., then the
   * listening sockets. Throws RestoreError ERR_RESTORE_PREOPEN if a
   * preopen's host directory is missing, and TypeError for listeners
   * without a NetPort.
   */
  constructor(config: WasiConfig, deps: WasiDeps) {
    for (const s of [...config.args, ...config.env]) {
      if (s.includes("\0")) throw new TypeError(`argument or environment string contains NUL: ${JSON.stringify(s)}`);
    }
    const preopens = config.preopens.map(check_preopen);
    this.#ctx = {
      args: [...config.args],
      env: [...config.env],
      preopens,
      deps,
      mem: new GuestMemory(),
      fds: new FdTable(),
      real_roots: new RealRoots(),
      clock: new GuestClock(deps.clock),
      stdin_bytes: 0,
      stdout_bytes: 0,
      stderr_bytes: 0,
      pending_poll: null,
    };
    const kinds = config.stdio ?? STDIO_DEFAULT;
    for (const stream of [0, 1, 2] as const) {
      const as = kinds[stream];
      this.#ctx.fds.insert({ kind: "stdio", stream, as, fdflags: 0, rights_base: stdio_rights(as), rights_inheriting: 0n });
    }
    preopens.forEach((preopen, index) => {
      this.#ctx.fds.insert({
        kind: "dir",
        preopen: index,
        dir: { root: preopen.host_path, rel: [] },
        is_preopen: true,
        fdflags: 0,
        rights_base: RIGHTS_DIR,
        rights_inheriting: RIGHTS_DIR | RIGHTS_FILE,
      });
    });
    const listeners = config.listeners ?? [];
    if (listeners.length > 0 && deps.net === undefined) throw new TypeError("listening sockets need a NetPort (WasiDeps.net)");
    listeners.forEach((address, listener) => {
      this.#ctx.fds.insert({ kind: "listener", listener, address, accepted: 0, fdflags: 0, rights_base: RIGHTS_SOCKET_LISTEN, rights_inheriting: RIGHTS_SOCKET_CONN });
    });
    this.#ctx.fds.on_change = deps.on_files_changed;
    this.#ctx.fds.on_socket_closed = (entry) => sockets.socket_closed(this.#ctx, entry);
  }

  /**
   * Host paths of the files the guest has open now. A migration checks them
   * on the destination before the process stops.
   */
  open_files(): string[] {
    const files: string[] = [];
    for (const [, entry] of this.#ctx.fds.list()) if (entry.kind === "file") files.push(entry.host_path);
    return files;
  }

  /**
   * Rebuilds a host from a capture: checks the state, gives it the
   * directories `grant` names in place of the ones it recorded (matched by
   * guest path; see grant.ts), reopens every fd by path at its offset inside
   * them, continues the monotonic clock from the captured value and keeps any
   * interrupted blocking call pending. Throws RestoreError (ERR_RESTORE_STATE,
   * ERR_RESTORE_PREOPEN for a directory not granted or not there,
   * ERR_RESTORE_FILE naming a file that is missing or would lie outside its
   * directory) after closing whatever it had opened.
   */
  static restore(state: WasiState, deps: WasiDeps, grant: RestoreGrant): WasiHost {
    const s = parse_wasi_state(state);
    if (s.fds.some((f) => f.kind === "listener" || f.kind === "conn") && deps.net === undefined) {
      throw new RestoreError("ERR_RESTORE_STATE", "the process has sockets, and this runtime relays none (run it on a Ferry node)");
    }
    const preopens = grant_preopens(s.preopens, grant.preopens);
    const host = new WasiHost({ args: s.args, env: s.env, preopens }, deps);
    const ctx = host.#ctx;
    ctx.fds.close_all();
    try {
      for (const fd of s.fds) ctx.fds.place(fd.fd, restore_fd(fd, ctx.preopens, ctx.real_roots));
    } catch (error) {
      ctx.fds.close_all();
      throw error;
    }
    ctx.clock = new GuestClock(deps.clock, BigInt(s.monotonic_ns));
    ctx.stdin_bytes = s.stdin_bytes;
    ctx.stdout_bytes = s.stdout_bytes;
    ctx.stderr_bytes = s.stderr_bytes;
    ctx.pending_poll =
      s.pending === null
        ? null
        : {
            args: [...s.pending.args],
            clocks: s.pending.clocks.map((c) => ({ index: c.index, timeout_ns: BigInt(c.timeout_ns), deadline_ns: BigInt(c.deadline_ns) })),
          };
    return host;
  }

  /** Attaches the instance's memory (may be shared, may grow). Call before the guest runs. */
  bindMemory(memory: WebAssembly.Memory): void {
    this.#ctx.mem.bind(memory);
  }

  /**
   * The `wasi_snapshot_preview1` import namespace. Each function returns an
   * errno; host failures become errnos, while `ProcExit` and genuine bugs
   * propagate to the runtime.
   */
  imports(): Record<string, (...args: never[]) => unknown> {
    const ctx = this.#ctx;
    const namespace: Record<string, (...args: never[]) => unknown> = {};
    for (const [name, impl] of Object.entries(IMPLS)) {
      namespace[name] = (...args: never[]): number => {
        ctx.mem.refresh();
        try {
          return impl(ctx, ...args);
        } catch (error) {
          const errno = errno_of(error);
          if (errno === undefined) throw error;
          return errno;
        }
      };
    }
    return namespace;
  }

  /** Snapshot of everything needed to restore; plain JSON. */
  capture(): WasiState {
    const ctx = this.#ctx;
    const pending = ctx.pending_poll;
    return {
      v: WASI_STATE_VERSION,
      args: [...ctx.args],
      env: [...ctx.env],
      preopens: ctx.preopens.map((p) => ({ ...p })),
      fds: ctx.fds.list().map(([fd, entry]) => capture_fd(fd, entry, ctx.preopens)),
      monotonic_ns: ctx.clock.monotonic_ns().toString(),
      stdin_bytes: ctx.stdin_bytes,
      stdout_bytes: ctx.stdout_bytes,
      stderr_bytes: ctx.stderr_bytes,
      pending:
        pending === null
          ? null
          : {
              import: "poll_oneoff",
              args: [...pending.args],
              clocks: pending.clocks.map((c) => ({ index: c.index, timeout_ns: c.timeout_ns.toString(), deadline_ns: c.deadline_ns.toString() })),
            },
    };
  }

  /** Bytes the guest has written to stdout, over its whole life (restores included). */
  get stdout_bytes(): number {
    return this.#ctx.stdout_bytes;
  }

  /** Bytes the guest has written to stderr, over its whole life. */
  get stderr_bytes(): number {
    return this.#ctx.stderr_bytes;
  }

  /**
   * Guest monotonic now, the clock Blocker deadlines are expressed in: a
   * Blocker waits `deadline_ns - host.monotonic_ns()` nanoseconds.
   */
  monotonic_ns(): bigint {
    return this.#ctx.clock.monotonic_ns();
  }

  /** Closes every host fd; the guest's later calls see `badf`. */
  close(): void {
    this.#ctx.fds.close_all();
  }
}

/** Makes the host path absolute and checks it is a directory. */
function check_preopen(preopen: Preopen): Preopen {
  const host_path = resolve_host_path(preopen.host_path);
  let problem: string | undefined;
  let cause: unknown;
  try {
    const stat = statSync(host_path, { throwIfNoEntry: false });
    if (stat === undefined) problem = "does not exist";
    else if (!stat.isDirectory()) problem = "is not a directory";
  } catch (error) {
    problem = "cannot be read";
    cause = error;
  }
  if (problem !== undefined) {
    throw new RestoreError("ERR_RESTORE_PREOPEN", `preopen ${preopen.guest_path}: host directory ${host_path} ${problem}`, { cause });
  }
  return { host_path, guest_path: preopen.guest_path };
}
