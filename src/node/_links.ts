/**
 * Links on a node (issue 5; docs/links.md): the endpoints of the processes
 * running here, delivery to other nodes, and the forwarding entries left by
 * processes that moved away.
 *
 * A message for pid P goes to the node P was last seen on, else to P's home
 * (the pid names it), which knows where P runs. A node that P left forwards
 * to where P went, and its answer names the node that took the messages, so
 * the sender goes there directly next time. Forwarding entries expire once
 * unused for FORWARD_TTL_MS.
 */
import { FerryError } from "../errors.js";
import { Endpoint, type Batch, type DeliverAnswer, type PairStats } from "../links/mod.js";
import { MESSAGE_BYTES_MAX } from "../runtime/mod.js";
import { Errno } from "../wasi/mod.js";
import type { FerryNode } from "./node.js";
import { pidHome } from "./names.js";
import { movedHome } from "./_home_failover.js";
import type { FramedConnection } from "../transport/mod.js";
import { LinkChannels } from "./_link_channel.js";
import { BatchSchema } from "./_internal_schemas.js";
import { NODE_NAME_PATTERN } from "../process_spec.js";
import { parse } from "../validate.js";
import fs from "node:fs";
import type net from "node:net";
import * as v from "valibot";
import { errorField, logger } from "../log/mod.js";
import { nativeAddon } from "../native.js";
import type { GuestProcess } from "../runtime/mod.js";
import { nodeNamed } from "./_dialer.js";
import { requestJson } from "./_http.js";
import { dialLane, LaneDoors, SenderLane } from "./_link_lanes.js";

/** Messages from one process to another before their messages go on a lane (a pair that talks, not one that said hello). */
export const LANE_AFTER_MESSAGES = 32;
/** Lanes a node's processes hold open at most (a socket and a descriptor each). */
export const LANES_MAX = 256;

/** A lane's grant, as the receiving node answers it (untrusted input). */
const LaneGrantSchema = v.object({
  ticket: v.pipe(v.string(), v.maxLength(64)),
  to_receiver: v.pipe(v.string(), v.maxLength(64)),
  to_sender: v.pipe(v.string(), v.maxLength(64)),
});

/** A forwarding entry unused this long is dropped. */
export const FORWARD_TTL_MS = 60_000;
/** How long `ferry send` keeps trying to deliver. */
const CLIENT_SEND_TIMEOUT_MS = 10_000;
/** Stats of ended processes kept for the API. */
const ENDED_STATS_KEPT = 1024;

/** One pair's traffic, as the API reports it. */
export interface PairReport extends PairStats {
  from: string;
  to: string;
  messages_per_s: number;
  bytes_per_s: number;
}

/** A batch from the network (untrusted) as links take it: checked against its schema, then decoded. */
export function parseBatch(body: unknown): Batch {
  const b = parse(BatchSchema, body, "delivery");
  const messages = b.messages.map((m, i) => {
    const data = Buffer.from(m.data, "base64");
    // Base64's length bounds the bytes only to within two: the exact check is on the bytes.
    if (data.length > MESSAGE_BYTES_MAX) throw new FerryError("ERR_BAD_REQUEST", `delivery: messages.${i}.data: a message is at most ${MESSAGE_BYTES_MAX} bytes`);
    return { seq: m.seq, data };
  });
  return { from: b.from, messages };
}

/** The node's links. */
export class NodeLinks {
  readonly #node: FerryNode;
  readonly #endpoints = new Map<string, Endpoint>();
  readonly #forward = new Map<string, { node: string; used: number }>();
  /** Where a pid was last seen taking messages (a sender-side cache). */
  readonly #seen = new Map<string, string>();
  readonly #ended_stats = new Map<string, Map<string, PairStats>>();
  readonly #channels: LinkChannels;
  #client = 0;
  /** Per sender pid running here: its lane to the node of the pid it talks to most lately (docs/links.md, "Lanes"). */
  readonly #lanes = new Map<string, SenderLane>();
  readonly #lanes_opening = new Set<string>();
  readonly #lane_doors = new LaneDoors();
  /** Lanes are opened (nodes with TLS and the native addon, unless turned off). */
  readonly #lanes_on: boolean;
  readonly #dup: ((fd: number) => number) | null;
  #closed = false;
  /** Deliveries taken by their receivers on lanes closed since the node started (`inspect`). */
  #lane_taken_closed = 0;

  constructor(node: FerryNode, open: (address: string, name: string) => Promise<FramedConnection>, options: { lanes?: boolean } = {}) {
    this.#node = node;
    // Lanes need the addon: the worker's socket is a duplicate it makes, and its records are sealed and written there.
    const native = nativeAddon();
    const addon = "addon" in native && native.addon.dupFd !== undefined && native.addon.sealerSend !== undefined ? native.addon : null;
    this.#dup = addon === null ? null : (fd) => (addon.dupFd as (fd: number) => number)(fd);
    this.#lanes_on = (options.lanes ?? true) && node.tls !== null && this.#dup !== null;
    this.#channels = new LinkChannels(open, (pid, batch, peer) => {
      this.#node.metrics.linkReceived(peer ?? "unknown", batch.messages.length, batch.messages.reduce((n, m) => n + m.data.length, 0));
      return this.receive(pid, batch);
    });
  }

  /** An endpoint for a process that starts or lands here (a landing one loads its image's state). */
  endpoint(pid: string): Endpoint {
    return new Endpoint(pid, {
      deliver: (to, batch) => this.#deliver(to, batch),
      laneAnswer: (id, seq) => this.#lanes.get(pid)?.answer(id, seq) ?? Promise.reject(new FerryError("ERR_PEER_UNREACHABLE", "the lane closed")),
      answered: (to, answer, quiet) => this.#laneAfter(pid, to, answer, quiet),
    });
  }

  /** The doors of lanes other nodes' processes open to this one. */
  get laneDoors(): LaneDoors {
    return this.#lane_doors;
  }

  /** Serves a lane connection that presented `ticket`, if it is one of this node's lane doors'; false if not. */
  acceptLane(socket: net.Socket, ticket: Buffer): boolean {
    return this.#lane_doors.accept(socket, ticket, (pid, batch, peer) => {
      this.#node.metrics.linkReceived(peer ?? "unknown", batch.messages.length, batch.messages.reduce((n, m) => n + m.data.length, 0));
      return this.receive(pid, batch);
    });
  }

  /**
   * After an answer from `to` to `pid`'s messages: a lane's lease for `to`
   * is taken back when `to` is not where the lane goes (moving, elsewhere,
   * checkpointed); else, for a pair that exchanged enough and with nothing
   * more to `to` on its way (`quiet`), one is offered, on a lane opened to
   * `to`'s node first if need be.
   */
  #laneAfter(pid: string, to: string, answer: DeliverAnswer, quiet: boolean): void {
    if (!this.#lanes_on) return;
    const ep = this.#endpoints.get(pid);
    const proc = ep?.process ?? null;
    if (ep === undefined || proc === null) return;
    const lane = this.#lanes.get(pid);
    const leased = proc.lanePid === to;
    if (answer.kind !== "accepted" || answer.at === this.#node.name || answer.durable !== undefined || ep.keeps(to)) {
      if (leased) lane?.revoked();
      return;
    }
    // It took them on another node than the lane's: it moved.
    if (leased && lane !== undefined && lane.node !== answer.at) lane.revoked();
    // Offered only with nothing to `to` on its way (a lane's delivery that overtook one would be refused), and
    // while no other lease is in place (a process's lane is for the pid it talks to, not the last one it wrote to).
    if (!quiet || proc.lanePid !== null) return;
    if (lane !== undefined && lane.node === answer.at && lane.open) {
      lane.offer(to, () => ep.quietSeq(to));
      return;
    }
    if ((ep.stats().get(to)?.messages ?? 0) < LANE_AFTER_MESSAGES || this.#lanes_opening.has(pid)) return;
    if (lane !== undefined) this.#closeLane(pid);
    if (this.#lanes.size >= LANES_MAX) return;
    this.#lanes_opening.add(pid);
    void this.#openLane(pid, answer.at, proc)
      .then((opened) => {
        // Gone or moved meanwhile: not needed.
        if (this.#endpoints.get(pid) !== ep || ep.process !== proc || this.#closed) {
          opened.close();
          return;
        }
        this.#lanes.set(pid, opened);
        opened.offer(to, () => ep.quietSeq(to));
      })
      .catch((err: unknown) => logger().debug({ pid, node: answer.at, err: errorField(err) }, "a link lane could not be opened; messages go through the node"))
      .finally(() => this.#lanes_opening.delete(pid));
  }

  async #openLane(pid: string, node: string, proc: GuestProcess): Promise<SenderLane> {
    const dup = this.#dup;
    if (dup === null) throw new FerryError("ERR_PEER_UNREACHABLE", "no lanes without the native addon");
    const address = await this.#node.addressOf(node);
    const grant = parse(LaneGrantSchema, await requestJson(this.#node.dialer, address, "POST", `/v1/internal/lanes/${encodeURIComponent(pid)}`, { expect: nodeNamed(node) }), `node ${node}'s lane`);
    const socket = await dialLane(address, Buffer.from(grant.ticket, "base64"));
    try {
      return new SenderLane({
        node,
        socket,
        to_receiver: Buffer.from(grant.to_receiver, "base64"),
        to_sender: Buffer.from(grant.to_sender, "base64"),
        proc,
        dup,
        closeFd: (fd) => fs.closeSync(fd),
      });
    } catch (err: unknown) {
      socket.destroy();
      throw err;
    }
  }

  /** Closes `pid`'s lane, if it has one (it moved or ended). */
  #closeLane(pid: string): void {
    const lane = this.#lanes.get(pid);
    if (lane === undefined) return;
    lane.close();
    this.#lane_taken_closed += lane.taken;
    this.#lanes.delete(pid);
  }

  /** The endpoint serves its pid here now: it takes messages and sends what it holds. */
  add(ep: Endpoint): void {
    this.#endpoints.set(ep.pid, ep);
    this.#forward.delete(ep.pid);
    ep.resume();
  }

  /** The endpoint of `pid` if it runs here. */
  get(pid: string): Endpoint | undefined {
    return this.#endpoints.get(pid);
  }

  /**
   * The guest of `pid` asked to move itself to `to`. A move that fails
   * answers it with a WASI errno; one that succeeds answers on arrival.
   */
  selfMigrate(pid: string, to: string): void {
    const ep = this.#endpoints.get(pid);
    if (to === this.#node.name) {
      ep?.migrateDone();
      return;
    }
    // A name no node can have names no node.
    if (!NODE_NAME_PATTERN.test(to)) {
      ep?.migrateFailed(Errno.noent);
      return;
    }
    this.#node.migrateOut(pid, { to, strategy: "pre-copy" }).catch((err: unknown) => {
      const code = err instanceof FerryError ? err.code : "";
      ep?.migrateFailed(code === "ERR_NO_SUCH_NODE" ? Errno.noent : code === "ERR_PROCESS_STATE" ? Errno.again : Errno.io);
    });
  }

  /** The node `pid` was last seen taking messages on (this one if it runs here), if known: for the load module's link graph. */
  whereIs(pid: string): string | undefined {
    if (this.#endpoints.has(pid)) return this.#node.name;
    return this.#seen.get(pid) ?? this.#forward.get(pid)?.node;
  }

  /** `pid` moved to node `to`: messages that still come here are forwarded. */
  moved(pid: string, to: string): void {
    this.#closeLane(pid);
    this.#endpoints.delete(pid);
    this.#forward.set(pid, { node: to, used: Date.now() });
  }

  /** `pid` ended here: what it sent is still delivered; then its endpoint goes. */
  ended(pid: string): void {
    const ep = this.#endpoints.get(pid);
    if (ep === undefined) return;
    this.#closeLane(pid);
    void ep.end().then(() => {
      if (this.#endpoints.get(pid) === ep) this.#endpoints.delete(pid);
      this.#ended_stats.set(pid, ep.stats());
      if (this.#ended_stats.size > ENDED_STATS_KEPT) this.#ended_stats.delete(this.#ended_stats.keys().next().value as string);
    });
  }

  /** Serves a link channel node `peer` opened to this one (null: a peer that could not be named); deliveries to it go there too. */
  accept(peer: string | null, conn: FramedConnection): void {
    this.#channels.accept(peer, conn);
  }

  /** Messages for `pid` arriving from another node (or passed on by one). */
  async receive(pid: string, batch: Batch): Promise<DeliverAnswer> {
    const ep = this.#endpoints.get(pid);
    if (ep !== undefined) return ep.accept(batch, this.#node.name);
    const record = this.#node.table.home(pid);
    if (record !== undefined && record.exit !== null) return { kind: "gone" };
    this.#sweep();
    let fwd = this.#forward.get(pid);
    // This node is its home and records it elsewhere (a later move, or a restore after its runner died): the entry is stale.
    if (fwd !== undefined && record !== undefined && record.node !== this.#node.name && record.node !== fwd.node) {
      this.#forward.delete(pid);
      fwd = undefined;
    }
    if (fwd !== undefined) {
      fwd.used = Date.now();
      const answer = await this.#post(fwd.node, pid, batch).catch((err: unknown) => {
        // Its node does not answer (it may have died): ask the home's record instead, if this is the home; else the sender retries.
        this.#forward.delete(pid);
        if (record === undefined) throw err;
        return { kind: "unknown" } as const;
      });
      if (answer.kind !== "unknown") return answer;
      // It moved on (or ended) there: the entry is stale.
      this.#forward.delete(pid);
    }
    if (record !== undefined) {
      if (record.node !== this.#node.name) return this.#post(record.node, pid, batch);
      return { kind: "moving" }; // starting, or landing here right now
    }
    return { kind: "unknown" };
  }

  /** Sends a message from outside the cluster's processes (`ferry send`); resolves once it is in the inbox. */
  async sendFromClient(to: string, data: Uint8Array): Promise<void> {
    if (data.length > MESSAGE_BYTES_MAX) throw new FerryError("ERR_BAD_REQUEST", `a message is at most ${MESSAGE_BYTES_MAX} bytes`);
    this.#client += 1;
    const from = `client.${this.#node.name}.${Date.now().toString(36)}.${this.#client}`;
    const deadline = Date.now() + CLIENT_SEND_TIMEOUT_MS;
    for (let wait = 5; ; wait = Math.min(200, wait * 2)) {
      // A failed try is tried again until the deadline; its reason is the one reported if all fail.
      let failure = "";
      const answer = await this.#deliver(to, { from, messages: [{ seq: 1, data }] }).catch((err: unknown) => {
        failure = err instanceof Error ? `: ${err.message}` : "";
        return { kind: "moving" } as const;
      });
      if (answer.kind === "accepted" && answer.upto >= 1) return;
      if (answer.kind === "gone") throw new FerryError("ERR_PROCESS_ENDED", `process ${to} has ended`);
      if (Date.now() > deadline) throw new FerryError("ERR_PEER_UNREACHABLE", `could not deliver to ${to} within ${CLIENT_SEND_TIMEOUT_MS / 1000} s (${answer.kind}${failure})`);
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  /** Per-pair traffic of the processes that run here or ended here. */
  report(): PairReport[] {
    const out: PairReport[] = [];
    const add = (from: string, stats: Map<string, PairStats>): void => {
      for (const [to, s] of stats) {
        const seconds = Math.max((s.last_unix_ms - s.first_unix_ms) / 1000, 0.001);
        out.push({ from, to, ...s, messages_per_s: s.messages / seconds, bytes_per_s: s.bytes / seconds });
      }
    };
    for (const [pid, ep] of this.#endpoints) add(pid, ep.stats());
    for (const [pid, stats] of this.#ended_stats) if (!this.#endpoints.has(pid)) add(pid, stats);
    return out;
  }

  /** Endpoints and forwarding entries here, as they are now. */
  inspect(): Record<string, unknown> {
    return {
      endpoints: [...this.#endpoints.values()].map((e) => e.inspect()),
      forward: Object.fromEntries([...this.#forward].map(([pid, f]) => [pid, f.node])),
      seen: Object.fromEntries(this.#seen),
      channels: this.#channels.counts(),
      lanes: {
        served: this.#lane_doors.size,
        taken: this.#lane_taken_closed + [...this.#lanes.values()].reduce((n, l) => n + l.taken, 0),
        open: [...this.#lanes].map(([pid, lane]) => ({ pid, node: lane.node, open: lane.open, leased_to: this.#endpoints.get(pid)?.process?.lanePid ?? null, taken: lane.taken })),
      },
    };
  }

  close(): void {
    this.#closed = true;
    this.#channels.close();
    for (const pid of [...this.#lanes.keys()]) this.#closeLane(pid);
    this.#lane_doors.close();
  }

  /** Where `to` runs here, or over the network to where it was last seen, else its home. */
  async #deliver(to: string, batch: Batch): Promise<DeliverAnswer> {
    const here = this.#endpoints.get(to);
    if (here !== undefined) return here.accept(batch, this.#node.name);
    const named = pidHome(to);
    // A home declared dead may have handed its roles to another node (failover): ask there.
    const home = named !== undefined && this.#node.cluster?.isDead(named) === true ? ((await movedHome(this.#node, to, named)) ?? named) : named;
    const target = this.#seen.get(to) ?? home;
    if (target === undefined) return { kind: "gone" };
    if (target === this.#node.name) {
      const answer = await this.receive(to, batch);
      if (answer.kind === "accepted") this.#seen.set(to, answer.at);
      else this.#seen.delete(to);
      return answer;
    }
    const answer = await this.#post(target, to, batch).catch((err: unknown) => {
      this.#seen.delete(to);
      throw err;
    });
    if (answer.kind === "accepted") this.#seen.set(to, answer.at);
    else this.#seen.delete(to); // ask the home next time
    return answer;
  }

  async #post(node: string, pid: string, batch: Batch): Promise<DeliverAnswer> {
    const address = await this.#node.addressOf(node);
    this.#node.metrics.linkSent(node, batch.messages.length, batch.messages.reduce((n, m) => n + m.data.length, 0));
    return this.#channels.deliver(address, node, pid, batch);
  }

  #sweep(): void {
    const now = Date.now();
    for (const [pid, f] of this.#forward) if (now - f.used > FORWARD_TTL_MS) this.#forward.delete(pid);
  }
}
