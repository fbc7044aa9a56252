/**
 * The processes a node knows. A node is *home* to the processes started on
 * it — it keeps their output log, location and exit status for their whole
 * life — and *runs* some processes, its own or ones that migrated in.
 *
 * Both halves are durable (`node_state.ts`): a node that restarts on its data
 * directory keeps its home records, its pid counter and its output logs, and
 * settles what ran here when it stopped (`recover`).
 *
 * Where a process runs is ordered by its move counter: each move adds one,
 * the home takes a location update only as the next move from the runner it
 * has recorded (compare-and-set), and an exit report only from the runner
 * and move it has recorded.
 */
import { errorField, logger } from "../log/mod.js";
import path from "node:path";
import { FerryError } from "../errors.js";
import { GuestProcess, type ProcessIo } from "../runtime/mod.js";
import type { Preopen, StdioKinds } from "../wasi/mod.js";
import type { ModuleStore } from "./module_store.js";
import { makePid } from "./names.js";
import { OutputLog, type StreamName } from "./output_log.js";
import { LocalRelay, RemoteRelay, type OutputRelay } from "./relay.js";
import { requestJson, requestJsonFrom } from "./_http.js";
import { nodeNamed, type Dialer } from "./_dialer.js";
import { NODE_STATE_VERSION, savedHome, type NodeState, type SavedHome, type SavedRunning } from "./node_state.js";
import { StateJournal } from "./_state_journal.js";
import { retry } from "./_retry.js";
import { checkExit, checkLocation } from "./_location.js";
import { RunningAnswerSchema } from "./_internal_schemas.js";
import { parse } from "../validate.js";
import type { Endpoint } from "../links/mod.js";
import { NetHome } from "./net_home.js";
import { NetLink, type NetLaneFds } from "./net_link.js";
import fs from "node:fs";
import { nativeAddon } from "../native.js";
import { connectNetLine, openNetChannel, type NetChannel } from "./_net_wire.js";
import { recorded, REPORT_GIVE_UP_MS, type HomeRecord, type ProcessStatus, type RunRequest, type Running, type TableLinks } from "./_records.js";

/**
 * What a process started on a node sees for its streams, on every node it
 * moves to (the kinds travel in its image): no input, as /dev/null (a device
 * at end of file), and stdout and stderr as pipes, relayed to its home's log.
 * `isatty()` is false on all three.
 */
export const CLUSTER_STDIO: StdioKinds = ["device", "pipe", "pipe"];

export type { HomeRecord, ProcessStatus, RunRequest, Running, TableLinks } from "./_records.js";
export { describeProcess, REPORT_GIVE_UP_MS } from "./_records.js";

/** How often a process that ended looks whether its home is lost while its last output waits for it. */
const HOME_LOST_LOOK_MS = 500;

/** What a table tells its node as it happens: for events and metrics, never for control. */
export interface TableObserver {
  /** A process this node is home to started. */
  started?(record: HomeRecord): void;
  /** A process this node is home to ended. */
  ended?(record: HomeRecord, status: ProcessStatus): void;
  /** TCP bytes relayed for a process this node is home to. */
  relayed?(direction: "in" | "out", bytes: number): void;
  /** A process stopped running here (it ended, or moved away). */
  left?(pid: string): void;
  /** A process began running here (it started, moved in or was restored). */
  arrived?(pid: string): void;
}

/** The table, and starting, adopting and stopping what is in it. */
export class ProcessTable {
  readonly #homes = new Map<string, HomeRecord>();
  readonly #running = new Map<string, Running>();
  /**
   * The running processes with a worker (not hibernated), and those with
   * periodic checkpoints: what the node's per-slice loops look at, so an
   * idle (hibernated) process costs no work between its wakes.
   */
  readonly #awake = new Set<Running>();
  readonly #checkpointed = new Set<Running>();
  /**
   * The memory of each hibernated process as it was counted when it went
   * to sleep, and their sum: the load module counts sleepers from these
   * instead of walking thousands of them every round.
   */
  readonly #asleep = new Map<Running, number>();
  #asleep_bytes = 0;
  readonly #node: string;
  readonly #modules: ModuleStore;
  readonly #output_dir: string;
  readonly #addressOf: (name: string) => Promise<string>;
  readonly #links: TableLinks;
  readonly #dialer: Dialer;
  readonly #state: StateJournal;
  /** What ran here when the node last stopped, to be settled by {@link recover}. */
  #left_running: SavedRunning[] = [];
  /** Processes migrating in, saved as running here before they resume ({@link arriving}), until adopted. */
  readonly #arriving = new Map<string, SavedRunning>();
  /** Stops the retries of reports when the node stops. */
  readonly #stopping = new AbortController();
  #next = 1;
  /** Processes being started (instrumented, instantiated) and not in the table yet. */
  #starting = 0;
  /** Told what happens to processes here (the node's events and metrics); set by the node. */
  observer: TableObserver = {};
  /** After how many ms of one wait a process here hibernates (`--hibernate-after`); set by the node; 0: never. */
  hibernate_after_ms = 0;

  /**
   * The table of node `node`, with what its data directory holds from
   * earlier runs (ERR_STATE_FILE if that cannot be read).
   */
  /** Kills waiting for a process to start here ({@link killArriving}), by pid. */
  readonly #kill_on_arrival = new Map<string, Set<() => void>>();

  /**
   * Where an end goes when the home of the process cannot take it (declared
   * dead, and nothing takes its place): the cluster directory, set by the
   * node. Resolves to whether it took the end; the default never does.
   */
  endWithoutHome: (pid: string, home: string, moves: number, status: ProcessStatus) => Promise<boolean> = () => Promise.resolve(false);
  /**
   * Whether the home of a process running here at `moves` is declared dead
   * and nothing takes its place (set by the node, as endWithoutHome): its
   * last output then has nowhere to go, and its end is not held up for it.
   */
  homeLost: (pid: string, home: string, moves: number) => Promise<boolean> = () => Promise.resolve(false);

  /**
   * Descriptors of net lanes (`_net_lanes.ts`): with TLS and the native
   * addon only (the worker's socket is a duplicate the addon makes, and its
   * records are sealed and written there).
   */
  readonly #net_lanes: NetLaneFds | null;

  constructor(node: string, modules: ModuleStore, data_dir: string, addressOf: (name: string) => Promise<string>, links: TableLinks, dialer: Dialer, options: { net_lanes?: boolean } = {}) {
    this.#node = node;
    this.#dialer = dialer;
    const native = nativeAddon();
    const addon = "addon" in native && native.addon.dupFd !== undefined && native.addon.sealerSend !== undefined ? native.addon : null;
    this.#net_lanes =
      (options.net_lanes ?? true) && dialer.tls !== null && addon !== null ? { dup: (fd) => (addon.dupFd as (fd: number) => number)(fd), closeFd: (fd) => fs.closeSync(fd) } : null;
    this.#links = links;
    this.#modules = modules;
    this.#output_dir = path.join(data_dir, "output");
    this.#addressOf = addressOf;
    this.#state = new StateJournal(data_dir, node);
    const saved = this.#state.load();
    if (saved !== null) {
      this.#next = saved.next_pid;
      for (const h of saved.homes) this.#homes.set(h.pid, this.#restore(h));
      this.#left_running = saved.running;
      // A home record that says it runs here with nothing saved as running here: it was being started.
      const left = new Set(saved.running.map((r) => r.pid));
      for (const record of this.#homes.values()) {
        if (record.exit === null && record.node === node && !left.has(record.pid)) {
          this.finish(record, { kind: "lost", message: `node ${node} stopped while ${record.pid} was starting there` });
        }
      }
    }
  }

  /** A home record as it was saved; its log is opened where it was left. */
  #restore(h: SavedHome): HomeRecord {
    let settle!: (status: ProcessStatus) => void;
    const done = new Promise<ProcessStatus>((resolve) => {
      settle = resolve;
    });
    const record: HomeRecord = { ...h, output: new OutputLog(this.#output_dir, h.pid, { ended: h.exit !== null }), net: null, done, settle };
    // Output commit: what no stored checkpoint covers stays held after a restart too (the node then releases what its records cover).
    if (h.exit === null && (h.checkpoint_every_ms ?? 0) > 0) record.output.hold({ stdout: 0, stderr: 0 });
    if (h.exit !== null) settle(h.exit);
    return record;
  }

  /**
   * Becomes home to a process whose home died (failover, `_home_failover.ts`):
   * `h` is its record as the dead home last replicated it, and its log files
   * are already in this node's output directory.
   */
  adoptHome(h: SavedHome): HomeRecord {
    if (this.#homes.has(h.pid)) throw new FerryError("ERR_PROCESS_STATE", `node ${this.#node} is home to ${h.pid} already`);
    const record = this.#restore(h);
    this.#homes.set(h.pid, record);
    this.#save(h.pid);
    return record;
  }

  /**
   * Records durably what the table keeps of `pid` (or only the pid counter)
   * before returning (see `_state_journal.ts`); called after every change.
   */
  #save(pid?: string): void {
    this.#state.record({ next_pid: this.#next, ...(pid !== undefined ? { pid: this.#savedOf(pid) } : {}) }, () => this.#whole());
  }

  /**
   * Saves what the table holds of `pid` now, in order with every other
   * save, durable once the promise resolves: the sync runs off this
   * thread, which meanwhile relays the process's connections and serves
   * its pages (`StateJournal.recordSoon`). For the saves right after a
   * move, when both are busiest.
   */
  #saveSoon(pid: string): Promise<void> {
    return this.#state.recordSoon({ next_pid: this.#next, pid: this.#savedOf(pid) }, () => this.#whole());
  }

  /** The saved state of one pid: its home record, its running entries. */
  #savedOf(pid: string): { pid: string; home: SavedHome | null; running: SavedRunning[] } {
    const h = this.#homes.get(pid);
    const r = this.#running.get(pid);
    const arriving = this.#arriving.get(pid);
    return {
      pid,
      home: h === undefined ? null : savedHome(h),
      running: [...(r === undefined ? [] : [savedRunning(r)]), ...(arriving === undefined ? [] : [arriving]), ...this.#left_running.filter((x) => x.pid === pid)],
    };
  }

  /** The table's whole durable part, for a snapshot. */
  #whole(): NodeState {
    const running: SavedRunning[] = [
      ...[...this.#running.values()].map(savedRunning),
      ...this.#arriving.values(),
      // Not settled yet: kept until they are, so a second crash does not forget them.
      ...this.#left_running,
    ];
    return { version: NODE_STATE_VERSION, node: this.#node, next_pid: this.#next, homes: [...this.#homes.values()].map(savedHome), running };
  }

  /**
   * Settles what was running here when the node last stopped (call once it
   * listens): a process whose move had reached its destination is recorded
   * there; any other ended with this node, and its home is told it is
   * `lost`. Nothing is silently dropped. Runs in the background; a home that
   * cannot be told within REPORT_GIVE_UP_MS is warned about.
   */
  async recover(): Promise<void> {
    const left = this.#left_running;
    const restarted = new Date().toISOString();
    await Promise.all(
      left.map(async (r) => {
        try {
          if (r.moving_to !== undefined && (await this.#runsOn(r.moving_to, r.pid))) {
            await this.recordLocation(r.pid, r.home, r.moving_to, r.moves + 1);
          } else {
            const message = `node ${this.#node} stopped while ${r.pid} ran there (restarted ${restarted}); it had no checkpoint to restart from`;
            await this.reportExit(r.pid, r.home, { kind: "lost", message }, r.moves);
          }
        } catch (err: unknown) {
          logger().error({ node: this.#node, pid: r.pid, err: errorField(err) }, `could not settle ${r.pid}, which ran here before the restart`);
        }
        this.#left_running = this.#left_running.filter((x) => x !== r);
        this.#save(r.pid);
      }),
    );
  }

  async #runsOn(node: string, pid: string): Promise<boolean> {
    const { value } = await requestJsonFrom(this.#dialer, await this.#addressOf(node), "GET", `/v1/internal/running/${pid}`, { expect: nodeNamed(node) });
    return parse(RunningAnswerSchema, value, `node ${node}'s answer`, { code: "ERR_PEER_UNREACHABLE" }).running;
  }

  /** Processes this node is home to. */
  homes(): HomeRecord[] {
    return [...this.#homes.values()];
  }

  /** The home record of `pid`, if this node is its home. */
  home(pid: string): HomeRecord | undefined {
    return this.#homes.get(pid);
  }

  /** The process `pid` if it runs here. */
  running(pid: string): Running | undefined {
    return this.#running.get(pid);
  }

  /** The processes running here now. */
  runningAll(): Running[] {
    return [...this.#running.values()];
  }

  /** The processes running here that are not hibernated: those that may compute. */
  runningAwake(): Running[] {
    return [...this.#awake];
  }

  /** The hibernated processes running here: how many, and the memory they had when they went to sleep. */
  get asleep(): { count: number; memory_bytes: number } {
    return { count: this.#asleep.size, memory_bytes: this.#asleep_bytes };
  }

  /** The processes running here with periodic checkpoints. */
  runningCheckpointed(): Running[] {
    return [...this.#checkpointed];
  }

  /** How many processes run here. */
  get running_count(): number {
    return this.#running.size;
  }

  /** Memory of the processes running here, bytes. */
  guestMemoryBytes(): number {
    let bytes = 0;
    for (const r of this.#running.values()) bytes += r.proc.memory_bytes;
    return bytes;
  }

  /** Processes running here that are hibernated now, and the bytes kept for them. */
  hibernated(): { count: number; bytes: number } {
    let count = 0;
    let bytes = 0;
    for (const r of this.#running.values()) {
      if (!r.proc.hibernated) continue;
      count += 1;
      bytes += r.proc.hibernated_bytes;
    }
    return { count, bytes };
  }

  /** Memory of each process running here, bytes, by pid (the dashboard's process list). */
  runningMemoryBytes(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [pid, r] of this.#running) out.set(pid, r.proc.memory_bytes);
    return out;
  }

  /** How many processes run here or are being started here (what the process quota counts, with the standbys). */
  get busy(): number {
    return this.#running.size + this.#starting;
  }

  /**
   * Starts a process here; this node is its home. The request was admitted
   * (`_admission.ts`): `preopens` are its directories, checked against the
   * node's policy.
   */
  async start(request: RunRequest, preopens: Preopen[]): Promise<HomeRecord> {
    this.#starting += 1;
    try {
      return await this.#start(request, preopens);
    } finally {
      this.#starting -= 1;
    }
  }

  async #start(request: RunRequest, preopens: Preopen[]): Promise<HomeRecord> {
    if (!this.#modules.has(request.module_sha256)) {
      throw new FerryError("ERR_MODULE_MISSING", `module ${request.module_sha256} is not on node ${this.#node}: upload it first`);
    }
    const pid = makePid(this.#node, this.#next);
    this.#next += 1;
    // Saved before the pid is used anywhere: a crash from here on never gives it out again.
    this.#save();
    const net = request.listen.length === 0 ? null : await NetHome.listen(pid, request.listen, (direction, bytes) => this.observer.relayed?.(direction, bytes));
    let settle!: (status: ProcessStatus) => void;
    const done = new Promise<ProcessStatus>((resolve) => {
      settle = resolve;
    });
    const record: HomeRecord = {
      ...request,
      pid,
      home: this.#node,
      node: this.#node,
      state: "running",
      exit: null,
      moves: 0,
      previous: null,
      started_unix_ms: Date.now(),
      output: new OutputLog(this.#output_dir, pid),
      net,
      done,
      settle,
    };
    // Output commit (docs/checkpoints.md): readers see its output once a stored checkpoint covers it.
    if ((request.checkpoint_every_ms ?? 0) > 0) record.output.hold({ stdout: 0, stderr: 0 });
    this.#homes.set(pid, record);
    const relay = new LocalRelay(record.output, { stdout: 0, stderr: 0 });
    const links = this.#links.endpoint(pid);
    const links_net = this.netLink(pid, this.#node);
    // The guest finds its listening sockets after its preopens; it is told their numbers too.
    const listen_fds = (net?.addresses ?? []).map((_, i) => 3 + preopens.length + i);
    const env = listen_fds.length === 0 ? request.env : [...request.env.filter((e) => !e.startsWith("FERRY_LISTEN_FDS=")), `FERRY_LISTEN_FDS=${listen_fds.join(",")}`];
    try {
      const proc = await GuestProcess.start(
        {
          wasm: this.#modules.get(request.module_sha256),
          module_path: request.module_name,
          args: [request.module_name, ...request.args],
          env,
          preopens,
          listeners: net?.addresses ?? [],
          memory_max_bytes: request.memory_max_bytes,
          stdio: CLUSTER_STDIO,
        },
        this.ioFor(relay, links, links_net),
      );
      this.#links.add(links);
      links.start(this.#node, false);
      links_net.start({ listeners: (net?.addresses ?? []).map((_, listener) => ({ listener, accepted: 0 })), conns: [] });
      this.#track({ ...request, pid, home: this.#node, proc, relay, links, net: links_net, migrating: false, moves: 0 });
      this.observer.started?.(record);
    } catch (err: unknown) {
      this.#homes.delete(pid);
      record.output.close();
      net?.close();
      this.#save(pid);
      throw err;
    }
    return record;
  }

  /** I/O of a process whose output goes through `relay`, its messages through `links` and its connections through `net`. */
  ioFor(relay: OutputRelay, links: Endpoint, net: NetLink): ProcessIo {
    return {
      stdin: null,
      stdout: { kind: "callback", write: (bytes) => relay.write("stdout", bytes) },
      stderr: { kind: "callback", write: (bytes) => relay.write("stderr", bytes) },
      links: links.hooks((node) => this.#links.selfMigrate(links.pid, node)),
      net,
      hibernate_after_ms: this.hibernate_after_ms,
    };
  }

  /** The connection relay of `pid`, whose home is `home`: straight to its NetHome here, or over a channel. */
  netLink(pid: string, home: string): NetLink {
    /** A channel opened ahead (NetLink.prepare), for the first attach. */
    let prepared: Promise<NetChannel> | null = null;
    const take = (): Promise<NetChannel> | null => {
      const p = prepared;
      prepared = null;
      return p;
    };
    return new NetLink(
      pid,
      async (attach) => {
        const record = this.#homes.get(pid);
        if (record !== undefined) {
          if (record.net === null) throw new FerryError("ERR_NO_SUCH_PROCESS", `${pid} does not listen`);
          const net = record.net;
          const up = net.attach(attach.hello, attach.down);
          return { ...up, flush: () => Promise.resolve(), detach: () => net.detach(up) };
        }
        const address = await this.#addressOf(home);
        const ahead = take();
        if (ahead !== null) {
          // One opened ahead that failed or was closed meanwhile (the home waits for a HELLO only so long): a new one instead.
          const line = await ahead.then((channel) => connectNetLine(this.#dialer, address, home, { pid, ...attach }, channel)).catch((err: unknown) => {
            logger().debug({ pid, err: errorField(err) }, "a connection relay line opened ahead could not be used; opening another");
            return null;
          });
          if (line !== null) return line;
        }
        return connectNetLine(this.#dialer, address, home, { pid, ...attach });
      },
      {
        ...(this.#net_lanes === null ? {} : { lanes: this.#net_lanes }),
        prepare: {
          prepare: () => {
            if (this.#homes.has(pid) || prepared !== null) return;
            const opening = this.#addressOf(home).then((address) => openNetChannel(this.#dialer, address, home, pid));
            // Seen when it is used; one that fails here is only not used.
            opening.catch(() => undefined);
            prepared = opening;
          },
          unprepare: () => {
            // Never used: closed (the home forgets it at once).
            void take()?.then(
              (channel) => channel.socket.destroy(),
              () => undefined,
            );
          },
        },
      },
    );
  }

  /** A relay to the home of `pid` starting at the given offsets. */
  relayFor(pid: string, home: string, offsets: Record<StreamName, number>): OutputRelay {
    const record = this.#homes.get(pid);
    if (record !== undefined) return new LocalRelay(record.output, offsets);
    return new RemoteRelay(pid, { dialer: this.#dialer, name: home, address: () => this.#addressOf(home) }, offsets);
  }

  /**
   * Notes durably that `pid`, migrating in, runs here as of move `moves`,
   * before it resumes: a migration's destination writes this when it has
   * prepared the standby, before READY, so the write (and an fdatasync that
   * stalls) is no part of the downtime, and {@link adopt} has nothing left
   * to save. From here a crash
   * is settled by recover() as for any process that ran here (as when the
   * record was written after the resume: the source, told nothing, resumes
   * it, and its home turns the report of a move it never recorded away).
   * {@link arrivalFailed} takes it back.
   */
  arriving(pid: string, home: string, moves: number): void {
    this.#arriving.set(pid, { pid, home, moves });
    this.#save(pid);
  }

  /** The process {@link arriving} named did not land: it is not saved as running here any more. */
  arrivalFailed(pid: string): void {
    if (this.#arriving.delete(pid)) this.#save(pid);
  }

  /**
   * Takes over a process that migrated in and now runs here, as of move
   * `running.moves`; saved unless {@link arriving} saved it already.
   */
  adopt(running: Omit<Running, "migrating" | "runs_since_ms">): void {
    const saved = this.#arriving.get(running.pid);
    const same = saved !== undefined && saved.home === running.home && saved.moves === running.moves;
    this.#arriving.delete(running.pid);
    this.#track({ ...running, migrating: false }, !same);
  }

  /** Forgets a process that migrated out (its new node reports its exit). */
  release(pid: string): Running | undefined {
    const r = this.#running.get(pid);
    if (r === undefined) return undefined;
    this.#untrack(r);
    // Nothing waits for this one: a crash before it is durable leaves the entry, with the move it was in (moving_to), which recover() settles.
    this.#saveSoon(pid).catch((err: unknown) => logger().error({ node: this.#node, pid, err: errorField(err) }, `could not save that ${pid} left this node`));
    return r;
  }

  /** Notes (durably) that `pid`, running here, is being moved to `to`, or (undefined) no longer is. */
  moving(pid: string, to: string | undefined): void {
    const r = this.#running.get(pid);
    if (r === undefined) return;
    if (to === undefined) delete r.moving_to;
    else r.moving_to = to;
    this.#save(pid);
  }

  /** Takes `running` out of the table's running views (not saved: the caller saves). */
  #untrack(running: Running): void {
    this.#running.delete(running.pid);
    this.#awake.delete(running);
    this.#wake(running);
    this.#checkpointed.delete(running);
    running.proc.onSleep(null);
    this.observer.left?.(running.pid);
  }

  #sleep(running: Running): void {
    if (this.#asleep.has(running)) return;
    const bytes = running.proc.memory_bytes;
    this.#asleep.set(running, bytes);
    this.#asleep_bytes += bytes;
  }

  #wake(running: Running): void {
    const bytes = this.#asleep.get(running);
    if (bytes === undefined) return;
    this.#asleep.delete(running);
    this.#asleep_bytes -= bytes;
  }

  #track(tracked: Omit<Running, "runs_since_ms">, save = true): void {
    const running: Running = Object.assign(tracked, { runs_since_ms: performance.now() });
    this.#running.set(running.pid, running);
    if (!running.proc.hibernated) this.#awake.add(running);
    else this.#sleep(running);
    if ((running.checkpoint_every_ms ?? 0) > 0) this.#checkpointed.add(running);
    running.proc.onSleep((asleep) => {
      if (this.#running.get(running.pid) !== running) return;
      if (asleep) {
        this.#awake.delete(running);
        this.#sleep(running);
      } else {
        this.#awake.add(running);
        this.#wake(running);
      }
    });
    if (save) this.#save(running.pid);
    this.observer.arrived?.(running.pid);
    for (const arrived of this.#kill_on_arrival.get(running.pid) ?? []) arrived();
    void running.proc.exited.then(async (status) => {
      // A process that migrated out ends here as "killed": that is not its end.
      if (this.#running.get(running.pid) !== running) return;
      this.#untrack(running);
      this.#links.ended(running.pid);
      // Each step is best effort: the process has ended whatever fails here. Its last output reaches its
      // home before its end does, as long as the end would wait for the home (a home restarting takes it late).
      // A home declared dead that nothing takes over will not take it: the end goes to the directory without waiting for it.
      const lost = this.#untilHomeLost(running);
      await Promise.race([running.relay.flush(REPORT_GIVE_UP_MS), lost.promise])
        .catch((err: unknown) => {
          const left = running.relay.abandon();
          logger().warn({ node: this.#node, pid: running.pid, bytes: left, err: errorField(err) }, `the last output of ${running.pid} did not reach its home`);
        })
        .finally(() => lost.stop());
      // What it sent on its connections reaches its home before its end does.
      await running.net.flush().catch((err: unknown) => {
        logger().warn({ node: this.#node, pid: running.pid, err: errorField(err) }, `the last bytes ${running.pid} sent on its connections did not reach its home`);
      });
      running.net.detach();
      try {
        await this.reportExit(running.pid, running.home, status, running.moves);
      } catch (err: unknown) {
        logger().error({ node: this.#node, pid: running.pid, home: running.home, err: errorField(err) }, `the home of ${running.pid} was not told how it ended`);
      }
      // Saved only now: a crash before the home knows leaves it to recover() to say "lost".
      this.#save(running.pid);
    });
  }

  /**
   * Rejects once the home of `running` is declared dead with nothing to take
   * its place (looked at every HOME_LOST_LOOK_MS), until stopped.
   */
  #untilHomeLost(running: Running): { promise: Promise<never>; stop(): void } {
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    const promise = new Promise<never>((_resolve, reject) => {
      const look = (): void => {
        if (stopped) return;
        this.homeLost(running.pid, running.home, running.moves).then(
          (lost) => {
            if (lost) reject(new FerryError("ERR_PEER_UNREACHABLE", `its home ${running.home} is declared dead, and nothing takes its place`));
            else if (!stopped) timer = setTimeout(look, HOME_LOST_LOOK_MS);
          },
          // The directory did not answer: looked at again, as if not lost.
          () => {
            if (!stopped) timer = setTimeout(look, HOME_LOST_LOOK_MS);
          },
        );
      };
      look();
    });
    // Seen through the race it joins; this only keeps a rejection after the race from being unhandled.
    promise.catch(() => undefined);
    return {
      promise,
      stop() {
        stopped = true;
        clearTimeout(timer);
      },
    };
  }

  /**
   * Tells the home of `pid` how it ended here, at move `moves`: this node,
   * or by HTTP, retried while the home is unreachable or has not recorded
   * the move that brought it here yet.
   */
  async reportExit(pid: string, home: string, status: ProcessStatus, moves: number): Promise<void> {
    await retry(async () => {
      const record = this.#homes.get(pid);
      if (record !== undefined) {
        this.acceptExit(record, this.#node, moves, status);
        return;
      }
      if (await this.endWithoutHome(pid, home, moves, status)) return;
      await requestJson(this.#dialer, await this.#addressOf(home), "POST", `/v1/internal/exit/${pid}`, { body: { status, node: this.#node, moves }, expect: nodeNamed(home) });
    }, { give_up_ms: REPORT_GIVE_UP_MS, signal: this.#stopping.signal });
  }

  /**
   * Tells the home of `pid` that move `moves` took it to `node` (compare-and-set
   * there: see acceptLocation), retried like {@link reportExit}.
   */
  async recordLocation(pid: string, home: string, node: string, moves: number): Promise<void> {
    await retry(async () => {
      const record = this.#homes.get(pid);
      if (record !== undefined) {
        await this.acceptLocation(record, this.#node, node, moves);
        return;
      }
      await requestJson(this.#dialer, await this.#addressOf(home), "POST", `/v1/internal/location/${pid}`, { body: { node, moves }, expect: nodeNamed(home) });
    }, { give_up_ms: REPORT_GIVE_UP_MS, signal: this.#stopping.signal });
  }

  /** The home's side of an exit report from node `from` at move `moves` (`_location.ts`'s checkExit). */
  acceptExit(record: HomeRecord, from: string, moves: number, status: ProcessStatus): void {
    if (checkExit(recorded(record), from, moves, status.kind) === "apply") this.finish(record, status);
  }

  /** The home's side of a location update: move `moves` took `record` to `node`, says `from` (`_location.ts`'s checkLocation). */
  async acceptLocation(record: HomeRecord, from: string | null, node: string, moves: number): Promise<void> {
    if (checkLocation(recorded(record), from, node, moves) === "repeat") return;
    record.previous = record.node;
    record.node = node;
    record.moves = moves;
    await this.#saveSoon(record.pid);
  }

  /**
   * The home's side of a restore from a checkpoint (`_checkpoint_routes.ts`):
   * move `moves` resumed `record` on `node`, its runner being gone.
   * Compare-and-set on the move counter, as every location update.
   */
  acceptRestore(record: HomeRecord, node: string, moves: number): void {
    if (record.exit !== null) throw new FerryError("ERR_PROCESS_ENDED", `${record.pid} has ended`);
    if (moves !== record.moves + 1) throw new FerryError("ERR_LOCATION_STALE", `${record.pid}: a restore as move ${moves}, but the home has move ${record.moves}`);
    record.previous = record.node;
    record.node = node;
    record.moves = moves;
    this.#save(record.pid);
  }

  /** Records the end of a process this node is home to. */
  finish(record: HomeRecord, status: ProcessStatus): void {
    if (record.exit !== null) return;
    record.exit = status;
    record.state = status.kind === "trap" || status.kind === "lost" ? "failed" : status.kind === "killed" ? "killed" : "exited";
    this.#save(record.pid);
    record.output.end();
    record.net?.close();
    record.settle(status);
    this.observer.ended?.(record, status);
  }

  /** Kills a process running here; its home learns through the usual exit path. */
  async kill(pid: string): Promise<void> {
    const r = this.#running.get(pid);
    if (r === undefined) throw new FerryError("ERR_NO_SUCH_PROCESS", `process ${pid} does not run on node ${this.#node}`);
    await r.proc.terminate();
  }

  /**
   * Kills `pid`, which its home record says runs here: now if it does, else
   * the moment it starts here (it is arriving: a restore from a checkpoint,
   * the end of a migration), unless `ended` settles first or `within_ms`
   * passes (ERR_NO_SUCH_PROCESS then, as {@link kill}).
   */
  async killArriving(pid: string, ended: Promise<unknown>, within_ms: number): Promise<void> {
    if (this.#running.has(pid)) return this.kill(pid);
    let arrived!: () => void;
    const here = new Promise<"here">((resolve) => {
      arrived = () => resolve("here");
    });
    const waiting = this.#kill_on_arrival.get(pid) ?? new Set<() => void>();
    waiting.add(arrived);
    this.#kill_on_arrival.set(pid, waiting);
    let timer: NodeJS.Timeout | undefined;
    try {
      const late = new Promise<"late">((resolve) => {
        timer = setTimeout(() => resolve("late"), within_ms);
      });
      const outcome = await Promise.race([here, ended.then(() => "ended" as const), late]);
      if (outcome === "late") throw new FerryError("ERR_NO_SUCH_PROCESS", `process ${pid} does not run on node ${this.#node}, and did not start here within ${within_ms / 1000} s`);
      if (outcome === "here") await this.kill(pid);
    } finally {
      clearTimeout(timer);
      waiting.delete(arrived);
      if (waiting.size === 0 && this.#kill_on_arrival.get(pid) === waiting) this.#kill_on_arrival.delete(pid);
    }
  }

  /**
   * Kills everything and closes the logs (the node is stopping). What ran
   * here stays in the saved state: on the next start it is settled like
   * after a crash (recover).
   */
  async stop(): Promise<void> {
    this.#stopping.abort();
    const running = [...this.#running.values()];
    // Not through #save: what ran here must stay saved for recover().
    this.#left_running = [...this.#left_running, ...running.map(savedRunning)];
    this.#running.clear();
    for (const r of running) await r.proc.terminate();
    for (const h of this.#homes.values()) {
      h.output.close();
      h.net?.close();
    }
    this.#state.close();
  }
}

/** What is saved of a process running here. */
function savedRunning(r: Running): SavedRunning {
  return { pid: r.pid, home: r.home, moves: r.moves, ...(r.moving_to !== undefined ? { moving_to: r.moving_to } : {}) };
}
