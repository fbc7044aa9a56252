/**
 * The processes a node knows. A node is *home* to the processes started on
 * it — it keeps their output log, location and exit status for their whole
 * life — and *runs* some processes, its own or ones that migrated in.
 */
import path from "node:path";
import { FerryError } from "../errors.js";
import { GuestProcess, type ExitStatus, type ProcessIo } from "../runtime/mod.js";
import type { Preopen, StdioKinds } from "../wasi/mod.js";
import type { ModuleStore } from "./module_store.js";
import { makePid } from "./names.js";
import { OutputLog, type StreamName } from "./output_log.js";
import { LocalRelay, RemoteRelay, type OutputRelay } from "./relay.js";
import { requestJson } from "./_http.js";
import { nodeNamed, type Dialer } from "./_dialer.js";
import type { Endpoint } from "../links/mod.js";
import { NetHome } from "./net_home.js";
import { NetLink } from "./net_link.js";
import { connectNetLine } from "./_net_wire.js";

/**
 * What a process started on a node sees for its streams, on every node it
 * moves to (the kinds travel in its image): no input, as /dev/null (a device
 * at end of file), and stdout and stderr as pipes, relayed to its home's log.
 * `isatty()` is false on all three.
 */
export const CLUSTER_STDIO: StdioKinds = ["device", "pipe", "pipe"];

/** How a process ended, as the API reports it. */
export type ProcessStatus = ExitStatus;

/** What a client asks to run. */
export interface RunRequest {
  module_sha256: string;
  module_name: string;
  args: string[];
  env: string[];
  dirs: { host: string; guest: string }[];
  /** Addresses to listen on, "HOST:PORT": the home owns the sockets, the guest gets them as preopened fds. */
  listen: string[];
  /** Most bytes its memory may grow to; it travels with it, and every node it runs on checks it against its own maximum. */
  memory_max_bytes: number;
}

/** What the home node keeps of a process. */
export interface HomeRecord extends RunRequest {
  pid: string;
  home: string;
  /** Where it runs now. */
  node: string;
  state: "running" | "migrating" | "exited" | "killed" | "failed";
  exit: ProcessStatus | null;
  started_unix_ms: number;
  output: OutputLog;
  /** Its listening sockets and connections, when it listens. */
  net: NetHome | null;
  done: Promise<ProcessStatus>;
  settle: (status: ProcessStatus) => void;
}

/** What the table needs of the node's links (`_links.ts`). */
export interface TableLinks {
  /** A new endpoint for `pid` (not yet serving). */
  endpoint(pid: string): Endpoint;
  /** The endpoint serves its pid here now. */
  add(ep: Endpoint): void;
  /** The process ended here. */
  ended(pid: string): void;
  /** The guest asked to move itself to `node`. */
  selfMigrate(pid: string, node: string): void;
}

/** A process running on this node. */
export interface Running extends RunRequest {
  pid: string;
  home: string;
  proc: GuestProcess;
  relay: OutputRelay;
  /** Its end of its links. */
  links: Endpoint;
  /** Its TCP connections as this node relays them. */
  net: NetLink;
  /** Set while a migration out is under way: a second one is refused. */
  migrating: boolean;
}

/** The public view of a home record. */
export function describeProcess(r: HomeRecord): Record<string, unknown> {
  const { pid, home, node, state, module_name, module_sha256, args, exit, started_unix_ms, memory_max_bytes } = r;
  const listen = r.net?.addresses ?? [];
  return { pid, home, node, state, module_name, module_sha256, args, exit, started_unix_ms, listen, connections: r.net?.connections ?? 0, memory_max_bytes };
}

/** The table, and starting, adopting and stopping what is in it. */
export class ProcessTable {
  readonly #homes = new Map<string, HomeRecord>();
  readonly #running = new Map<string, Running>();
  readonly #node: string;
  readonly #modules: ModuleStore;
  readonly #output_dir: string;
  readonly #addressOf: (name: string) => Promise<string>;
  readonly #links: TableLinks;
  readonly #dialer: Dialer;
  #next = 1;
  /** Processes being started (instrumented, instantiated) and not in the table yet. */
  #starting = 0;

  constructor(node: string, modules: ModuleStore, data_dir: string, addressOf: (name: string) => Promise<string>, links: TableLinks, dialer: Dialer) {
    this.#node = node;
    this.#dialer = dialer;
    this.#links = links;
    this.#modules = modules;
    this.#output_dir = path.join(data_dir, "output");
    this.#addressOf = addressOf;
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

  /** How many processes run here. */
  get running_count(): number {
    return this.#running.size;
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
    const net = request.listen.length === 0 ? null : await NetHome.listen(pid, request.listen);
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
      started_unix_ms: Date.now(),
      output: new OutputLog(this.#output_dir, pid),
      net,
      done,
      settle,
    };
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
      this.#track({ ...request, pid, home: this.#node, proc, relay, links, net: links_net, migrating: false });
    } catch (err: unknown) {
      this.#homes.delete(pid);
      record.output.close();
      net?.close();
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
    };
  }

  /** The connection relay of `pid`, whose home is `home`: straight to its NetHome here, or over a channel. */
  netLink(pid: string, home: string): NetLink {
    return new NetLink(pid, async (attach) => {
      const record = this.#homes.get(pid);
      if (record !== undefined) {
        if (record.net === null) throw new FerryError("ERR_NO_SUCH_PROCESS", `${pid} does not listen`);
        const net = record.net;
        const up = net.attach(attach.hello, attach.down);
        return { ...up, flush: () => Promise.resolve(), detach: () => net.detach(up) };
      }
      return connectNetLine(this.#dialer, await this.#addressOf(home), home, { pid, ...attach });
    });
  }

  /** A relay to the home of `pid` starting at the given offsets. */
  relayFor(pid: string, home: string, offsets: Record<StreamName, number>): OutputRelay {
    const record = this.#homes.get(pid);
    if (record !== undefined) return new LocalRelay(record.output, offsets);
    return new RemoteRelay(pid, { dialer: this.#dialer, name: home, address: () => this.#addressOf(home) }, offsets);
  }

  /** Takes over a process that migrated in and now runs here. */
  adopt(running: Omit<Running, "migrating">): void {
    this.#track({ ...running, migrating: false });
  }

  /** Forgets a process that migrated out (its new node reports its exit). */
  release(pid: string): Running | undefined {
    const r = this.#running.get(pid);
    this.#running.delete(pid);
    return r;
  }

  #track(running: Running): void {
    this.#running.set(running.pid, running);
    void running.proc.exited.then(async (status) => {
      // A process that migrated out ends here as "killed": that is not its end.
      if (this.#running.get(running.pid) !== running) return;
      this.#running.delete(running.pid);
      this.#links.ended(running.pid);
      // Each step is best effort: the process has ended whatever fails here, and a
      // home that cannot be reached (the relay gave up after RELAY_GIVE_UP_MS) cannot be told.
      await running.relay.flush().catch(() => undefined);
      // What it sent on its connections reaches its home before its end does.
      await running.net.flush().catch(() => undefined);
      running.net.detach();
      await this.reportExit(running.pid, running.home, status).catch(() => undefined);
    });
  }

  /** Tells the home of `pid` how it ended (this node, or by HTTP). */
  async reportExit(pid: string, home: string, status: ProcessStatus): Promise<void> {
    const record = this.#homes.get(pid);
    if (record !== undefined) {
      this.finish(record, status);
      return;
    }
    await requestJson(this.#dialer, await this.#addressOf(home), "POST", `/v1/internal/exit/${pid}`, { body: { status }, expect: nodeNamed(home) });
  }

  /** Records the end of a process this node is home to. */
  finish(record: HomeRecord, status: ProcessStatus): void {
    if (record.exit !== null) return;
    record.exit = status;
    record.state = status.kind === "trap" || status.kind === "lost" ? "failed" : status.kind === "killed" ? "killed" : "exited";
    record.output.end();
    record.net?.close();
    record.settle(status);
  }

  /** Kills a process running here; its home learns through the usual exit path. */
  async kill(pid: string): Promise<void> {
    const r = this.#running.get(pid);
    if (r === undefined) throw new FerryError("ERR_NO_SUCH_PROCESS", `process ${pid} does not run on node ${this.#node}`);
    await r.proc.terminate();
  }

  /** Kills everything and closes the logs (the node is stopping). */
  async stop(): Promise<void> {
    const running = [...this.#running.values()];
    this.#running.clear();
    for (const r of running) await r.proc.terminate();
    for (const h of this.#homes.values()) {
      h.output.close();
      h.net?.close();
    }
  }
}
