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

/** One host directory shown to the guest under another name. */
export interface Preopen {
  /** Directory on this host. */
  host_path: string;
  /** Name the guest sees (fd_prestat_dir_name), e.g. "/data" or ".". */
  guest_path: string;
}

/** What a fresh process is started with. */
export interface WasiConfig {
  /** argv, argv[0] included. */
  args: string[];
  /** Environment as "K=V" strings. */
  env: string[];
  /** Directories the guest may see, given fds 3, 4, ... in this order. */
  preopens: Preopen[];
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
