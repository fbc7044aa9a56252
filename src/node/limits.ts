/**
 * How much a node takes on: the memory one process may have, how many
 * processes run at once, how much memory incoming migrations may hold before
 * they commit, how large a module may be, and how long a silent migration
 * source is waited for, and how long a migration may make no progress. Each knob has a default here with its reason; an
 * operator sets them with `ferry node start` / `ferry up` flags.
 */
import os from "node:os";
import { FerryError } from "../errors.js";
import { HIBERNATE_AFTER_MS_DEFAULT, HIBERNATE_AFTER_MS_MAX, MODULE_BYTES_MAX, WARM_WORKERS_MAX } from "../runtime/mod.js";
import { STALL_MS_DEFAULT, STALL_MS_MAX, STANDBY_IDLE_MS_DEFAULT } from "../migration/mod.js";
import { WASM_MEMORY_BYTES_MAX, WASM_PAGE_BYTES } from "../process_spec.js";
import { CHECKPOINT_EVERY_MS_MAX, CHECKPOINT_EVERY_MS_MIN } from "./_api_schemas.js";

/** A node's limits. */
export interface NodeLimits {
  /**
   * Largest memory cap a process may have here, and the cap of a process
   * started without one. A process's guest cannot grow its memory past its
   * cap; a migration of a process whose cap is over this is refused.
   */
  memory_max_bytes: number;
  /** Processes running here at once, counting the ones migrating in. */
  processes_max: number;
  /** Bytes of memory all standbys of incoming migrations may hold together before they commit. */
  standby_bytes_max: number;
  /** Largest module accepted (uploaded, or fetched from a migration's source). */
  module_bytes_max: number;
  /** How long an incoming migration waits for its source's next frame before its standby is freed. */
  standby_idle_ms: number;
  /** How long a migration from here may make no progress before it is aborted, the process left here (`--stall-timeout`). */
  migration_stall_ms: number;
  /** Process workers kept started and idle, so a standby or a new process need not wait for one (`--warm-workers`). */
  warm_workers: number;
  /** Periodic checkpoints of a process run here without --checkpoint-every, every this many ms; 0: none (`--checkpoint-every`). */
  checkpoint_every_ms: number;
  /** A process blocked this many ms in one wait hibernates: its worker ends, its pages are kept (`--hibernate-after`); 0: never. */
  hibernate_after_ms: number;
  /** Bytes of checkpoints this node keeps for the nodes that run their processes, all chains together (`--checkpoint-disk-max`). */
  checkpoint_disk_max_bytes: number;
}

/**
 * Checkpoints a keeper holds by default, all chains together: 32 GiB. With
 * the retention policy a chain holds at most about twice its process's
 * memory plus what arrives during a compaction, so this keeps a few large
 * processes or many small ones; the keeper also leaves 1 GiB of its disk
 * free whatever this says (`KEEPER_DISK_FREE_MIN_BYTES`).
 */
export const CHECKPOINT_DISK_MAX_BYTES_DEFAULT = 32 * 1024 * 1024 * 1024;

/**
 * Warm workers by default: a few starts or arrivals at once (a burst the
 * balancer spreads, the moves that even it out) find a worker booted, and
 * replacements warm up while the node has a core to spare; each idle one
 * is a thread with the runtime loaded, about 10 MiB.
 */
export const WARM_WORKERS_DEFAULT = 4;

/**
 * Processes per node by default: each is a worker thread with its own V8
 * isolate (some 10 MiB before its guest's memory) and a share of two page
 * threads; 256 of them is a very busy machine.
 */
export const PROCESSES_MAX_DEFAULT = 256;

/** Modules by default: wasm32 code of any real program fits in far less. */
export const MODULE_BYTES_MAX_DEFAULT = MODULE_BYTES_MAX;

/** Longest standby idle time an operator may set: past it, a stalled source holds memory for too long to call it a limit. */
const STANDBY_IDLE_MS_MAX = 3_600_000;

/**
 * Half the machine's memory, whole wasm pages, and 4 GiB at most (wasm32
 * cannot address more). Half, because the node, the other processes and the
 * kernel's page cache need the rest: one process (or a burst of incoming
 * migrations) must not be able to push the machine into swap or the OOM
 * killer.
 */
export function halfTheMachine(): number {
  const half = Math.floor(os.totalmem() / 2 / WASM_PAGE_BYTES) * WASM_PAGE_BYTES;
  return Math.max(WASM_PAGE_BYTES, Math.min(WASM_MEMORY_BYTES_MAX, half));
}

/** The defaults: see each field of {@link NodeLimits} and the constants above. */
export function defaultLimits(): NodeLimits {
  const half = halfTheMachine();
  return {
    memory_max_bytes: half,
    processes_max: PROCESSES_MAX_DEFAULT,
    standby_bytes_max: half,
    module_bytes_max: MODULE_BYTES_MAX_DEFAULT,
    standby_idle_ms: STANDBY_IDLE_MS_DEFAULT,
    migration_stall_ms: STALL_MS_DEFAULT,
    warm_workers: WARM_WORKERS_DEFAULT,
    // Off unless asked for: a checkpoint costs a pause and bytes, and output commit delays output by an interval.
    checkpoint_every_ms: 0,
    hibernate_after_ms: HIBERNATE_AFTER_MS_DEFAULT,
    checkpoint_disk_max_bytes: CHECKPOINT_DISK_MAX_BYTES_DEFAULT,
  };
}

/** The defaults with what the operator set; throws ERR_USAGE for a value out of range. */
export function resolveLimits(given: Partial<NodeLimits> = {}): NodeLimits {
  const limits = { ...defaultLimits(), ...dropUndefined(given) };
  const check = (ok: boolean, what: string): void => {
    if (!ok) throw new FerryError("ERR_USAGE", what);
  };
  const whole = (n: number, min: number, max: number): boolean => Number.isSafeInteger(n) && n >= min && n <= max;
  check(whole(limits.memory_max_bytes, WASM_PAGE_BYTES, WASM_MEMORY_BYTES_MAX) && limits.memory_max_bytes % WASM_PAGE_BYTES === 0, `the memory maximum must be whole 64 KiB pages from 64 KiB to 4 GiB, not ${limits.memory_max_bytes}`);
  check(whole(limits.processes_max, 1, 1_000_000), `the process quota must be at least 1, not ${limits.processes_max}`);
  check(whole(limits.standby_bytes_max, 0, Number.MAX_SAFE_INTEGER), `the standby quota must be a number of bytes, not ${limits.standby_bytes_max}`);
  check(whole(limits.module_bytes_max, 1, Number.MAX_SAFE_INTEGER), `the module size limit must be at least 1 byte, not ${limits.module_bytes_max}`);
  check(whole(limits.standby_idle_ms, 1, STANDBY_IDLE_MS_MAX), `the standby timeout must be 1 to ${STANDBY_IDLE_MS_MAX} ms, not ${limits.standby_idle_ms}`);
  check(whole(limits.migration_stall_ms, 1, STALL_MS_MAX), `the stall timeout must be 1 to ${STALL_MS_MAX} ms, not ${limits.migration_stall_ms}`);
  check(whole(limits.warm_workers, 0, WARM_WORKERS_MAX), `warm workers must be 0 to ${WARM_WORKERS_MAX}, not ${limits.warm_workers}`);
  check(limits.checkpoint_every_ms === 0 || whole(limits.checkpoint_every_ms, CHECKPOINT_EVERY_MS_MIN, CHECKPOINT_EVERY_MS_MAX), `the checkpoint interval must be 0 or ${CHECKPOINT_EVERY_MS_MIN} to ${CHECKPOINT_EVERY_MS_MAX} ms, not ${limits.checkpoint_every_ms}`);
  check(whole(limits.hibernate_after_ms, 0, HIBERNATE_AFTER_MS_MAX), `hibernation must be after 0 (never) to ${HIBERNATE_AFTER_MS_MAX} ms, not ${limits.hibernate_after_ms}`);
  check(whole(limits.checkpoint_disk_max_bytes, 0, Number.MAX_SAFE_INTEGER), `the checkpoint disk limit must be a number of bytes, not ${limits.checkpoint_disk_max_bytes}`);
  return limits;
}

function dropUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
