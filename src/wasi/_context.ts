/**
 * The state every import implementation works on. `WasiHost` owns one; the
 * call modules (fd_io, path_ops, poll, ...) are plain functions of it, so each
 * can be read and tested on its own.
 */

import type { WasiDeps, Preopen } from "./deps.js";
import type { GuestClock } from "./clocks.js";
import type { FdTable } from "./fd_table.js";
import type { GuestMemory } from "./_memory.js";
import type { RealRoots } from "./_path.js";

/** A clock subscription's deadline, fixed the first time poll_oneoff saw it. */
export type PendingClock = {
  /** Position of the subscription in the array. */
  index: number;
  /** The relative timeout as the guest gave it, to recognise the same subscription. */
  timeout_ns: bigint;
  /** Absolute guest-monotonic deadline computed on the first call. */
  deadline_ns: bigint;
};

/**
 * A poll_oneoff that returned early because the runtime suspended the
 * process. The runtime repeats the very same call (same arguments) when it
 * resumes, possibly on another host; relative timeouts then count from the
 * first call, not from the repeat.
 */
export type PendingPoll = {
  /** The call's arguments (in_ptr, out_ptr, nsubscriptions, nevents_ptr). */
  args: readonly number[];
  /** Saved deadlines of the relative clock subscriptions. */
  clocks: PendingClock[];
};

/** Mutable state shared by all imports of one {@link WasiHost}. */
export type HostContext = {
  /** argv as given. */
  readonly args: readonly string[];
  /** Environment as "K=V" strings. */
  readonly env: readonly string[];
  /** Preopens, host paths made absolute. */
  readonly preopens: readonly Preopen[];
  /** Injected capabilities. */
  readonly deps: WasiDeps;
  /** Guest memory. */
  readonly mem: GuestMemory;
  /** Open fds. */
  readonly fds: FdTable;
  /** The preopen roots' real paths, kept from their first use (`_path.ts`). */
  readonly real_roots: RealRoots;
  /** Guest clocks (replaced on restore). */
  clock: GuestClock;
  /** Bytes the guest has read from stdin so far. */
  stdin_bytes: number;
  /** Bytes written to stdout so far. */
  stdout_bytes: number;
  /** Bytes written to stderr so far. */
  stderr_bytes: number;
  /** A suspended poll_oneoff to continue, if any. */
  pending_poll: PendingPoll | null;
};
