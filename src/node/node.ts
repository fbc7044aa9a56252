/**
 * The node daemon (DESIGN.md layer 7): a process table, a module store, and
 * the control API on one HTTP address. Any node answers any request,
 * forwarding what concerns a process to the node that owns it.
 */
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import http from "node:http";
import https from "node:https";
import type net from "node:net";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { FerryError } from "../errors.js";
import { remotePagesAvailability, resolveTracker, type TrackerChoice } from "../memory/mod.js";
import { ModuleStore } from "./module_store.js";
import { checkNodeName } from "./names.js";
import { ProcessTable } from "./process_table.js";
import { requestJson, requestJsonFrom } from "./_http.js";
import { Dialer, SERVER_KEEP_ALIVE_MS } from "./_dialer.js";
import { TokenStore, type ClusterTls, type KeyPairPem } from "../trust/mod.js";
import { route } from "./_routes.js";
import { acceptData, connectLinks, migrateProcess } from "./_migrate.js";
import { acceptPageData, PostCopySessions } from "./_postcopy.js";
import { createFront, type Front } from "./_front.js";
import { PageTickets } from "./_page_tickets.js";
import { NodeLinks } from "./_links.js";
import { resolveLimits, type NodeLimits } from "./limits.js";
import { Policy, type NodePolicy } from "./policy.js";
import { StandbyLedger } from "./_standbys.js";
import { PeerInfoSchema } from "./_internal_schemas.js";
import { parse } from "../validate.js";
import type * as v from "valibot";
import type { MigrationMetrics, MigrationProgress } from "../migration/mod.js";
import { errorField, logger, type Logger } from "../log/mod.js";
import { NodeMetrics } from "./metrics.js";
import { EventHub } from "./events.js";
import { LoadModule, type LoadOptions } from "./load.js";
import { loadRound } from "./_balancer.js";
import { LEASE_TTL_MS_DEFAULT, type Directory } from "../directory/mod.js";
import { NodeDirectory } from "./cluster_directory.js";
import { rehearseMigrations } from "../migration/_rehearse.js";
import { claimWarm } from "../runtime/mod.js";
import { warmHashThreads } from "../image/mod.js";
import { NodeCheckpoints } from "./_checkpoints.js";
import { CheckpointStore } from "./_checkpoint_store.js";
import { endedWithoutHome, homeLost } from "./_home_failover.js";
import { FileCheckpointRecords, type CheckpointRecords } from "./_checkpoint_records.js";
import { checkpointsEnded } from "./_checkpoint_routes.js";
import { BulkDoors } from "./_bulk_doors.js";
import { NetLaneDoors } from "./_net_lanes.js";
import { startFailover } from "./_failover.js";
import { replicaEnded } from "./_output_replica.js";

/** What this node reads of a peer's `GET /v1/node`. */
type PeerInfo = v.InferOutput<typeof PeerInfoSchema>;

/** How a node is started. */
export interface NodeOptions {
  name: string;
  /** Where to listen; port 0 picks a free one. */
  host: string;
  port: number;
  /** Other nodes' addresses, HOST:PORT. */
  peers: string[];
  /** Where modules and output logs are kept. */
  data_dir: string;
  /** Page tracker for pre-copy (default: probe for userfaultfd, else portable). */
  tracker?: TrackerChoice;
  /**
   * This node's cluster credential: every connection, in and out, is mutual
   * TLS with the cluster CA. Null: plain HTTP and no authentication at all
   * (`--insecure`, for measurements on a machine of one's own).
   */
  tls: ClusterTls | null;
  /** The cluster CA's certificate and key, if this node may issue certificates to joiners (`ferry token create`). */
  authority?: KeyPairPem | null;
  /** What processes may be given here (`policy.ts`); default: no host directories, no ports below 1024. */
  policy?: Partial<NodePolicy>;
  /** How much the node takes on; each limit not given has the default of `limits.ts`. */
  limits?: Partial<NodeLimits>;
  /** Its cores, labels and balancer (`load.ts`); default: the machine's cores, no labels, balancer off. */
  load?: LoadOptions;
  /** Its processes open link lanes to other nodes (docs/links.md, "Lanes"; default true: with TLS and the native addon). */
  link_lanes?: boolean;
  /** Its processes running away from their homes write their TCP bytes to the home on net lanes (docs/networking.md, "Net lanes"; default true: with TLS and the native addon). */
  net_lanes?: boolean;
  /** The cluster directory to join (docs/directory.md); none: this node's home records are the only record, as before. */
  directory?: Directory | null;
  /** Its membership lease: declared dead at most this long after it stops renewing (default LEASE_TTL_MS_DEFAULT). */
  dead_after_ms?: number;
}

/** What `GET /v1/node` answers. */
export interface NodeInfo {
  name: string;
  address: string;
  peers: string[];
  processes: number;
  started_unix_ms: number;
  /** The page tracker pre-copy uses here, and why. */
  page_tracker: { name: string; note: string };
  /** Whether this node can take post-copy and hybrid migrations (userfaultfd), and if not, why. */
  post_copy: { available: boolean; reason?: string };
  /** Whether connections are mutual TLS, and the CA fingerprint (SHA-256, hex) that names the cluster. */
  security: { tls: boolean; ca_fingerprint: string | null; issues_tokens: boolean };
  /** Standbys of incoming migrations now, and the memory they hold. */
  standbys: number;
  standby_bytes: number;
  limits: NodeLimits;
  allow_dirs: string[];
  /** The operating system's id of the process this node runs in (what `kill` takes). */
  os_pid: number;
  /** Guests computing at once (`--cpus`). */
  cpus: number;
  /** `--label k=v`. */
  labels: Record<string, string>;
  /** Drained (`ferry drain`): nothing new starts or lands here. */
  draining: boolean;
  /** Whether its balancer runs. */
  balance: boolean;
}

/** A running node. */
export class FerryNode {
  readonly name: string;
  readonly modules: ModuleStore;
  readonly table: ProcessTable;
  readonly started_unix_ms = Date.now();
  readonly page_tracker: { name: "userfaultfd" | "portable"; note: string };
  /** Links of the processes here: delivery, forwarding, statistics. */
  readonly links: NodeLinks;
  /** Processes running here whose pages are still arriving (post-copy). */
  readonly postcopy = new PostCopySessions();
  /** How this node dials its peers. */
  readonly dialer: Dialer;
  /** The credential it serves and dials with (null: insecure). */
  readonly tls: ClusterTls | null;
  /** The cluster CA, if this node issues certificates to joiners. */
  readonly authority: KeyPairPem | null;
  /** Join tokens this node issued and not yet redeemed. */
  readonly tokens = new TokenStore();
  /**
   * Signs the images this node sends in migrations: its certificate's key,
   * which the destination knows as the authenticated peer's. Without TLS, a
   * key made at start (never stored) whose public half travels in the offer.
   */
  readonly image_key: KeyObject;
  /** What processes may be given here. */
  readonly policy: Policy;
  /** How much this node takes on. */
  readonly limits: NodeLimits;
  /** Memory held by incoming migrations' standbys. */
  readonly standbys: StandbyLedger;
  /** Tickets of post-copy page channels granted and not yet used (TLS only). */
  readonly page_tickets = new PageTickets();
  /** Doors of incoming stop-copies' sealed page connections (TLS only). */
  readonly bulk_doors = new BulkDoors();
  /** The doors of net lanes that runners of the processes this node is home to open (`_net_lanes.ts`). */
  readonly net_lane_doors: NetLaneDoors;
  /** Its Prometheus metrics (`GET /metrics`). */
  readonly metrics: NodeMetrics;
  /** Its events (`GET /v1/events`). */
  readonly events: EventHub;
  /** Its data directory (state, output logs, modules, checkpoints, output replicas). */
  readonly data_dir: string;
  /** Its load module: cores shared among guests, load gossip, placement, the balancer. */
  readonly load: LoadModule;
  /** The checkpoints it takes of the processes it runs (docs/checkpoints.md). */
  readonly checkpoints: NodeCheckpoints;
  /** The checkpoints it keeps for other nodes' processes. */
  readonly checkpoint_store: CheckpointStore;
  /** Where the last checkpoint of each process it is home to is. */
  readonly checkpoint_records: CheckpointRecords;
  /** Its log: the OS process's logger with this node's name on every line. */
  readonly log: Logger;
  /** Its part in the cluster directory, once joined (null without one). Failover subscribes to `cluster.onNodeDead`. */
  cluster: NodeDirectory | null = null;
  /** Resolves once the node has joined its directory (at once without one): processes start only after. */
  readonly joined: Promise<void>;
  #joined!: () => void;
  /** Gives back this node's claim on the process's warm workers (`--warm-workers`). */
  #release_warm: () => void = () => undefined;
  #stop_rehearsal: () => void = () => undefined;
  /** Whether each peer (by address) answered when last asked; events say when that changes. */
  readonly #peer_up = new Map<string, boolean>();
  #peers: string[];
  #server: http.Server;
  /** With TLS, what listens: it hands TLS connections to #server and page data to its session. */
  #front: Front | null = null;
  #address = "";
  /** Peer names learned from their answers, name → address. */
  #names = new Map<string, string>();
  /** The reverse of {@link #names}: who answered last at each address. */
  #named_at = new Map<string, string>();
  /**
   * Every connection the listener accepted and that is still open. An
   * upgraded one (page, link, data, net channels) leaves the HTTP server's
   * books, and one whose peer never closes its half would hold the listener
   * open after a stop: these are ended last, by the stop.
   */
  readonly #sockets = new Set<net.Socket>();

  private constructor(options: NodeOptions) {
    this.name = checkNodeName(options.name);
    if (options.tls !== null && (options.tls.identity.role !== "node" || options.tls.identity.name !== this.name)) {
      throw new FerryError("ERR_TLS_CONFIG", `the certificate is for ${options.tls.identity.role} ${options.tls.identity.name}, not node ${this.name}`);
    }
    this.tls = options.tls;
    this.authority = options.authority ?? null;
    this.dialer = new Dialer(options.tls);
    this.image_key = options.tls?.private_key ?? generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
    this.page_tracker = resolveTracker(options.tracker ?? "auto");
    this.policy = new Policy(this.name, options.policy);
    this.limits = resolveLimits(options.limits);
    this.standbys = new StandbyLedger(this.limits.standby_bytes_max);
    this.#peers = [...options.peers];
    this.data_dir = options.data_dir;
    this.modules = new ModuleStore(path.join(options.data_dir, "modules"));
    this.links = new NodeLinks(this, (address, name) => connectLinks(this.dialer, address, name, this.name), { lanes: options.link_lanes ?? true });
    this.table = new ProcessTable(this.name, this.modules, options.data_dir, (name) => this.addressOf(name), this.links, this.dialer, { net_lanes: options.net_lanes ?? true });
    this.net_lane_doors = new NetLaneDoors({ counted: (bytes) => this.metrics.relayedOnLane(bytes) });
    this.table.hibernate_after_ms = this.limits.hibernate_after_ms;
    this.table.endWithoutHome = (pid, home, moves, status) => endedWithoutHome(this, pid, home, moves, status);
    this.table.homeLost = (pid, home, moves) => homeLost(this, pid, home, moves);
    // A node's own OS process has its name on every line already (`ferry node start`); in-process nodes (tests) add it.
    this.log = logger().bindings()["node"] === this.name ? logger() : logger().child({ node: this.name });
    this.events = new EventHub(this.name);
    this.load = new LoadModule(this, options.load);
    this.checkpoints = new NodeCheckpoints(this);
    this.checkpoint_store = new CheckpointStore(path.join(options.data_dir, "checkpoints"), this.image_key, { bytes_max: this.limits.checkpoint_disk_max_bytes });
    this.checkpoint_records = new FileCheckpointRecords(options.data_dir);
    // Held logs reopened after a restart release what their stored checkpoints cover.
    for (const h of this.table.homes()) {
      const last = this.checkpoint_records.last(h.pid);
      if (last !== undefined) h.output.commit({ stdout: last.stdout_bytes, stderr: last.stderr_bytes });
    }
    this.metrics = new NodeMetrics(this.name, {
      homeStates: () => {
        const states: Record<string, number> = {};
        for (const h of this.table.homes()) states[h.state] = (states[h.state] ?? 0) + 1;
        return states;
      },
      running: () => this.table.running_count,
      guestMemoryBytes: () => this.table.guestMemoryBytes(),
      hibernated: () => this.table.hibernated(),
      standbys: () => ({ count: this.standbys.count, bytes: this.standbys.bytes }),
      limits: () => this.limits,
      eventSubscribers: () => this.events.subscribers,
      checkpointAges: () => {
        const now = Date.now();
        return this.checkpoint_records.all().flatMap((r) => (this.table.home(r.pid)?.exit === null ? [{ pid: r.pid, age_s: Math.max(0, now - r.created_unix_ms) / 1000 }] : []));
      },
      keptCheckpoints: () => ({ chains: this.checkpoint_store.chains, bytes: this.checkpoint_store.bytes }),
    });
    this.joined = new Promise((resolve) => {
      this.#joined = resolve;
    });
    this.table.observer = {
      started: (record) => {
        this.cluster?.started(record.pid);
        this.log.info({ pid: record.pid, module: record.module_name }, `started ${record.pid}`);
        this.events.publish({ type: "process.started", pid: record.pid, module_name: record.module_name, home: record.home });
      },
      ended: (record, status) => {
        this.log.info({ pid: record.pid, status }, `${record.pid} ended (${status.kind})`);
        this.events.publish({ type: "process.ended", pid: record.pid, home: record.home, status });
        this.cluster?.ended(record.pid, record.moves, status);
        replicaEnded(this, record.pid);
        checkpointsEnded(this, record.pid);
      },
      relayed: (direction, bytes) => this.metrics.relayed(direction, bytes),
      // Its core goes to a guest waiting for one now, not at the next slice.
      left: () => this.load.reschedule(),
      // Held at once if no core is free (not computing until the next slice), and a round decides now if work waits.
      arrived: () => this.load.reschedule(),
    };
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      void route(this, req, res);
    };
    this.#server = options.tls === null ? http.createServer(handler) : https.createServer(options.tls.serverOptions(), handler);
    // Peers keep their connections to this node between requests (the dialer's pools): held open well past their reuse.
    this.#server.keepAliveTimeout = SERVER_KEEP_ALIVE_MS;
    this.#server.on("upgrade", (req, socket, head) => acceptData(this, req, socket, head));
    if (options.tls !== null) {
      const server = this.#server;
      this.#front = createFront({
        tls: (socket) => void server.emit("connection", socket),
        pageData: (socket, ticket) => {
          // A stop-copy's sealed pages first (`_bulk_doors.ts`); any other ticket is a post-copy page channel's.
          // Then a link lane's (`_link_lanes.ts`), then a net lane's (`_net_lanes.ts`).
          if (!this.bulk_doors.accept(socket, ticket) && !this.links.acceptLane(socket, ticket) && !this.net_lane_doors.accept(socket, ticket)) {
            acceptPageData(this.postcopy, this.page_tickets, socket, ticket);
          }
        },
      });
    }
  }

  /** What listens on the node's address: the front with TLS, the HTTP server itself without. */
  get #listener(): net.Server {
    return this.#front?.server ?? this.#server;
  }

  /** Starts a node and resolves once it listens. */
  static async start(options: NodeOptions): Promise<FerryNode> {
    const node = new FerryNode(options);
    const listener = node.#listener;
    listener.on("connection", (socket: net.Socket) => {
      node.#sockets.add(socket);
      socket.once("close", () => node.#sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      listener.once("error", (err: NodeJS.ErrnoException) => {
        const where = `${options.host}:${options.port}`;
        if (err.code === "EADDRINUSE") reject(new FerryError("ERR_ADDRESS_IN_USE", `${where} is already in use: is a node running there? Pick another port`, { cause: err }));
        else reject(new FerryError("ERR_LISTEN", `cannot listen on ${where}: ${err.message}`, { cause: err }));
      });
      listener.listen(options.port, options.host, () => resolve());
    });
    // Behind the front the HTTPS server never listens itself; this starts its
    // bookkeeping of connections (header and request timeouts, closeAllConnections).
    if (listener !== node.#server) node.#server.emit("listening");
    const bound = listener.address() as AddressInfo;
    node.#address = `${options.host}:${bound.port}`;
    // The obvious way to configure a cluster lists every node in each one's --peers, this one too.
    node.#peers = node.#peers.filter((a) => a !== node.#address);
    if (options.directory !== undefined && options.directory !== null) {
      const cluster = new NodeDirectory(node, options.directory, options.dead_after_ms ?? LEASE_TTL_MS_DEFAULT);
      startFailover(node, cluster);
      try {
        await cluster.start();
      } catch (err: unknown) {
        await cluster.stop().catch((e: unknown) => node.log.debug({ err: errorField(e) }, "leaving a directory not joined failed (as expected when it is unreachable)"));
        await node.stop();
        throw err instanceof FerryError ? err : new FerryError("ERR_DIRECTORY_UNAVAILABLE", `could not join the directory: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
      node.cluster = cluster;
    }
    node.#joined();
    // What ran here before a restart is settled now that peers can reach this node (and it them).
    node.table.recover().catch((err: unknown) => {
      node.log.error({ err: errorField(err) }, "settling what ran here before the restart failed");
    });
    // A standby or a new process takes a started worker instead of waiting tens of ms for one (issue 15, setup);
    // the pool refills when this node has a core its guests do not want.
    node.#release_warm = claimWarm(node.limits.warm_workers, () => node.load.spareCore());
    // Migrations hash on these threads (src/image/_hash_pool.ts): started now, not during the first one's downtime.
    warmHashThreads();
    // And the code a move runs in its downtime is compiled and optimized a second after the start, not in the first moves.
    const rehearsal = rehearseMigrations({ key: node.image_key });
    rehearsal.done.catch((err: unknown) => node.log.warn({ err: errorField(err) }, "rehearsing a migration's encoding and decoding failed"));
    node.#stop_rehearsal = rehearsal.stop;
    node.checkpoints.start();
    node.events.publish({ type: "node.started", address: node.#address });
    node.load.start(() => loadRound(node));
    return node;
  }

  /** The address this node listens on. */
  get address(): string {
    return this.#address;
  }

  /** Peers' addresses. */
  get peers(): readonly string[] {
    return this.#peers;
  }

  /** Adds peers (e.g. `ferry up` tells each node of the others once all listen). */
  addPeers(addresses: readonly string[]): void {
    for (const a of addresses) if (a !== this.#address && !this.#peers.includes(a)) this.#peers.push(a);
  }

  /** What this node says of itself. */
  info(): NodeInfo {
    const pc = remotePagesAvailability();
    return {
      name: this.name,
      address: this.#address,
      peers: [...this.#peers],
      processes: this.table.running_count,
      started_unix_ms: this.started_unix_ms,
      page_tracker: this.page_tracker,
      post_copy: pc.available ? { available: true } : { available: false, reason: pc.reason },
      security: { tls: this.tls !== null, ca_fingerprint: this.tls?.ca_fingerprint ?? null, issues_tokens: this.authority !== null },
      standbys: this.standbys.count,
      standby_bytes: this.standbys.bytes,
      limits: this.limits,
      allow_dirs: this.policy.allow_dirs,
      os_pid: process.pid,
      cpus: this.load.scheduler.cpus,
      labels: { ...this.load.labels },
      draining: this.load.draining,
      balance: this.load.balance,
    };
  }

  /**
   * Every peer's self-description; a peer that does not answer is reported
   * down. An address that turns out to be this node's own (another spelling
   * of it in --peers) is dropped from the peers.
   */
  async peerInfos(): Promise<({ up: true } & PeerInfo | { up: false; address: string })[]> {
    const infos = await Promise.all(
      this.#peers.map(async (address) => {
        try {
          const { value, peer } = await requestJsonFrom(this.dialer, address, "GET", "/v1/node");
          const info = parse(PeerInfoSchema, value, `node ${address}'s GET /v1/node`, { code: "ERR_PEER_UNREACHABLE" });
          // With TLS a peer is named by its certificate, not by what it says.
          const name = peer?.name ?? info.name;
          if (name === this.name) return { self: address };
          this.learnName(name, address);
          this.notePeer(address, { up: true, name });
          return { up: true as const, ...info, name, address };
        } catch (err: unknown) {
          // A peer that does not answer, or answers nonsense, is down as far as this node can tell.
          this.notePeer(address, { up: false, reason: err instanceof Error ? err.message : String(err) });
          return { up: false as const, address };
        }
      }),
    );
    const selves = new Set(infos.flatMap((i) => ("self" in i ? [i.self] : [])));
    if (selves.size > 0) this.#peers = this.#peers.filter((a) => !selves.has(a));
    return infos.filter((i): i is ({ up: true } & PeerInfo) | { up: false; address: string } => !("self" in i));
  }

  /**
   * What this node learned of the peer at `address`: it answered (as `name`)
   * or did not. A change is logged and published as node.up / node.down;
   * the first answer from a peer counts as a change, the first silence too.
   */
  notePeer(address: string, seen: { up: true; name: string } | { up: false; reason: string }): void {
    if (this.#peer_up.get(address) === seen.up) return;
    this.#peer_up.set(address, seen.up);
    if (seen.up) {
      this.log.info({ peer: seen.name, address }, `node ${seen.name} at ${address} is up`);
      this.events.publish({ type: "node.up", peer: seen.name, address });
    } else {
      const name = this.#named_at.get(address) ?? null;
      this.log.warn({ peer: name, address, reason: seen.reason }, `node ${name ?? address} does not answer`);
      this.events.publish({ type: "node.down", peer: name, address, reason: seen.reason });
    }
  }

  /** Records that the node called `name` answered at `address` (with TLS, as its certificate says). */
  learnName(name: string, address: string): void {
    const before = this.#names.get(name);
    if (before === address) return;
    if (before !== undefined && this.#named_at.get(before) === name) this.#named_at.delete(before);
    this.#names.set(name, address);
    this.#named_at.set(address, name);
  }

  /** The node last seen answering at `address`, if any was. */
  nameAt(address: string): string | null {
    return this.#named_at.get(address) ?? null;
  }

  /** The address of the node called `name` (this one included). */
  async addressOf(name: string): Promise<string> {
    if (name === this.name) return this.#address;
    const known = this.#names.get(name);
    if (known !== undefined) return known;
    await this.peerInfos();
    const found = this.#names.get(name);
    if (found === undefined) throw new FerryError("ERR_NO_SUCH_NODE", `no node called ${name} in this cluster`);
    return found;
  }

  /** Tells each peer where this node answers, so nodes that joined later are known to all. */
  async announce(): Promise<void> {
    await Promise.all(
      this.#peers.map((address) =>
        requestJson(this.dialer, address, "POST", "/v1/internal/peers", { body: { address: this.#address } }).catch((err: unknown) => {
          // A peer that is down learns of this node when it asks (peerInfos) or when this node calls.
          this.log.info({ address, err: errorField(err) }, `could not tell the peer at ${address} of this node; it learns when it asks`);
        }),
      ),
    );
  }

  /** Moves a process that runs here to another node (the control API's migrate). */
  migrateOut(pid: string, body: unknown, progress?: (p: MigrationProgress) => void): Promise<{ pid: string; from: string; to: string; metrics: MigrationMetrics }> {
    return migrateProcess(this, pid, body, progress);
  }

  /** Kills this node's processes and stops listening. */
  async stop(): Promise<void> {
    this.events.publish({ type: "node.stopping" });
    this.log.info("stopping");
    this.load.stop();
    this.cluster?.pause();
    this.checkpoints.stop();
    // Nothing more lands here: a page channel waiting for its session would hold the listener open.
    this.postcopy.close();
    await this.table.stop();
    this.log.info("stopped its processes");
    await this.checkpoint_records.durable();
    // Left once its processes are stopped: the others then see it dead, and what it ran lost.
    await this.cluster?.stop();
    this.#release_warm();
    this.#release_warm = () => undefined;
    this.#stop_rehearsal();
    this.links.close();
    this.net_lane_doors.close();
    this.dialer.close();
    this.#server.closeAllConnections();
    if (this.#front !== null) {
      this.#front.dropSorting();
      // Not listening itself: closing it only stops its bookkeeping.
      this.#server.close();
    }
    const listener = this.#listener;
    // It closes once every connection to it has. What is left now serves nothing (its processes, links and
    // sessions are gone): upgraded channels, or a connection whose peer never closed its half after an answer.
    const open = this.#sockets.size;
    for (const socket of this.#sockets) socket.destroy();
    this.log.info({ connections: open }, "closing its listener");
    await new Promise<void>((resolve) => listener.close(() => resolve()));
  }
}
