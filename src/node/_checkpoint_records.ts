/**
 * Where each process's last checkpoint is (docs/checkpoints.md): which node
 * keeps it, its chain and sequence, the move it was taken at, what it covers.
 * Behind one small interface, so the cluster directory can hold these records
 * later; for now the process's home keeps them, in a file of its data
 * directory beside its state.
 */
import fs from "node:fs";
import path from "node:path";
import { replaceFileDurablyAsync } from "../durable_file.js";
import * as v from "valibot";
import { FerryError } from "../errors.js";
import { NodeName, Pid } from "../process_spec.js";
import { integer, Uint } from "../validate.js";
import { errorField, logger } from "../log/mod.js";

/** The record of one stored checkpoint. */
export interface CheckpointRecord {
  pid: string;
  /** The node that keeps it (never the node the process ran on when it was taken). */
  keeper: string;
  /** Its chain on the keeper, and its number there (1: the chain's base). */
  chain: string;
  seq: number;
  /** The node that took it, and the process's move counter there. */
  runner: string;
  moves: number;
  /** Bytes sent for it, pages sent, and the pause it cost (ms). */
  bytes: number;
  pages: number;
  pause_ms: number;
  /** The interval it measured its slowdown over (ms), and the share of it the process was stopped for checkpointing (`_checkpoint_cost.ts`); absent from records of older runners. */
  interval_ms?: number;
  slowdown_ratio?: number;
  memory_bytes: number;
  /** Output it covers: the output commit releases up to these. */
  stdout_bytes: number;
  stderr_bytes: number;
  created_unix_ms: number;
}

/** Where processes' last checkpoints are. */
export interface CheckpointRecords {
  /** The last checkpoint of `pid`, if it has one. */
  last(pid: string): CheckpointRecord | undefined;
  /** Every record. */
  all(): CheckpointRecord[];
  /**
   * Records a checkpoint newer than the last ({@link isNewer}); returns the
   * record it replaces. Throws ERR_LOCATION_STALE for an older one.
   */
  put(record: CheckpointRecord): CheckpointRecord | undefined;
  /** Forgets `pid`'s record (it ended); returns it. */
  drop(pid: string): CheckpointRecord | undefined;
  /** Resolves once every change made before the call is on disk (or failed to be written, which is logged). */
  durable(): Promise<void>;
}

/**
 * Whether `next` supersedes `prev`: taken at a later move, or at the same
 * move later in the same chain, or at the same move in a new chain (a runner
 * starts a new chain only once its last one broke). A record from an earlier
 * move comes from a runner the process has left: it never wins.
 */
export function isNewer(prev: CheckpointRecord | undefined, next: CheckpointRecord): boolean {
  if (prev === undefined || next.moves > prev.moves) return true;
  if (next.moves < prev.moves) return false;
  return next.chain !== prev.chain || next.seq > prev.seq;
}

/** A checkpoint record as a peer reports it and as the file holds it. */
export const CheckpointRecordSchema = v.object({
  pid: Pid,
  keeper: NodeName,
  chain: v.pipe(v.string(), v.regex(/^[A-Za-z0-9._-]{1,64}$/, "must be a chain name")),
  seq: integer(1, Number.MAX_SAFE_INTEGER),
  runner: NodeName,
  moves: Uint,
  bytes: Uint,
  pages: Uint,
  pause_ms: v.pipe(v.number(), v.minValue(0)),
  interval_ms: v.optional(v.pipe(v.number(), v.minValue(0))),
  slowdown_ratio: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(1))),
  memory_bytes: Uint,
  stdout_bytes: Uint,
  stderr_bytes: Uint,
  created_unix_ms: Uint,
});

/** Processes a home keeps checkpoint records of at most: its process table's size is bounded far below. */
const RECORDS_MAX = 1_000_000;
const RecordsFileSchema = v.object({ version: v.literal(1), records: v.pipe(v.array(CheckpointRecordSchema), v.maxLength(RECORDS_MAX)) });

/** The home's records in `DATA/checkpoints.json`, rewritten atomically after changes (see {@link durable}). */
export class FileCheckpointRecords implements CheckpointRecords {
  readonly #file: string;
  readonly #records = new Map<string, CheckpointRecord>();
  /** Changes made, and how many of them the last finished write held. */
  #changed = 0;
  #saved = 0;
  #writing = false;
  #waiters: { change: number; resolve: () => void }[] = [];

  constructor(data_dir: string) {
    this.#file = path.join(data_dir, "checkpoints.json");
    let text: string | null = null;
    try {
      text = fs.readFileSync(this.#file, "utf8");
    } catch (err: unknown) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    if (text === null) return;
    const parsed = v.safeParse(RecordsFileSchema, safeJson(text));
    if (!parsed.success) {
      // Checkpoints are a second line of defence: a damaged record file costs the ability to restore, never the node.
      logger().error({ file: this.#file }, "the checkpoint records are damaged; starting without them (processes restart from their next checkpoint)");
      return;
    }
    for (const r of parsed.output.records) this.#records.set(r.pid, r);
  }

  last(pid: string): CheckpointRecord | undefined {
    return this.#records.get(pid);
  }

  all(): CheckpointRecord[] {
    return [...this.#records.values()];
  }

  put(record: CheckpointRecord): CheckpointRecord | undefined {
    const prev = this.#records.get(record.pid);
    if (!isNewer(prev, record)) {
      throw new FerryError("ERR_LOCATION_STALE", `${record.pid}: checkpoint ${record.chain}/${record.seq} at move ${record.moves} is older than the one recorded (${prev?.chain}/${prev?.seq} at move ${prev?.moves})`);
    }
    this.#records.set(record.pid, record);
    this.#save();
    return prev;
  }

  drop(pid: string): CheckpointRecord | undefined {
    const prev = this.#records.get(pid);
    if (prev === undefined) return undefined;
    this.#records.delete(pid);
    this.#save();
    return prev;
  }

  durable(): Promise<void> {
    if (this.#saved >= this.#changed) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ change: this.#changed, resolve }));
  }

  /**
   * Writes the records out, off the event loop: one write at a time, each of
   * every change so far, so a home recording checkpoints of many processes
   * writes the file back to back, never once per change, and a change waits
   * for at most two writes.
   */
  #save(): void {
    this.#changed += 1;
    if (!this.#writing) void this.#write();
  }

  async #write(): Promise<void> {
    this.#writing = true;
    while (this.#saved < this.#changed) {
      const change = this.#changed;
      try {
        await replaceFileDurablyAsync(this.#file, JSON.stringify({ version: 1, records: [...this.#records.values()] }));
      } catch (err: unknown) {
        // The records stay in memory: restores work until the node restarts.
        logger().error({ file: this.#file, err: errorField(err) }, "could not save the checkpoint records");
      }
      this.#saved = change;
      this.#waiters = this.#waiters.filter((w) => {
        if (w.change > change) return true;
        w.resolve();
        return false;
      });
    }
    this.#writing = false;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    // Damaged: the schema check reports it.
    return null;
  }
}

