/**
 * The cluster directory's interface (DESIGN.md layer 9, docs/directory.md):
 * what the cluster records of each process (home, runner, state, move
 * counter, last checkpoint) and of each node (membership held by a lease).
 * Every backend — in memory, embedded in `ferry up`, etcd — implements
 * {@link Directory} and passes the same conformance cases (`_conformance.ts`).
 */
import * as v from "valibot";
import { HostPort, NodeName, Pid } from "../process_spec.js";
import { integer, text, Uint } from "../validate.js";

/** Moves a process may make: far more than any will, well inside exact JSON numbers. */
const Moves = integer(0, Number.MAX_SAFE_INTEGER);

/** An exit code as WASI's proc_exit gives it (any 32-bit value). */
const ExitCode = integer(-0x8000_0000, 0xffff_ffff);

/** Longest reason kept with a record or a member: a sentence or two, never a log. */
export const REASON_CHARS_MAX = 2000;

/** Shortest lease: below it a heartbeat (every third of the lease) would be a busy loop. */
export const LEASE_TTL_MS_MIN = 300;
/** Longest lease: a dead node goes unnoticed at most this long. */
export const LEASE_TTL_MS_MAX = 10 * 60_000;
/** The default lease, so a node that stops renewing is declared dead within 3 s (issue 11). */
export const LEASE_TTL_MS_DEFAULT = 3000;

/**
 * Where a process's last checkpoint is: opaque to the directory, written by
 * the checkpoint code and read by failover. `moves` is the move counter when
 * it was captured: a checkpoint from before a move is not the process any more.
 */
export const CheckpointRefSchema = v.object({ node: NodeName, seq: Uint, moves: Moves });
/** A checkpoint reference. */
export type CheckpointRef = v.InferOutput<typeof CheckpointRefSchema>;

/** States of a process record; every one but `running` is final. */
export const PROCESS_STATES = ["running", "exited", "killed", "failed", "lost"] as const;
/** A process record's state. */
export type ProcessState = (typeof PROCESS_STATES)[number];

/** What the directory records of one process. */
export const ProcessRecordSchema = v.object({
  pid: Pid,
  /** Where it was started: it keeps the output log and exit status. */
  home: NodeName,
  /** Where it runs (or last ran). */
  runner: NodeName,
  state: v.picklist(PROCESS_STATES),
  /** Moves made; every change is compare-and-set on it. */
  moves: Moves,
  last_checkpoint: v.nullable(CheckpointRefSchema),
  /** Why it ended, for `lost` and `failed` (null otherwise). */
  reason: v.nullable(text(REASON_CHARS_MAX)),
  /** Its exit code, once `exited`. */
  exit_code: v.nullable(ExitCode),
  updated_unix_ms: Uint,
});
/** A process record. */
export type ProcessRecord = v.InferOutput<typeof ProcessRecordSchema>;

/** A new process record: it runs at its home, no moves, no checkpoint. */
export const NewProcessSchema = v.object({ pid: Pid, home: NodeName });
/** What {@link Directory.createProcess} takes. */
export type NewProcess = v.InferOutput<typeof NewProcessSchema>;

/** A change to a process record; fields not given stay as they are. */
export const ProcessChangeSchema = v.object({
  /** A new home: failover moved the home's roles (output log, exit status) to a live node. */
  home: v.optional(NodeName),
  runner: v.optional(NodeName),
  state: v.optional(v.picklist(PROCESS_STATES)),
  /** The next move (expected + 1) or unchanged; never back, never a jump. */
  moves: v.optional(Moves),
  last_checkpoint: v.optional(v.nullable(CheckpointRefSchema)),
  reason: v.optional(v.nullable(text(REASON_CHARS_MAX))),
  exit_code: v.optional(v.nullable(ExitCode)),
});
/** A change. */
export type ProcessChange = v.InferOutput<typeof ProcessChangeSchema>;

/** What a compare-and-set answers: the record as changed, or why not with the record as it is (null: none). */
export type CasResult = { ok: true; record: ProcessRecord } | { ok: false; reason: "stale" | "ended" | "missing" | "invalid"; current: ProcessRecord | null };

/** States of a member. */
export type MemberState = "alive" | "dead";

/** A node as the directory knows it. */
export const MemberSchema = v.object({
  name: NodeName,
  address: HostPort,
  state: v.picklist(["alive", "dead"]),
  /** Its lease: it is declared dead at most this long after its last renewal. */
  ttl_ms: integer(LEASE_TTL_MS_MIN, LEASE_TTL_MS_MAX),
});
/** A member. */
export type Member = v.InferOutput<typeof MemberSchema>;

/** A lease granted to a node: it stays alive while it renews it within `ttl_ms`. */
export interface Lease {
  /** The backend's id of the lease (decimal string). */
  id: string;
  ttl_ms: number;
}

/** A change seen by a watcher. */
export type DirectoryChange =
  | { kind: "member"; member: Member; reason: string | null }
  | { kind: "process"; record: ProcessRecord };

/** Who may be told of changes; called in the order they happened, per key. */
export type DirectoryWatcher = (change: DirectoryChange) => void;

/** Which processes {@link Directory.processes} lists. */
export interface ProcessFilter {
  runner?: string;
  home?: string;
}

/**
 * The cluster directory. Process records change only by compare-and-set on
 * their move counter ({@link Directory.updateProcess}), so a stale update
 * never wins; an ended record never changes again. Membership is held by
 * leases: a node that stops renewing its lease is declared dead when the
 * lease runs out, never before.
 */
export interface Directory {
  /** Which backend, for `ferry nodes` and logs. */
  readonly kind: "memory" | "embedded" | "remote" | "etcd";
  /** Records a new process, running at its home; ERR_DIRECTORY_CONFLICT if its pid has a record. */
  createProcess(p: NewProcess): Promise<ProcessRecord>;
  /** The record of `pid`, or null. */
  process(pid: string): Promise<ProcessRecord | null>;
  /** The records that match `filter` (all without one). */
  processes(filter?: ProcessFilter): Promise<ProcessRecord[]>;
  /**
   * Applies `change` to the record of `pid` if its move counter is
   * `expect_moves` and it has not ended (compare-and-set). `change.moves`,
   * if given, is `expect_moves` or `expect_moves + 1`.
   */
  updateProcess(pid: string, expect_moves: number, change: ProcessChange): Promise<CasResult>;
  /**
   * Makes `member` alive under a new lease of `ttl_ms` (backends may round it
   * up: see the lease answered). A lease the same name held before is
   * revoked first: its watchers see that incarnation die, then this one live.
   */
  grantLease(member: { name: string; address: string }, ttl_ms: number): Promise<Lease>;
  /** Renews a lease; ERR_LEASE_EXPIRED if it has run out or was revoked (the node is dead: it takes a new one). */
  keepAlive(lease_id: string): Promise<void>;
  /** Ends a lease now: its member is dead at once (a node leaving). Unknown leases are ignored. */
  revokeLease(lease_id: string): Promise<void>;
  /** Every node that ever held a lease, alive or dead. */
  members(): Promise<Member[]>;
  /** Calls `watcher` with every change from now on; resolves once it is watching, to the function that stops it. */
  watch(watcher: DirectoryWatcher): Promise<() => void>;
  /** Stops watching and releases connections (leases are left to run out). */
  close(): Promise<void>;
}

/** Whether a state is final. */
export function isEnded(state: ProcessState): boolean {
  return state !== "running";
}

/**
 * The rules of a compare-and-set, shared by every backend: `change` applied
 * to `current` if it expects `expect_moves`, else why not. Pure, so each
 * backend only has to make the read and the write one atomic step.
 */
export function applyChange(current: ProcessRecord | null, expect_moves: number, change: ProcessChange, now_unix_ms: number): CasResult {
  if (current === null) return { ok: false, reason: "missing", current };
  if (current.moves !== expect_moves) return { ok: false, reason: "stale", current };
  if (isEnded(current.state)) return { ok: false, reason: "ended", current };
  if (change.moves !== undefined && change.moves !== expect_moves && change.moves !== expect_moves + 1) return { ok: false, reason: "invalid", current };
  const record: ProcessRecord = { ...current, updated_unix_ms: now_unix_ms };
  if (change.home !== undefined) record.home = change.home;
  if (change.runner !== undefined) record.runner = change.runner;
  if (change.state !== undefined) record.state = change.state;
  if (change.moves !== undefined) record.moves = change.moves;
  if (change.last_checkpoint !== undefined) record.last_checkpoint = change.last_checkpoint;
  if (change.reason !== undefined) record.reason = change.reason;
  if (change.exit_code !== undefined) record.exit_code = change.exit_code;
  return { ok: true, record };
}

/** A new record as {@link Directory.createProcess} makes it. */
export function newRecord(p: NewProcess, now_unix_ms: number): ProcessRecord {
  return { pid: p.pid, home: p.home, runner: p.home, state: "running", moves: 0, last_checkpoint: null, reason: null, exit_code: null, updated_unix_ms: now_unix_ms };
}

/** Whether `record` matches `filter`. */
export function matches(record: ProcessRecord, filter: ProcessFilter | undefined): boolean {
  return (filter?.runner === undefined || record.runner === filter.runner) && (filter?.home === undefined || record.home === filter.home);
}
