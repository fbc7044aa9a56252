/**
 * A node's part in the cluster directory (docs/directory.md): it holds its
 * membership lease, writes the records of what it does (a process started
 * here, moved from here, ended at its home here), and acts when a member is
 * declared dead. The home stays the authority on a process's output and end;
 * the directory is what lets the rest of the cluster know where each process
 * is and what became of it when a node dies.
 *
 * When node X is declared dead, each process recorded as running on X is
 * settled by one node: its home if alive, else the first alive member by
 * name (so one node writes, and the compare-and-set makes a second writer
 * harmless). A process with no checkpoint — or any, while nothing subscribes
 * to {@link NodeDirectory.onNodeDead} — is marked `lost` with the reason, in
 * the directory and at its home: `ps` and `wait` report it, never silently
 * dropped. Then every `onNodeDead` subscriber is told (failover's hook: it
 * restarts the processes that have a checkpoint).
 */
import { errorField, type Logger } from "../log/mod.js";
import { FerryError } from "../errors.js";
import { Membership, REASON_CHARS_MAX, type CasResult, type CheckpointRef, type Directory, type MemberChange, type ProcessRecord } from "../directory/mod.js";
import type { EventHub } from "./events.js";
import type { ProcessTable, ProcessStatus } from "./process_table.js";
import { retry } from "./_retry.js";

/**
 * How long a move's record is tried before the source hears it is not
 * recorded yet: as long as the home is tried (REPORT_GIVE_UP_MS), room for
 * an etcd leader election or a `ferry up` restart.
 */
export const MOVE_RECORD_GIVE_UP_MS = 60_000;

/** What became of a move's record in the directory ({@link NodeDirectory.moved}). */
export type MoveRecord =
  | { kind: "recorded" }
  /** The directory holds a later move of the process (a takeover, say) or its end, or still lacks the record this move follows once the time is up: this move will not be recorded. */
  | { kind: "refused"; reason: "stale" | "ended" | "invalid" | "missing"; current: ProcessRecord | null }
  /** Not recorded in the time given: the directory did not answer. */
  | { kind: "unrecorded"; detail: string };

/** What `onNodeDead` subscribers are told. */
export interface NodeDeadEvent {
  /** The node declared dead, and where it answered. */
  name: string;
  address: string;
  reason: string;
  /** Processes recorded as running there when it was declared dead that have a checkpoint (state `running` still). */
  checkpointed: ProcessRecord[];
  /** Pids this node marked `lost` (it was responsible for them and they had no checkpoint). */
  lost: string[];
  /** Processes whose home was the dead node and that run on a live one, with a checkpoint (failover moves their home). */
  orphaned: ProcessRecord[];
  /** When this node heard of the death (performance.now() ms): failover reports how long it took from there. */
  heard_at_ms: number;
}

/** A subscriber to deaths; its failure is logged, never stops the others. */
export type NodeDeadListener = (event: NodeDeadEvent) => void | Promise<void>;

/** How many times a record write is tried while the directory is unavailable (each after WRITE_RETRY_MS). */
const WRITE_ATTEMPTS_MAX = 20;
/** Pause between tries of a record write. */
const WRITE_RETRY_MS = 250;

/** What the node gives its directory part. */
export interface NodeDirectoryHost {
  name: string;
  address: string;
  /** What of the process table it reads and ends: the records of the processes this node is home to. */
  table: Pick<ProcessTable, "homes" | "home" | "finish">;
  events: EventHub;
  log: Logger;
  /** A member's address, learned from the directory, becomes a peer. */
  addPeers(addresses: readonly string[]): void;
}

/** A node's use of the directory. */
export class NodeDirectory {
  readonly directory: Directory;
  readonly membership: Membership;
  /**
   * Subscribers told when a member is declared dead, after this node marked
   * what it was responsible for `lost` (failover subscribes here).
   */
  readonly onNodeDead = new Set<NodeDeadListener>();
  readonly #host: NodeDirectoryHost;
  /** Per pid, the last write this node queued: writes of one pid go out in order. */
  readonly #writes = new Map<string, Promise<void>>();
  #stopping = false;

  constructor(host: NodeDirectoryHost, directory: Directory, ttl_ms: number) {
    this.#host = host;
    this.directory = directory;
    this.membership = new Membership(directory, { name: host.name, address: host.address, ttl_ms, log: host.log });
    this.membership.onMember((change) => this.#memberChanged(change));
    this.membership.onProcess((record) => this.#processChanged(record));
  }

  /** Joins: takes the lease, then brings the records of the processes this node is home to up to date. */
  async start(): Promise<void> {
    await this.membership.start();
    await this.#reconcile();
  }

  /** Stops acting on changes (a stopping node must not settle others' processes while it kills its own); the lease is kept until {@link stop}. */
  pause(): void {
    this.#stopping = true;
  }

  /** Leaves: revokes the lease (the others see this node dead at once) and closes the directory. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await this.membership.stop(true);
    await Promise.allSettled([...this.#writes.values()]);
    await this.directory.close();
  }

  /** Whether this node is leaving the directory (or has left). */
  get stopping(): boolean {
    return this.#stopping;
  }

  /** Whether the directory says node `name` is dead (unknown names are not). */
  isDead(name: string): boolean {
    return this.membership.member(name)?.state === "dead";
  }

  /** Records a process started here (its home), in the background. */
  started(pid: string): void {
    this.#queue(pid, `record ${pid}`, async () => {
      try {
        await this.directory.createProcess({ pid, home: this.#host.name });
      } catch (err: unknown) {
        // A retry of a create whose answer was lost finds the record there: that is success.
        if (!(err instanceof FerryError && err.code === "ERR_DIRECTORY_CONFLICT")) throw err;
      }
    });
  }

  /**
   * Records that move `moves` took `pid` from this node to `to`
   * (compare-and-set on the counter: move `moves - 1` must be the one
   * recorded). Awaited before the source terminates its copy. Tried again
   * while the directory does not answer, and while the record it follows is
   * not there yet (the home's create, or the previous move's record, still
   * on its way), for `give_up_ms` at most ({@link MOVE_RECORD_GIVE_UP_MS});
   * refused at once when the directory holds a later move or the end, and
   * when the record it follows has not come by then (the directory answers:
   * no outage to wait out). Not recorded: the directory did not answer.
   */
  moved(pid: string, to: string, moves: number, options: { give_up_ms?: number } = {}): Promise<MoveRecord> {
    let outcome: MoveRecord = { kind: "unrecorded", detail: "the node is stopping" };
    const written = this.#queue(pid, `record the move of ${pid} to ${to}`, async () => {
      outcome = await this.#recordMove(pid, to, moves, options.give_up_ms ?? MOVE_RECORD_GIVE_UP_MS);
    });
    return written.then(() => outcome);
  }

  async #recordMove(pid: string, to: string, moves: number, give_up_ms: number): Promise<MoveRecord> {
    const again = (err: unknown): boolean => !this.#stopping && err instanceof FerryError && (err.code === "ERR_DIRECTORY_UNAVAILABLE" || err.code === "ERR_LOCATION_PENDING");
    // The directory's last answer: a record it follows that never came is a refusal once the time is up, not an outage.
    let last: Extract<CasResult, { ok: false }> | null = null;
    try {
      return await retry(
        async (): Promise<MoveRecord> => {
          last = null;
          const result = await this.directory.updateProcess(pid, moves - 1, { runner: to, moves });
          // Taken now, or by an earlier try whose answer was lost.
          if (result.ok || (result.current?.moves === moves && result.current.runner === to)) return { kind: "recorded" };
          const current = result.current;
          if (result.reason === "missing" || (result.reason === "stale" && current !== null && current.moves < moves - 1)) {
            last = result;
            throw new FerryError("ERR_LOCATION_PENDING", `the directory has ${current === null ? "no record" : `move ${current.moves}`} of ${pid} yet; move ${moves} follows move ${moves - 1}`);
          }
          return { kind: "refused", reason: result.reason, current };
        },
        { give_up_ms, retryable: again },
      );
    } catch (err: unknown) {
      const answered = last as Extract<CasResult, { ok: false }> | null;
      if (answered !== null && !this.#stopping) return { kind: "refused", reason: answered.reason, current: answered.current };
      return { kind: "unrecorded", detail: err instanceof Error ? err.message : String(err) };
    }
  }

  /** Records that `pid`'s last checkpoint, taken at move `moves`, is `ref` (failover reads it); resolves once written (or given up). */
  checkpointed(pid: string, moves: number, ref: CheckpointRef): Promise<void> {
    return this.#queue(pid, `record the checkpoint of ${pid}`, async () => {
      const result = await this.directory.updateProcess(pid, moves, { last_checkpoint: ref });
      if (!result.ok && result.reason !== "ended") {
        this.#host.log.warn({ pid, moves, reason: result.reason, recorded: result.current }, `the directory did not take checkpoint ${ref.seq} of ${pid} (${result.reason})`);
      }
    });
  }

  /** Resolves once the writes of `pid` queued so far are done (or given up): `run` answers only after the new record is in. */
  written(pid: string): Promise<void> {
    return this.#writes.get(pid) ?? Promise.resolve();
  }

  /** Records the end of a process this node is home to, at move `moves`, in the background. */
  ended(pid: string, moves: number, status: ProcessStatus): void {
    const change = endChange(status);
    this.#queue(pid, `record the end of ${pid}`, async () => {
      const result = await this.directory.updateProcess(pid, moves, change);
      if (!result.ok && result.reason !== "ended") {
        this.#host.log.warn({ pid, moves, reason: result.reason, recorded: result.current }, `the directory did not take the end of ${pid} (${result.reason})`);
      }
    });
  }

  /** Waits until the directory records `pid` as ended; resolves to its record. */
  waitEnded(pid: string, signal: AbortSignal): Promise<ProcessRecord | null> {
    return this.waitRecord(pid, (r) => r.state !== "running", signal);
  }

  /**
   * Waits until the directory's record of `pid` is one `done` accepts;
   * resolves to it, or to null if there is none or `signal` aborts first
   * (the caller tells which by the signal).
   */
  async waitRecord(pid: string, done: (r: ProcessRecord) => boolean, signal: AbortSignal): Promise<ProcessRecord | null> {
    let found!: (r: ProcessRecord) => void;
    const seen = new Promise<ProcessRecord>((resolve) => {
      found = resolve;
    });
    // Listening before the first read: a change between the two is not missed.
    const off = this.membership.onProcess((r) => {
      if (r.pid === pid && done(r)) found(r);
    });
    try {
      const now = await this.directory.process(pid);
      if (now === null || done(now) || signal.aborted) return signal.aborted ? null : now;
      const aborted = new Promise<null>((resolve) => signal.addEventListener("abort", () => resolve(null), { once: true }));
      return await Promise.race([seen, aborted]);
    } finally {
      off();
    }
  }

  #memberChanged(change: MemberChange): void {
    const { member } = change;
    if (member.name === this.#host.name) return;
    if (member.state === "alive") {
      // A node listening on every interface advertises 0.0.0.0 or [::]: no one else can dial that.
      if (!/^(0\.0\.0\.0|\[::\]):/.test(member.address)) this.#host.addPeers([member.address]);
      this.#host.log.info({ peer: member.name, address: member.address }, `the directory says node ${member.name} is alive`);
      this.#host.events.publish({ type: "node.alive", peer: member.name, address: member.address });
      return;
    }
    if (change.was !== "alive") return;
    const reason = change.reason ?? `node ${member.name}'s lease ended`;
    this.#host.log.warn({ peer: member.name, address: member.address, reason }, `node ${member.name} declared dead: ${reason}`);
    this.#host.events.publish({ type: "node.dead", peer: member.name, address: member.address, reason });
    if (this.#stopping) return;
    const heard_at_ms = performance.now();
    this.#settleDead(member.name, member.address, reason, heard_at_ms).catch((err: unknown) => {
      this.#host.log.error({ peer: member.name, err: errorField(err) }, `could not settle the processes of node ${member.name}, declared dead`);
    });
  }

  /** Marks what ran on dead node `name` and had no checkpoint `lost` (see the module comment), then tells the subscribers. */
  async #settleDead(name: string, address: string, why: string, heard_at_ms: number): Promise<void> {
    const failover = this.onNodeDead.size > 0;
    // Both reads at once: failover waits for them, and each is a round trip to the directory.
    const [ran, homed] = await Promise.all([this.directory.processes({ runner: name }), failover ? this.directory.processes({ home: name }) : Promise.resolve([])]);
    const running = ran.filter((r) => r.state === "running");
    if (this.membership.member(name)?.state === "alive") {
      // It is back already (a restart faster than its lease): it settles what ran there itself (ProcessTable.recover),
      // and records listed now may be its new processes.
      this.#host.log.info({ peer: name }, `node ${name} is alive again; it settles what ran there before itself`);
      return;
    }
    const checkpointed = failover ? running.filter((r) => r.last_checkpoint !== null) : [];
    const orphaned = homed.filter((r) => r.state === "running" && r.runner !== name && r.last_checkpoint !== null);
    const lost: string[] = [];
    const alive = this.membership
      .members()
      .filter((m) => m.state === "alive" && m.name !== name)
      .map((m) => m.name)
      .sort();
    for (const record of running) {
      if (checkpointed.includes(record)) continue;
      const responsible = alive.includes(record.home) ? record.home : alive[0];
      if (responsible !== this.#host.name) continue;
      const reason = `node ${name} was declared dead (${why}) while ${record.pid} ran there; ${failover ? "it had no checkpoint to restart from" : "there is no failover here to restart it"}`.slice(0, REASON_CHARS_MAX);
      const result = await this.directory.updateProcess(record.pid, record.moves, { state: "lost", reason });
      if (result.ok) lost.push(record.pid);
      this.#finishLocally(result.ok ? result.record : result.current);
    }
    // A process this node is home to that the directory never heard of (written while it was unavailable): lost too.
    for (const home of this.#host.table.homes()) {
      if (home.exit !== null || home.node !== name || running.some((r) => r.pid === home.pid)) continue;
      // Recorded elsewhere in the directory (it moved on, and the home has not heard yet): not this node's to settle.
      if ((await this.directory.process(home.pid)) === null) {
        this.#host.table.finish(home, { kind: "lost", message: `node ${name} was declared dead (${why}) while ${home.pid} ran there` });
        lost.push(home.pid);
      }
    }
    if (lost.length > 0) this.#host.log.warn({ peer: name, lost }, `marked ${lost.length} process(es) of node ${name} lost`);
    for (const listener of this.onNodeDead) {
      try {
        await listener({ name, address, reason: why, checkpointed, lost, orphaned, heard_at_ms });
      } catch (err: unknown) {
        this.#host.log.error({ peer: name, err: errorField(err) }, "an onNodeDead subscriber failed");
      }
    }
  }

  #processChanged(record: ProcessRecord): void {
    if (!this.#stopping) this.#finishLocally(record);
  }

  /** A record of a process this node is home to that the directory says has ended: the home record ends too (once). */
  #finishLocally(record: ProcessRecord | null): void {
    if (record === null || record.home !== this.#host.name || record.state === "running") return;
    const home = this.#host.table.home(record.pid);
    if (home === undefined || home.exit !== null) return;
    // Only a loss is taken from the directory: every other end reaches the home from the runner, with its output before it.
    if (record.state !== "lost") return;
    this.#host.table.finish(home, { kind: "lost", message: record.reason ?? `the directory records ${record.pid} as lost` });
  }

  /** After joining: a record for each live process this node is home to, and the losses decided while it was away. */
  async #reconcile(): Promise<void> {
    for (const home of this.#host.table.homes()) {
      if (home.exit !== null) continue;
      const record = await this.directory.process(home.pid);
      if (record === null) this.started(home.pid);
      else this.#finishLocally(record);
    }
  }

  /** Runs `write` after the writes of `pid` queued before it, retried while the directory is unavailable. */
  #queue(pid: string, what: string, write: () => Promise<void>): Promise<void> {
    const attempt = async (): Promise<void> => {
      for (let i = 1; ; i += 1) {
        try {
          await write();
          return;
        } catch (err: unknown) {
          const retriable = err instanceof FerryError && err.code === "ERR_DIRECTORY_UNAVAILABLE";
          if (!retriable || i >= WRITE_ATTEMPTS_MAX || this.#stopping) {
            this.#host.log.warn({ pid, err: errorField(err) }, `could not ${what} in the directory`);
            return;
          }
          await new Promise((r) => setTimeout(r, WRITE_RETRY_MS));
        }
      }
    };
    const next = (this.#writes.get(pid) ?? Promise.resolve()).then(attempt);
    this.#writes.set(pid, next);
    void next.then(() => {
      if (this.#writes.get(pid) === next) this.#writes.delete(pid);
    });
    return next;
  }
}

/** How a process the directory records looks in `ps` and `GET /v1/processes/PID` when its home cannot answer for it. */
export function describeRecord(r: ProcessRecord): Record<string, unknown> {
  return {
    pid: r.pid,
    home: r.home,
    node: r.runner,
    state: r.state === "lost" ? "failed" : r.state,
    exit: statusOfRecord(r),
    moves: r.moves,
    last_checkpoint: r.last_checkpoint,
    // What the home alone knows (program, arguments, sockets) is not in the directory.
    module_name: null,
    args: [],
    listen: [],
    from_directory: true,
  };
}

/** How a process ended, as the directory records it (null while it runs). */
/** The directory's change for an end with `status`. */
export function endChange(status: ProcessStatus): { state: "exited"; exit_code: number } | { state: "killed" } | { state: "lost" | "failed"; reason: string } {
  if (status.kind === "exit") return { state: "exited", exit_code: status.code };
  if (status.kind === "killed") return { state: "killed" };
  return { state: status.kind === "lost" ? "lost" : "failed", reason: status.message.slice(0, REASON_CHARS_MAX) };
}

export function statusOfRecord(r: ProcessRecord): ProcessStatus | null {
  switch (r.state) {
    case "running":
      return null;
    case "exited":
      return { kind: "exit", code: r.exit_code ?? 0 };
    case "killed":
      return { kind: "killed" };
    case "failed":
      return { kind: "trap", message: r.reason ?? "it failed" };
    case "lost":
      return { kind: "lost", message: r.reason ?? "it was lost" };
  }
}

