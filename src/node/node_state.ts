/**
 * A node's durable state (DATA/state/node.json): the pid counter, the
 * records of the processes it is home to, and the processes running here.
 * It is what lets a node that restarts on the same data directory never
 * reuse a pid, keep every process's exit status, and say what became of the
 * processes that ran here when it stopped.
 *
 * The file is a snapshot, rewritten whole now and then; the changes made
 * since are appended to a journal beside it (`_state_journal.ts`). It is
 * rewritten atomically: written to a temporary file,
 * fsynced, renamed over the old one, and the directory fsynced, so a crash
 * leaves either the old state or the new one, never a mix. A file that does
 * not parse or fails its schema is ERR_STATE_FILE, never a crash and never
 * silently ignored (starting empty would reuse pids).
 */
import fs from "node:fs";
import path from "node:path";
import * as v from "valibot";
import { replaceFileDurably } from "../durable_file.js";
import { FerryError } from "../errors.js";
import { Args, Dirs, Env, Listen, MemoryCap, ModuleName, NodeName, Pid, Sha256 } from "../process_spec.js";
import { integer, list, Uint } from "../validate.js";
import { ExitStatusSchema } from "./_internal_schemas.js";
import { LabelsSchema } from "./_load_schemas.js";
import type { HomeRecord } from "./_records.js";

/**
 * Version of the state file's layout; a file of another version is refused,
 * never guessed at. 2 added the journal (`_state_journal.ts`): a version 1
 * file (no journal) is read as generation 0, while an older node refuses a
 * version 2 file rather than miss the changes in its journal.
 */
export const NODE_STATE_VERSION = 2;

/** Largest state file read: a million process records fit; more is not a state file. */
const STATE_BYTES_MAX = 1024 * 1024 * 1024;

/** Moves a process may make: far more than any will, well inside exact JSON numbers. */
const Moves = integer(0, Number.MAX_SAFE_INTEGER);

/** What the home keeps of a process (`HomeRecord` without its live parts). */
export const SavedHomeSchema = v.object({
  pid: Pid,
  home: NodeName,
  node: NodeName,
  state: v.picklist(["running", "migrating", "exited", "killed", "failed"]),
  exit: v.nullable(ExitStatusSchema),
  moves: Moves,
  previous: v.nullable(NodeName),
  started_unix_ms: Uint,
  module_sha256: Sha256,
  module_name: ModuleName,
  args: Args,
  env: Env,
  dirs: Dirs,
  listen: Listen,
  memory_max_bytes: MemoryCap,
  requires: v.optional(LabelsSchema),
  pinned: v.optional(v.boolean()),
  checkpoint_every_ms: v.optional(Uint),
});

/** A process running on this node: enough to tell its home what became of it after a crash. */
export const SavedRunningSchema = v.object({
  pid: Pid,
  home: NodeName,
  moves: Moves,
  /** Set while it is being moved there: after a crash, that node is asked whether it took it. */
  moving_to: v.optional(NodeName),
});

/** The whole file. */
export const NodeStateSchema = v.object({
  version: v.picklist([1, NODE_STATE_VERSION]),
  node: NodeName,
  /** Generation of the journal of changes made since this snapshot (`_state_journal.ts`); absent in version 1: none. */
  journal: v.optional(integer(0, Number.MAX_SAFE_INTEGER)),
  /** The number of the next pid this node gives out; never goes down. */
  next_pid: integer(1, Number.MAX_SAFE_INTEGER),
  homes: list(SavedHomeSchema, 10_000_000),
  running: list(SavedRunningSchema, 10_000_000),
});

/** A saved home record. */
export type SavedHome = v.InferOutput<typeof SavedHomeSchema>;

/** What is saved of a home record (`HomeRecord` without its live parts). */
export function savedHome(r: HomeRecord): SavedHome {
  return {
    pid: r.pid,
    home: r.home,
    node: r.node,
    state: r.state,
    exit: r.exit,
    moves: r.moves,
    previous: r.previous,
    started_unix_ms: r.started_unix_ms,
    module_sha256: r.module_sha256,
    module_name: r.module_name,
    args: r.args,
    env: r.env,
    dirs: r.dirs,
    listen: r.listen,
    memory_max_bytes: r.memory_max_bytes,
    ...(r.requires !== undefined && Object.keys(r.requires).length > 0 ? { requires: r.requires } : {}),
    ...(r.pinned === true ? { pinned: true } : {}),
    ...(r.checkpoint_every_ms !== undefined ? { checkpoint_every_ms: r.checkpoint_every_ms } : {}),
  };
}
/** A saved running entry. */
export type SavedRunning = v.InferOutput<typeof SavedRunningSchema>;
/** The state as saved. */
export type NodeState = v.InferOutput<typeof NodeStateSchema>;

/** The state file of one data directory. */
export class NodeStateFile {
  readonly path: string;

  constructor(data_dir: string) {
    this.path = path.join(data_dir, "state", "node.json");
  }

  /** The saved state, or null if there is none (a new data directory). ERR_STATE_FILE if it cannot be read or is damaged. */
  load(node: string): NodeState | null {
    let text: string;
    try {
      const size = fs.statSync(this.path).size;
      if (size > STATE_BYTES_MAX) throw new Error(`it is ${size} bytes, more than a state file can be`);
      text = fs.readFileSync(this.path, "utf8");
    } catch (err: unknown) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw this.#damaged(err instanceof Error ? err.message : String(err), err);
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err: unknown) {
      throw this.#damaged("it is not JSON (cut short or overwritten)", err);
    }
    const result = v.safeParse(NodeStateSchema, value);
    if (!result.success) {
      const issue = result.issues[0];
      const where = issue === undefined ? null : v.getDotPath(issue);
      throw this.#damaged(`it does not have the layout of version 1 or ${NODE_STATE_VERSION}${where === null ? "" : ` (at ${where}: ${issue?.message})`}`);
    }
    if (result.output.node !== node) throw this.#damaged(`it belongs to node ${result.output.node}, not ${node}: give each node its own --data`);
    return result.output;
  }

  /** Replaces the saved state atomically (see the module comment); synchronous so that nothing runs between a change and its record. */
  save(state: NodeState): void {
    this.saveText(JSON.stringify(state));
  }

  /** As {@link save}, of a state already serialized. */
  saveText(text: string): void {
    replaceFileDurably(this.path, text);
  }

  #damaged(why: string, cause?: unknown): FerryError {
    return new FerryError(
      "ERR_STATE_FILE",
      `the node's state file ${this.path} cannot be used: ${why}. Restore it from a backup, or move it away to start this node with no processes (pids of its old processes may then be given out again)`,
      cause === undefined ? undefined : { cause },
    );
  }
}

/** Version of the load module's state file; another version is refused, never guessed at. */
export const LOAD_STATE_VERSION = 1;

/** Largest load state file read: a few fields. */
const LOAD_STATE_BYTES_MAX = 64 * 1024;

/** What the load module keeps across a restart: an operator's drain outlives the daemon. */
export const LoadStateSchema = v.object({
  version: v.literal(LOAD_STATE_VERSION),
  node: NodeName,
  draining: v.boolean(),
});

/** The load module's saved state. */
export type LoadState = v.InferOutput<typeof LoadStateSchema>;

/**
 * The load module's state file of one data directory
 * (`state/load.json`), beside the process table's and written the same
 * way: a drained node that restarts comes back drained.
 */
export class LoadStateFile {
  readonly path: string;

  constructor(data_dir: string) {
    this.path = path.join(data_dir, "state", "load.json");
  }

  /** The saved state, or null if there is none. ERR_STATE_FILE if it cannot be read or is damaged. */
  load(node: string): LoadState | null {
    let text: string;
    try {
      const size = fs.statSync(this.path).size;
      if (size > LOAD_STATE_BYTES_MAX) throw new Error(`it is ${size} bytes, more than a load state file can be`);
      text = fs.readFileSync(this.path, "utf8");
    } catch (err: unknown) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw this.#damaged(err instanceof Error ? err.message : String(err), err);
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err: unknown) {
      throw this.#damaged("it is not JSON (cut short or overwritten)", err);
    }
    const result = v.safeParse(LoadStateSchema, value);
    if (!result.success) throw this.#damaged(`it does not have the layout of version ${LOAD_STATE_VERSION}`);
    if (result.output.node !== node) throw this.#damaged(`it belongs to node ${result.output.node}, not ${node}: give each node its own --data`);
    return result.output;
  }

  /** Replaces the saved state atomically and durably. */
  save(state: LoadState): void {
    replaceFileDurably(this.path, JSON.stringify(state));
  }

  #damaged(why: string, cause?: unknown): FerryError {
    return new FerryError(
      "ERR_STATE_FILE",
      `the node's load state file ${this.path} cannot be used: ${why}. Move it away to start this node undrained`,
      cause === undefined ? undefined : { cause },
    );
  }
}
