/**
 * A node's durable state kept as a snapshot and a journal, so that a change
 * costs a few hundred bytes appended and synced, not the whole table: with
 * the snapshot alone (`node.json`, rewritten whole on every change), a node
 * home to 3,000 processes wrote 1 MiB and synced it twice per start, some
 * 40 to 130 ms of its event loop each on a loaded machine (bench/state.ts).
 *
 * Files, in DATA/state/:
 * - `node.json`: the snapshot (`NodeStateFile`), naming its journal's
 *   generation G;
 * - `node.journal.G`: one JSON line per change since that snapshot, each the
 *   whole saved state of one pid (its home record or null, its running
 *   entries) and the pid counter. A line replaces what the snapshot or an
 *   earlier line said of that pid, so replaying it twice does no harm.
 *
 * Each line is appended and fdatasynced before {@link StateJournal.record}
 * returns: a change is as durable as with the whole file, in the same
 * synchronous step. {@link StateJournal.recordSoon} appends at once, in
 * order with the rest, and syncs on a thread of libuv's pool: the node's
 * thread goes on relaying and serving pages meanwhile (an fdatasync takes
 * 0.3-3 ms here, now and then far more), and the caller awaits the
 * durability where something depends on it. Once the journal outgrows the snapshot (and
 * JOURNAL_BYTES_MIN), the store writes a new snapshot naming generation G+1:
 * the empty journal G+1 is made first, then the snapshot replaced atomically
 * (durable_file.ts), then journal G removed. A crash anywhere in between
 * leaves a snapshot and the journal it names whole; a journal it does not
 * name is stale and removed at the next load.
 *
 * A last line cut short (a crash during its append, before the change was
 * acknowledged to anyone) is dropped; any other line that does not parse or
 * fails its schema is ERR_STATE_FILE, as a damaged snapshot is.
 */
import fs from "node:fs";
import path from "node:path";
import * as v from "valibot";
import { FerryError } from "../errors.js";
import { Pid } from "../process_spec.js";
import { integer, list } from "../validate.js";
import { NODE_STATE_VERSION, NodeStateFile, SavedHomeSchema, SavedRunningSchema, type NodeState, type SavedHome, type SavedRunning } from "./node_state.js";

/** A journal shorter than this is never compacted: a small table's snapshot is cheap, but compacting it after every few changes would not be. */
export const JOURNAL_BYTES_MIN = 1024 * 1024;

/** Largest journal read: compaction keeps it near the snapshot's size; more is not a journal. */
const JOURNAL_BYTES_MAX = 1024 * 1024 * 1024;

/** Running entries of one pid: normally one, two only when it left here before a restart and came back before that was settled. */
const RUNNING_PER_PID_MAX = 64;

/** One line of the journal. */
const JournalLineSchema = v.object({
  next_pid: integer(1, Number.MAX_SAFE_INTEGER),
  /** The pid whose saved state follows; absent when only the counter moved. */
  pid: v.optional(Pid),
  /** Its home record, or null: this node is not (or no longer) its home. */
  home: v.optional(v.nullable(SavedHomeSchema)),
  /** Its entries as running here (none: it does not run here). */
  running: v.optional(list(SavedRunningSchema, RUNNING_PER_PID_MAX)),
});

/** What one change saves: the counter, and the whole saved state of one pid. */
export interface StateChange {
  next_pid: number;
  pid?: { pid: string; home: SavedHome | null; running: SavedRunning[] };
}

/** The snapshot and journal of one data directory (see the module comment). */
export class StateJournal {
  readonly #node: string;
  readonly #snapshot: NodeStateFile;
  readonly #dir: string;
  #generation = 0;
  #snapshot_bytes = 0;
  #journal_bytes = 0;
  /** The open journal, appended to; -1 before the first load and once closed. */
  #fd = -1;
  /** Asynchronous syncs under way, by descriptor: a journal left behind (compaction, close) is closed only once its syncs are done. */
  readonly #syncing = new Map<number, number>();
  readonly #retired = new Set<number>();
  /** Snapshots written (compactions), for tests and the benchmark. */
  compactions = 0;

  readonly #journal_bytes_min: number;

  /** The state of `node` in `data_dir`; `journal_bytes_min` (tests) lowers the size below which no compaction happens. */
  constructor(data_dir: string, node: string, options: { journal_bytes_min?: number } = {}) {
    this.#journal_bytes_min = options.journal_bytes_min ?? JOURNAL_BYTES_MIN;
    this.#node = node;
    this.#snapshot = new NodeStateFile(data_dir);
    this.#dir = path.dirname(this.#snapshot.path);
  }

  /** The journal file of generation `g`. */
  journalPath(g: number = this.#generation): string {
    return path.join(this.#dir, `node.journal.${g}`);
  }

  /**
   * The saved state (snapshot and journal), or null in a new data directory;
   * ERR_STATE_FILE if either is damaged. Then starts a new generation from
   * it, so the journal appended to from here is empty and whole.
   */
  load(): NodeState | null {
    const snap = this.#snapshot.load(this.#node);
    const generation = snap?.journal ?? 0;
    const homes = new Map<string, SavedHome>();
    const running = new Map<string, SavedRunning[]>();
    let next_pid = snap?.next_pid ?? 1;
    for (const h of snap?.homes ?? []) homes.set(h.pid, h);
    for (const r of snap?.running ?? []) running.set(r.pid, [...(running.get(r.pid) ?? []), r]);
    const lines = this.#readJournal(generation);
    for (const line of lines) {
      next_pid = Math.max(next_pid, line.next_pid);
      if (line.pid === undefined) continue;
      if (line.home !== undefined) {
        if (line.home === null) homes.delete(line.pid);
        else homes.set(line.pid, line.home);
      }
      if (line.running !== undefined) {
        if (line.running.length === 0) running.delete(line.pid);
        else running.set(line.pid, line.running);
      }
    }
    const state: NodeState = { version: NODE_STATE_VERSION, node: this.#node, next_pid, homes: [...homes.values()], running: [...running.values()].flat() };
    this.#generation = generation;
    this.compact(state);
    // Journals no snapshot names: left by a crash during a compaction.
    for (const name of fs.readdirSync(this.#dir)) {
      const m = /^node\.journal\.(\d+)$/.exec(name);
      if (m !== null && Number(m[1]) !== this.#generation) fs.rmSync(path.join(this.#dir, name), { force: true });
    }
    return snap === null && lines.length === 0 ? null : state;
  }

  /**
   * Records one change durably (appended and synced) before returning;
   * `whole` gives the entire state when the journal is due for compaction.
   */
  record(change: StateChange, whole: () => NodeState): void {
    // Closed by a stopping node while a settle was still under way: opened again, to the end.
    if (this.#fd < 0) this.#fd = fs.openSync(this.journalPath(), "a", 0o600);
    fs.writeSync(this.#fd, this.#line(change));
    fs.fdatasyncSync(this.#fd);
    if (this.#compactionDue) this.compact(whole());
  }

  /**
   * Records one change: appended now, in order with every other, and
   * synced on libuv's thread pool. Resolves once it is durable (rejects if
   * the sync failed); `whole` as for {@link record}.
   */
  recordSoon(change: StateChange, whole: () => NodeState): Promise<void> {
    if (this.#fd < 0) this.#fd = fs.openSync(this.journalPath(), "a", 0o600);
    fs.writeSync(this.#fd, this.#line(change));
    if (this.#compactionDue) {
      // The new snapshot holds the change, durably.
      this.compact(whole());
      return Promise.resolve();
    }
    const fd = this.#fd;
    this.#syncing.set(fd, (this.#syncing.get(fd) ?? 0) + 1);
    return new Promise((resolve, reject) => {
      fs.fdatasync(fd, (err) => {
        const left = (this.#syncing.get(fd) ?? 1) - 1;
        if (left > 0) this.#syncing.set(fd, left);
        else {
          this.#syncing.delete(fd);
          if (this.#retired.delete(fd)) fs.closeSync(fd);
        }
        if (err === null) resolve();
        else reject(new FerryError("ERR_STATE_FILE", `the node's state journal could not be synced: ${err.message}`, { cause: err }));
      });
    });
  }

  /** A change's line, counted into the journal's size. */
  #line(change: StateChange): Buffer {
    const line: v.InferOutput<typeof JournalLineSchema> = { next_pid: change.next_pid };
    if (change.pid !== undefined) {
      line.pid = change.pid.pid;
      line.home = change.pid.home;
      line.running = change.pid.running;
    }
    const bytes = Buffer.from(`${JSON.stringify(line)}\n`);
    this.#journal_bytes += bytes.length;
    return bytes;
  }

  get #compactionDue(): boolean {
    return this.#journal_bytes > Math.max(this.#journal_bytes_min, this.#snapshot_bytes);
  }

  /** Closes a journal descriptor no longer appended to, once no sync is under way on it. */
  #retire(fd: number): void {
    if (this.#syncing.has(fd)) this.#retired.add(fd);
    else fs.closeSync(fd);
  }

  /** Writes `state` as the snapshot of a new generation with an empty journal (see the module comment). */
  compact(state: NodeState): void {
    const old = this.#generation;
    const next = old + 1;
    fs.mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
    const fd = fs.openSync(this.journalPath(next), "w", 0o600);
    // The new journal's name is durable before the snapshot that names it is.
    fsyncDir(this.#dir);
    const text = JSON.stringify({ ...state, journal: next });
    try {
      this.#snapshot.saveText(text);
    } catch (err: unknown) {
      fs.closeSync(fd);
      throw err;
    }
    if (this.#fd >= 0) this.#retire(this.#fd);
    this.#fd = fd;
    this.#generation = next;
    this.#snapshot_bytes = Buffer.byteLength(text);
    this.#journal_bytes = 0;
    this.compactions += 1;
    fs.rmSync(this.journalPath(old), { force: true });
  }

  /** Closes the journal (the node is stopping); what was recorded stays. */
  close(): void {
    if (this.#fd >= 0) this.#retire(this.#fd);
    this.#fd = -1;
  }

  #readJournal(generation: number): v.InferOutput<typeof JournalLineSchema>[] {
    const file = this.journalPath(generation);
    let text: string;
    try {
      const size = fs.statSync(file).size;
      if (size > JOURNAL_BYTES_MAX) throw new Error(`it is ${size} bytes, more than a journal can be`);
      text = fs.readFileSync(file, "utf8");
    } catch (err: unknown) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw this.#damaged(file, err instanceof Error ? err.message : String(err), err);
    }
    const parts = text.split("\n");
    // After the last newline: empty, or a line whose append a crash cut short (never acknowledged).
    parts.pop();
    return parts.map((part, i) => {
      let value: unknown;
      try {
        value = JSON.parse(part);
      } catch (err: unknown) {
        throw this.#damaged(file, `line ${i + 1} is not JSON`, err);
      }
      const result = v.safeParse(JournalLineSchema, value);
      if (!result.success) {
        const issue = result.issues[0];
        const where = issue === undefined ? null : v.getDotPath(issue);
        throw this.#damaged(file, `line ${i + 1} does not have the layout of a journal line${where === null ? "" : ` (at ${where}: ${issue?.message})`}`);
      }
      return result.output;
    });
  }

  #damaged(file: string, why: string, cause?: unknown): FerryError {
    return new FerryError(
      "ERR_STATE_FILE",
      `the node's state journal ${file} cannot be used: ${why}. Restore the state directory from a backup, or move it away to start this node with no processes (pids of its old processes may then be given out again)`,
      cause === undefined ? undefined : { cause },
    );
  }
}

function fsyncDir(dir: string): void {
  const d = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(d);
  } finally {
    fs.closeSync(d);
  }
}
