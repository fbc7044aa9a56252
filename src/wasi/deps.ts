/**
 * The seams of the WASI host: everything it needs from outside (stdio,
 * clocks, randomness, a way to block) is injected, never reached for
 * globally, so tests plug in fakes and the runtime plugs in the real thing.
 */

/** Where stdout or stderr bytes go. */
export interface OutputSink {
  /** Takes all of `bytes` synchronously; may keep the array. */
  write(bytes: Uint8Array): void;
}

/** Result of one non-blocking stdin read. */
export type StdinRead = Uint8Array | "eof" | "empty";

/** Where stdin bytes come from. */
export interface InputSource {
  /** Up to `max_bytes` bytes available now, "eof" at end of input, or "empty" when nothing is there yet. */
  tryRead(max_bytes: number): StdinRead;
  /** True when data or eof is available now. */
  readable(): boolean;
}

/** Host time sources, both in nanoseconds. */
export interface Clock {
  /** Host monotonic time; its epoch is arbitrary and differs between hosts. */
  monotonic_ns(): bigint;
  /** Wall-clock time since the Unix epoch. */
  realtime_ns(): bigint;
}

/** Why {@link Blocker.wait} returned. */
export type WaitResult = "timeout" | "ready" | "suspend";

/** Blocks the worker thread for a blocking import. */
export interface Blocker {
  /**
   * Blocks the calling thread until the guest-monotonic deadline passes
   * ("timeout"), stdin may have become readable ("ready", only when
   * options.stdin) or `until()` holds ("ready"), or the runtime asks the
   * process to suspend ("suspend").
   * deadline_ns undefined = no deadline. May return "ready" spuriously:
   * re-check and wait again.
   */
  wait(options: { deadline_ns?: bigint; stdin?: boolean; until?: () => boolean }): WaitResult;
}

/** One accepted connection: its listening socket's index and its arrival order there (0, 1, ...). */
export interface ConnRef {
  listener: number;
  seq: number;
}

/** What {@link NetPort.read} found. */
export type NetRead = Uint8Array | "empty" | "eof" | "reset";

/**
 * TCP as a guest sees it. The real sockets are elsewhere (a node owns the
 * listening socket and relays each connection to wherever the process
 * runs); the host keeps only the guest's side of each stream: how many bytes
 * it took in and sent out, which is what a capture records.
 */
export interface NetPort {
  /** True when connection `seq` of `listener` has arrived and can be accepted. */
  arrived(listener: number, seq: number): boolean;
  /**
   * Up to `max` bytes readable now (consumed unless `peek`); "empty" when
   * none yet; "eof" when the peer ended its side and all was read; "reset"
   * when the connection broke.
   */
  read(conn: ConnRef, max: number, peek: boolean): NetRead;
  /** Bytes the guest may send now without waiting; "reset" when the connection broke. */
  room(conn: ConnRef): number | "reset";
  /** The next outgoing bytes, starting at stream offset `offset`; at most {@link room}. */
  write(conn: ConnRef, offset: number, bytes: Uint8Array): void;
  /** The guest sends nothing after stream offset `offset` (shutdown of its write side). */
  shutdown(conn: ConnRef, offset: number): void;
  /** The guest closed the connection; its outgoing stream ends at `offset`. */
  close(conn: ConnRef, offset: number): void;
  /** The guest closed its listening socket `listener`. */
  unlisten(listener: number): void;
}

/** One host directory shown to the guest under another name. */
export interface Preopen {
  /** Directory on this host. */
  host_path: string;
  /** Name the guest sees (fd_prestat_dir_name), e.g. "/data" or ".". */
  guest_path: string;
}

/**
 * What a standard stream really is, so the guest sees its true file type and
 * rights (and `isatty()` is true only on a terminal):
 * - `terminal`: a character device with no seek rights (isatty);
 * - `file`: a regular file;
 * - `pipe`: a pipe or a socket (preview1 calls both `socket_stream`);
 * - `device`: a character device that is not a terminal, such as /dev/null.
 * Fixed when the process starts and carried in its image, so it stays the
 * same across suspensions and migrations.
 */
export type StreamKind = "terminal" | "file" | "pipe" | "device";

/** The kinds of stdin, stdout and stderr. */
export type StdioKinds = readonly [StreamKind, StreamKind, StreamKind];

/** Every {@link StreamKind}. */
export const STREAM_KINDS: readonly StreamKind[] = ["terminal", "file", "pipe", "device"];

/** What a fresh process is started with. */
export interface WasiConfig {
  /** argv, argv[0] included. */
  args: string[];
  /** Environment as "K=V" strings. */
  env: string[];
  /** Directories the guest may see, given fds 3, 4, ... in this order. */
  preopens: Preopen[];
  /**
   * Listening sockets (their addresses, for the record), given the fds after
   * the preopens in this order; connections come through {@link WasiDeps.net}.
   */
  listeners?: string[];
  /** What its standard streams are (default: three pipes). */
  stdio?: StdioKinds;
}

/** Host capabilities injected into a {@link WasiHost}. */
export interface WasiDeps {
  /** fd 0. */
  stdin: InputSource;
  /** fd 1. */
  stdout: OutputSink;
  /** fd 2. */
  stderr: OutputSink;
  /** Time sources. */
  clock: Clock;
  /** Fills `buf` with cryptographically strong random bytes. */
  random(buf: Uint8Array): void;
  /** Blocks for poll_oneoff and stdin reads. */
  blocker: Blocker;
  /** Sockets; without it the guest has none and socket calls answer `notsock`. */
  net?: NetPort;
  /** Told after every change of the fd table: the runtime keeps a list of open files for migration checks. */
  on_files_changed?: () => void;
}

/**
 * Thrown by `proc_exit` to stop the guest. Not an Error on purpose: exiting is
 * a value, which the runtime catches and turns into the process's exit status.
 */
export class ProcExit {
  constructor(
    /** The guest's exit code. */
    readonly code: number,
  ) {}
}

/**
 * Dependencies that do nothing: no input, output dropped, time standing at
 * zero. For a host that never runs a guest, built only to exercise the
 * code of the state's capture and restore (a warm worker's rehearsal,
 * `_worker.ts`; a node's, `migration/_rehearse.ts`).
 */
export function idleDeps(): WasiDeps {
  const nothing: OutputSink = { write: () => undefined };
  return {
    stdin: { tryRead: () => "eof", readable: () => true },
    stdout: nothing,
    stderr: nothing,
    clock: { monotonic_ns: () => 0n, realtime_ns: () => 0n },
    random: (buf) => buf.fill(0),
    blocker: { wait: () => "timeout" },
  };
}
