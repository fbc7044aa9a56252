/**
 * The node's side of migrations: the data endpoint (an HTTP upgrade on the
 * control port) and the glue between the migration strategies and the
 * process table.
 */
import { createPublicKey, type KeyObject } from "node:crypto";
import type http from "node:http";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { Duplex } from "node:stream";
import { FerryError } from "../errors.js";
import { trustKeys, type ImageTrust } from "../image/mod.js";
import { peerIdentity, type ExpectedPeer, type Identity } from "../trust/mod.js";
import type { Preopen } from "../wasi/mod.js";
import {
  MAX_DOWNTIME_MS_DEFAULT,
  migrateIn,
  migrateOut,
  nativeBulkAvailable,
  RECOVER_MS_DEFAULT,
  stopCostMs,
  type Landing,
  type MigrationMetrics,
  type MigrationOptions,
  type MigrationProgress,
  type DestinationClock,
  type Offer,
  Msg,
} from "../migration/mod.js";
import { createTracker, remotePagesAvailability, TRACK_PAGE_BYTES } from "../memory/mod.js";
import { parseLinkState } from "../links/mod.js";
import { GuestProcess } from "../runtime/mod.js";
import { parse_wasi_state, socket_positions } from "../wasi/mod.js";
import { FramedConnection } from "../transport/mod.js";
import type { FerryNode } from "./node.js";
import type { OutputRelay } from "./relay.js";
import { requestJson } from "./_http.js";
import { fetchModuleFrom } from "./_module_transfer.js";
import { recordMove, type MoveRecordOutcome } from "./_move_record.js";
import { ANY_NODE, nodeNamed, type Dialer } from "./_dialer.js";
import { acceptPages, IncomingPostCopy, PAGES_PATH, PreparedPages } from "./_postcopy.js";
import { acceptBulkUpgrade, BULK_PATH, dialBulkDoor, dialBulkUpgrade } from "./_bulk_doors.js";
import { connectPages } from "./_page_connect.js";
import { LINKS_PATH, LINKS_PROTOCOL } from "./_link_channel.js";
import { upgrade } from "./_upgrade.js";
import { acceptCheckpoint, CHECKPOINT_PATH } from "./_checkpoints.js";
import { acceptNetLine, NET_PATH } from "./_net_wire.js";
import { admitOffer } from "./_admission.js";
import type { StandbyTicket } from "./_standbys.js";
import { MigrateRequestSchema } from "./_api_schemas.js";
import { RunningAnswerSchema } from "./_internal_schemas.js";
import { NODE_NAME_PATTERN, WASM_PAGE_BYTES } from "../process_spec.js";
import { parse } from "../validate.js";
import { errorField, logger } from "../log/mod.js";

/** The upgrade token of the data protocol. */
export const DATA_PROTOCOL = "ferry-data/1";
/** Path of the data endpoint. */
export const DATA_PATH = "/v1/internal/data";

/** Opens a link channel to node `name` at `address` (`_link_channel.ts`). */
export async function connectLinks(dialer: Dialer, address: string, name: string, self: string): Promise<FramedConnection> {
  const { socket, head } = await upgrade(dialer, address, `${LINKS_PATH}?node=${encodeURIComponent(self)}`, LINKS_PROTOCOL, nodeNamed(name));
  return new FramedConnection(socket, { head: Buffer.from(head) });
}

/** Opens a data connection to node `name` at `address` (any node of the cluster if no name is given). */
export async function connectData(dialer: Dialer, address: string, name?: string): Promise<FramedConnection> {
  const { socket, head } = await upgrade(dialer, address, DATA_PATH, DATA_PROTOCOL, name === undefined ? ANY_NODE : nodeNamed(name));
  return new FramedConnection(socket, { head: Buffer.from(head) });
}

/** Accepts an upgraded connection on the control server: a migration's data, a post-copy page channel, links, or a process's connections. */
export function acceptData(node: FerryNode, req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
  try {
    acceptUpgrade(node, req, socket, head);
  } catch (err: unknown) {
    // Runs in the server's event handler: a fault here must cost this connection, never the node.
    node.log.warn({ url: req.url, err: errorField(err) }, "dropped an upgrade that failed");
    socket.destroy();
  }
}

function acceptUpgrade(node: FerryNode, req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
  // Every upgrade is node-to-node: only a member node of this cluster may open one.
  const peer = node.tls === null ? null : peerIdentity(req.socket);
  if (node.tls !== null && peer?.role !== "node") {
    const status = peer === null ? "401 Unauthorized" : "403 Forbidden";
    socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    return;
  }
  if ((req.url ?? "").startsWith(PAGES_PATH)) {
    acceptPages(node.postcopy, node.tls === null ? null : node.page_tickets, req, socket, head);
    return;
  }
  if (node.tls === null && (req.url ?? "").startsWith(BULK_PATH)) {
    // With TLS the door is reached through the front instead (a TLS socket cannot be handed to a native thread).
    acceptBulkUpgrade(node.bulk_doors, req.url ?? "", socket, head);
    return;
  }
  if (req.url === CHECKPOINT_PATH) {
    acceptCheckpoint(node, req, socket, head, peer);
    return;
  }
  if ((req.url ?? "").startsWith(NET_PATH)) {
    // Net lanes come through the front, which a node has with TLS only.
    acceptNetLine(req, socket, head, (pid) => node.table.home(pid)?.net ?? undefined, node.tls !== null ? node.net_lane_doors : null);
    return;
  }
  const url = new URL(req.url ?? "/", "http://node");
  if (url.pathname === LINKS_PATH && (req.headers.upgrade ?? "").toLowerCase() === LINKS_PROTOCOL) {
    (socket as Socket).setNoDelay?.(true);
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: ${LINKS_PROTOCOL}\r\nconnection: Upgrade\r\n\r\n`);
    // With TLS the certificate names the peer (a node cannot act as another); without, its word is all there is.
    const named = url.searchParams.get("node");
    const name = peer !== null ? peer.name : named !== null && NODE_NAME_PATTERN.test(named) ? named : null;
    node.links.accept(name, new FramedConnection(socket, { head }));
    return;
  }
  if (req.url !== DATA_PATH || (req.headers.upgrade ?? "").toLowerCase() !== DATA_PROTOCOL) {
    socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n");
    return;
  }
  (socket as Socket).setNoDelay?.(true);
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: ${DATA_PROTOCOL}\r\nconnection: Upgrade\r\n\r\n`);
  // The image and stop-copy's BULK pages are byte streams across their frames: their pieces go on as they arrive, never copied together first.
  const conn = new FramedConnection(socket, { head, splittable_types: [Msg.image, Msg.bulk] });
  // The image must be signed by the key of the node the OFFER came from: with
  // TLS, the authenticated peer's certificate key; --insecure has no peer to
  // authenticate, so it takes the key the offer names, which only ties the
  // image to its offer.
  let offered: ImageTrust = () => undefined;
  const peer_key = peer === null ? undefined : (req.socket as TLSSocket).getPeerX509Certificate?.()?.publicKey;
  const side = {
    prepare: (offer: Offer, clock?: DestinationClock): Promise<Landing> => {
      offered = peer_key !== undefined ? trustKeys([peer_key]) : node.tls === null ? offerTrust(offer) : () => undefined;
      return prepare(node, offer, peer, clock);
    },
    trust: (key_id: Uint8Array): KeyObject | undefined => offered(key_id),
    // Stop-copy's pages come as records on a connection of their own (`_bulk_doors.ts`): sealed with TLS;
    // tagged in the clear without, where a native thread receives them (else as BULK frames on this connection).
    ...(node.tls !== null ? { sealedDoor: () => node.bulk_doors.open("aes-256-gcm") } : nativeBulkAvailable() ? { sealedDoor: () => node.bulk_doors.open("gmac") } : {}),
  };
  migrateIn(conn, side, { idle_ms: node.limits.standby_idle_ms }).catch((err: unknown) => {
    // The source learns why from the ERROR frame or the broken link; nothing ran here, and the standby is gone.
    node.log.info({ from: peer?.name ?? null, err: errorField(err) }, "an incoming migration did not land");
  });
}

/** Without TLS only (see acceptUpgrade): trusts the public key an offer carries, if any. */
function offerTrust(offer: Offer): ImageTrust {
  if (offer.signing_key === undefined) return () => undefined;
  try {
    return trustKeys([createPublicKey({ key: Buffer.from(offer.signing_key, "base64"), format: "der", type: "spki" })]);
  } catch (cause: unknown) {
    throw new FerryError("ERR_MIGRATION_PROTOCOL", "the offer's signing_key is not a public key (SPKI DER, base64)", { cause });
  }
}

/**
 * Checks an offer and prepares its standby. Everything the offer asks for is
 * checked (`admitOffer`) before its memory is reserved; whatever fails after
 * that gives the reservation back and drops the standby. `peer` is the
 * authenticated source (null without TLS): the module is fetched from it and
 * nowhere else, whatever address the offer names.
 */
export async function prepare(node: FerryNode, offer: Offer, peer: Identity | null, clock?: DestinationClock): Promise<Landing> {
  if (node.table.running(offer.pid) !== undefined) throw new FerryError("ERR_PROCESS_STATE", `${offer.pid} already runs on ${node.name}`);
  const post_copy = offer.strategy === "post-copy" || offer.strategy === "hybrid";
  if (post_copy) {
    const can = remotePagesAvailability();
    if (!can.available) throw new FerryError("ERR_UFFD_UNAVAILABLE", `node ${node.name} cannot take a ${offer.strategy} migration: ${can.reason}`);
  }
  // The directories the process gets here: what this node grants, never the
  // host paths its image records (the image's preopens are matched to these
  // by guest path on activation).
  const { ticket, preopens } = admitOffer(node, offer);
  try {
    if (!node.modules.has(offer.module_sha256)) {
      clock?.enter("fetch_module");
      await fetchModule(node, offer.source, peer === null ? undefined : nodeNamed(peer.name), offer.module_sha256);
    }
    clock?.enter("standby");
    const landed = landing(node, offer, await standby(node, offer, clock), ticket, preopens);
    // Saved now, while the source still runs (it waits for READY): an
    // fdatasync takes 1-3 ms here and, now and then, 50-150 ms, which in
    // the downtime was a pre-copy's whole target many times over. Taken
    // back if the move fails (abort), settled by recover() after a crash.
    // Its time counts in `reserve`, the standby's preparation.
    try {
      node.table.arriving(offer.pid, offer.home, offer.moves);
    } catch (err: unknown) {
      // Not saved (the state file could not be written): the standby goes, and the move fails before READY.
      await landed.abort();
      throw err;
    }
    return landed;
  } catch (err: unknown) {
    ticket.release();
    throw err;
  }
}

/** A standby and what it is wired to, until it lands. */
interface Standby {
  proc: GuestProcess;
  links: ReturnType<FerryNode["links"]["endpoint"]>;
  net: ReturnType<FerryNode["table"]["netLink"]>;
  /** Where its output goes, once the image says from which offsets. */
  setRelay(relay: OutputRelay): void;
  /** Pre-copy: resolves once its memory is backed, which goes on while the first round arrives (else it was backed before). */
  reserved?: Promise<void>;
}

/** The standby of an offered process: instantiated, its memory grown to the offered size and backed; dropped again if that fails. */
async function standby(node: FerryNode, offer: Offer, clock?: DestinationClock): Promise<Standby> {
  // Output offsets are known only from the image: the relay is set at the end.
  let relay: OutputRelay | null = null;
  const sink: OutputRelay = {
    get offsets() {
      return (relay as OutputRelay).offsets;
    },
    write: (stream, data) => (relay as OutputRelay).write(stream, data),
    flush: (give_up_ms) => (relay as OutputRelay).flush(give_up_ms),
    abandon: () => relay?.abandon() ?? 0,
  };
  const links = node.links.endpoint(offer.pid);
  const net = node.table.netLink(offer.pid, offer.home);
  // Its connections' line to their home is opened first, while the source
  // waits for READY: when it lands, attaching is one exchange. Opened later,
  // its handshake met a home busy stopping and sending the process (when the
  // home is the source), and a relayed client waited for it after the move.
  if ((offer.listen ?? []).length > 0) net.prepare();
  let proc: GuestProcess;
  try {
    // Instantiated now, while the source still runs: downtime does not pay for it.
    proc = await GuestProcess.standby(node.modules.get(offer.module_sha256), node.table.ioFor(sink, links, net), {
      module_path: offer.module_name,
      memory_max_bytes: offer.memory_max_bytes,
    });
  } catch (err: unknown) {
    net.detach();
    throw err;
  }
  clock?.enter("reserve");
  let reserved: Promise<void> | undefined;
  try {
    // Memory never shrinks: take the size it had when offered in one step, and
    // have the kernel back every page now, while the source still runs, rather
    // than fault them in one by one during the downtime.
    proc.growTo(offer.memory_bytes);
    // Post-copy drops all of it anyway; hybrid's round writes into it like pre-copy.
    // The worker has the kernel back the pages, as huge pages where it can, and writes each once from
    // user space as the incoming pages will be: on a host with shadow page tables that first write costs
    // about 10 us a 4 KiB page even when the page is backed (180 ms per 64 MiB), paid here rather than in
    // the downtime (docs/cluster.md). Pre-copy's goes on while its first round arrives: the destination
    // confirms that round only once it is done (Landing.reserved). Hybrid's is done before READY: its
    // memory is registered with userfaultfd next, and backing a registered range would fault to it.
    if (offer.strategy === "pre-copy") {
      reserved = proc.reserve(offer.memory_bytes);
      // Awaited at the first round's end, where its error is seen; this only keeps it from being unhandled meanwhile.
      reserved.catch(() => undefined);
    } else if (offer.strategy !== "post-copy") await proc.reserve(offer.memory_bytes);
  } catch (err: unknown) {
    net.detach();
    await proc.terminate();
    throw err;
  }
  return {
    proc,
    ...(reserved !== undefined ? { reserved } : {}),
    links,
    net,
    setRelay: (r) => {
      relay = r;
    },
  };
}

/** The landing of a standby: pages and the image go in, and it runs, or it is dropped and its memory given back. */
function landing(node: FerryNode, offer: Offer, { proc, links, net, setRelay, reserved }: Standby, ticket: StandbyTicket, preopens: Preopen[]): Landing {
  let view = new Uint8Array(proc.memory.buffer);
  let incoming: IncomingPostCopy | null = null;
  // Post-copy's session is opened now, while the source still runs: at the handover only the drop remains.
  let prepared: PreparedPages | null = null;
  if (offer.strategy === "post-copy" || offer.strategy === "hybrid") {
    try {
      prepared = new PreparedPages(view);
    } catch (err: unknown) {
      // The caller gives the reservation back; the standby goes with it.
      net.detach();
      void proc.terminate().catch((e: unknown) => logger().warn({ pid: offer.pid, err: errorField(e) }, "could not drop a standby whose post-copy session did not open"));
      throw err;
    }
  }
  // The session the offer named: its page channel is taken from now on, while the source still runs the process.
  const pending = prepared !== null && offer.page_session !== undefined ? node.postcopy.expect(offer.page_session, offer.pid) : null;
  // Every growth is reserved first: a source cannot make a standby outgrow the quota, or its cap.
  const grow = (size_bytes: number): void => {
    ticket.grow(size_bytes);
    proc.growTo(size_bytes);
    view = new Uint8Array(proc.memory.buffer);
  };
  return {
    ...(reserved !== undefined ? { reserved: () => reserved } : {}),
    early_pages: pending !== null,
    write(offset, data) {
      const end = offset + data.length;
      if (end > view.length) grow(Math.ceil(end / WASM_PAGE_BYTES) * WASM_PAGE_BYTES);
      // Registered for post-copy: whole pages are placed rather than faulted in, until the handover (after it no page comes here).
      if (prepared !== null && incoming === null && offset % TRACK_PAGE_BYTES === 0 && data.length % TRACK_PAGE_BYTES === 0) prepared.write(view, offset, data);
      else view.set(data, offset);
      // The guest's memory is shared: the image's hashing thread reads the bytes here rather than a copy.
      return view.subarray(offset, end);
    },
    place(offset, length) {
      const end = offset + length;
      if (end > view.length) grow(Math.ceil(end / WASM_PAGE_BYTES) * WASM_PAGE_BYTES);
      return view.subarray(offset, end);
    },
    async finish(image, handover, clock) {
      // Every page is already in place (written as it arrived), or, with a
      // handover, comes from the source once the process runs.
      grow(image.memory.size_bytes);
      const { pid, home, module_sha256, module_name, args, env, dirs, memory_max_bytes, moves } = offer;
      // Posted to the worker first, gated: it wakes and takes up the WASI state while this thread readies the rest
      // (the output relay, links, connections' slots, and for post-copy and hybrid the drop of the chunks still at the
      // source), then opens the gate and the worker rewinds. Done first, that work and the worker's wake and restore
      // came one after the other (post-copy's drops and attach: 0.9-1.4 ms of this thread's, then the worker 1.3-1.5
      // ms). The durable record that it runs here was written before READY.
      const running = proc.activate(image, { preopens }, { gated: true });
      let resumed_at: number;
      let relay: ReturnType<typeof node.table.relayFor>;
      try {
        relay = node.table.relayFor(offer.pid, offer.home, { stdout: image.streams.stdout_bytes, stderr: image.streams.stderr_bytes });
        setRelay(relay);
        if (image.links !== undefined) links.load(parseLinkState(image.links));
        // Its inbox, outbox count and any move it asked for, before it runs.
        links.start(node.name, true);
        // Its connections get their slots before it runs (the worker reads them only then); the home sends their bytes from where the image is.
        net.start(socket_positions(parse_wasi_state(image.wasi)));
        if (handover !== null) incoming = new IncomingPostCopy(node.postcopy, offer.pid, proc, handover, { recover_ms: offer.recover_ms ?? RECOVER_MS_DEFAULT, source: offer.source, prepared });
        proc.openGate();
        // The page channel attaches as the worker rewinds: the rewind reads only chunks that are here, and a fault meanwhile waits for it.
        incoming?.open();
        clock?.enter("resume");
        resumed_at = await running;
      } catch (err: unknown) {
        // Seen here already (or the record could not be written, and the process is dropped whatever it does).
        running.catch(() => undefined);
        net.detach();
        node.table.arrivalFailed(pid);
        throw err;
      }
      // It runs here: messages for it are taken here from now on.
      clock?.enter("adopt");
      incoming?.settle();
      node.links.add(links);
      node.table.adopt({ pid, home, module_sha256, module_name, args, env, dirs, listen: offer.listen ?? [], memory_max_bytes, proc, relay, links, net, moves, ...(offer.checkpoint_every_ms !== undefined ? { checkpoint_every_ms: offer.checkpoint_every_ms } : {}) });
      // A running process now, counted as one: no longer a standby.
      ticket.release();
      return resumed_at;
    },
    async abort() {
      node.table.arrivalFailed(offer.pid);
      pending?.close();
      prepared?.close();
      net.detach();
      await proc.terminate();
      ticket.release();
    },
  };
}

/**
 * Brings a module a migration (or a checkpoint) needs from its source at
 * `address`, which must be `expect` (the authenticated source), streamed
 * into the store within the transfer's deadline (`_module_transfer.ts`).
 */
export function fetchModule(node: FerryNode, address: string, expect: ExpectedPeer | undefined, sha256: string): Promise<void> {
  return fetchModuleFrom(node.dialer, address, { sha256, store: node.modules, bytes_max: node.limits.module_bytes_max, expect });
}

/**
 * What this node learnt of each destination from its own pre-copies, by node
 * name, kept per node object in memory (after a restart the first move
 * measures again):
 * - `link_bytes_per_s`: the rate it last confirmed pages at; the first round
 *   of the next move there chooses compression by it (`compress: auto`,
 *   src/migration/_compress.ts);
 * - `stop_costs`: what the last {@link STOP_COSTS_KEPT} stops there cost
 *   besides their final copies' bytes (`stopCostMs`); the next move leaves
 *   its final copy the downtime target less their median ({@link hints}).
 */
const learnt = new WeakMap<FerryNode, Map<string, { link_bytes_per_s?: number; stop_costs: number[] }>>();

/** Moves whose stop costs are kept per destination: a median of a few, so one move with a collection in its downtime does not set the next one's target. */
const STOP_COSTS_KEPT = 5;

function learntOf(node: FerryNode): Map<string, { link_bytes_per_s?: number; stop_costs: number[] }> {
  let all = learnt.get(node);
  if (all === undefined) learnt.set(node, (all = new Map()));
  return all;
}

/**
 * The options a move to `to` takes from earlier ones: the link rate last
 * seen there, and the median stop cost there, or, before any pre-copy there,
 * of those to every destination (most of a stop is the two nodes' own work).
 */
function hints(node: FerryNode, to: string): Pick<MigrationOptions, "link_hint_bytes_per_s" | "stop_cost_hint_ms"> {
  const all = learntOf(node);
  const here = all.get(to);
  const costs = here !== undefined && here.stop_costs.length > 0 ? here.stop_costs : [...all.values()].flatMap((d) => d.stop_costs);
  const sorted = [...costs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return {
    ...(here?.link_bytes_per_s !== undefined ? { link_hint_bytes_per_s: here.link_bytes_per_s } : {}),
    ...(sorted.length === 0 ? {} : { stop_cost_hint_ms: sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2 }),
  };
}

/** Keeps what a successful move to `to` showed of it. */
function learn(node: FerryNode, to: string, metrics: MigrationMetrics): void {
  const all = learntOf(node);
  const here = all.get(to) ?? { stop_costs: [] };
  all.set(to, here);
  if (metrics.convergence !== undefined) here.link_bytes_per_s = metrics.convergence.link_bytes_per_s;
  const cost = metrics.strategy === "pre-copy" ? stopCostMs(metrics) : null;
  if (cost === null) return;
  here.stop_costs.push(cost);
  if (here.stop_costs.length > STOP_COSTS_KEPT) here.stop_costs.shift();
}

/** Moves process `pid`, which runs on this node, as a client asked. */
export async function migrateProcess(
  node: FerryNode,
  pid: string,
  body: unknown,
  progress?: (p: MigrationProgress) => void,
): Promise<{ pid: string; from: string; to: string; metrics: MigrationMetrics }> {
  const running = node.table.running(pid);
  if (running === undefined) throw new FerryError("ERR_NO_SUCH_PROCESS", `process ${pid} does not run on node ${node.name}`);
  const b = parse(MigrateRequestSchema, body, "migration request");
  const strategy = b.strategy;
  const max_downtime_ms = b.max_downtime_ms ?? MAX_DOWNTIME_MS_DEFAULT;
  const recover_ms = b.recover_ms ?? RECOVER_MS_DEFAULT;
  const push = b.push_bytes_per_s;
  if (b.to === node.name) throw new FerryError("ERR_BAD_REQUEST", `${pid} already runs on ${node.name}`);
  if (node.postcopy.forPid(pid) !== undefined) throw new FerryError("ERR_PROCESS_STATE", `${pid} is still receiving pages from its last post-copy migration; try again when they are all here`);
  if (running.migrating) throw new FerryError("ERR_PROCESS_STATE", `${pid} is already being migrated`);
  const address = await node.addressOf(b.to);
  running.migrating = true;
  // A memory takes one write tracker at a time: the load module's dirty-rate window gives way to the move's.
  node.load.dirty.release(pid);
  // Its checkpoint chain ends here (a checkpoint under way finishes first); the destination starts a new one.
  await node.checkpoints.pause(pid);
  const { pid: _p, home, module_sha256, module_name, args, env, dirs, listen, memory_max_bytes } = running;
  const to = b.to;
  const moves = running.moves + 1;
  let located: Promise<MoveRecordOutcome> | null = null;
  const moved = (): Promise<MoveRecordOutcome> => {
    // The destination runs it: this copy is not the process any more, and
    // messages that still come here follow it.
    node.table.release(pid);
    node.links.moved(pid, to);
    // The directory first (compare-and-set on the counter), then the home; both before this copy is terminated.
    located ??= recordMove(
      { cluster: node.cluster, tellHome: (m) => node.table.recordLocation(m.pid, m.home, m.to, m.moves), publish: (e) => node.events.publish(e), log: node.log },
      { pid, home, to, moves },
    );
    return located;
  };
  // Saved before the offer: if this node dies mid-move, it asks `to` on restart whether the process went there.
  node.table.moving(pid, to);
  const log = node.log.child({ pid, to, strategy });
  node.metrics.migrationStarted({ pid, to, strategy }, running.proc.memory_bytes);
  node.events.publish({ type: "migration.started", pid, to, strategy });
  log.info(`migrating ${pid} to ${to} (${strategy})`);
  const observe = (p: MigrationProgress): void => {
    node.metrics.migrationProgress(pid, p);
    const round = p.round !== undefined ? { round: p.round } : {};
    if (p.in_phase === true) {
      // Bytes within a phase, a few a second: to whoever watches now, neither kept nor logged.
      node.events.live({ type: "migration.progress", pid, to, strategy, phase: p.phase, ...round, bytes: p.bytes, memory_bytes: p.memory_bytes });
      progress?.(p);
      return;
    }
    // Stopped for the copy: its core goes to a guest waiting for one now, not at the next slice.
    if (p.phase === "copying") node.load.reschedule();
    const dirty = p.dirty_bytes_per_s !== undefined ? { dirty_bytes_per_s: p.dirty_bytes_per_s } : {};
    node.events.publish({ type: "migration.phase", pid, to, strategy, phase: p.phase, ...round, bytes: p.bytes, memory_bytes: p.memory_bytes, ...dirty });
    log.debug({ phase: p.phase, round: p.round, bytes: p.bytes }, `migration of ${pid}: ${p.phase}`);
    progress?.(p);
  };
  // Its memory is read in place while it runs (pre-copy's rounds): a hibernated process wakes first, and none hibernates during the move.
  let awake: (() => void) | null = null;
  try {
    awake = await running.proc.stayAwake();
    const metrics = await migrateOut(
      {
        proc: running.proc,
        offer: {
          pid,
          home,
          module_sha256,
          module_name,
          args,
          env,
          dirs,
          listen,
          open_files: [...running.proc.open_files],
          strategy,
          source: node.address,
          memory_bytes: running.proc.memory_bytes,
          memory_max_bytes,
          recover_ms,
          moves,
          ...(running.checkpoint_every_ms !== undefined ? { checkpoint_every_ms: running.checkpoint_every_ms } : {}),
          // Without TLS only: the destination has no peer certificate to take the key from (see acceptUpgrade).
          ...(node.tls === null ? { signing_key: createPublicKey(node.image_key).export({ type: "spki", format: "der" }).toString("base64") } : {}),
        },
        signer: { key: node.image_key },
        connect: () => connectData(node.dialer, address, to),
        connectSealed: (ticket: Uint8Array) => (node.tls === null ? dialBulkUpgrade(node.dialer, address, to, ticket) : dialBulkDoor(address, ticket)),
        connectPages: (session, options) => connectPages(node.dialer, address, session, to, options?.demand ?? false),
        flushOutput: () => running.relay.flush(),
        destinationRuns: async () =>
          parse(RunningAnswerSchema, await requestJson(node.dialer, address, "GET", `/v1/internal/running/${pid}`, { expect: nodeNamed(to) }), `node ${address}'s answer`, { code: "ERR_PEER_UNREACHABLE" }).running,
        // Post-copy: the home learns the new location as soon as the destination runs it; this copy only serves pages from here.
        resumed: () => void moved(),
        links: running.links,
        net: running.net,
        progress: observe,
      },
      {
        strategy,
        max_downtime_ms,
        tracker: () => createTracker(node.page_tracker.name),
        ...(push !== undefined ? { push_bytes_per_s: push } : {}),
        ...(b.auto_converge !== undefined ? { auto_converge: b.auto_converge } : {}),
        ...(b.compress !== undefined ? { compression: b.compress } : {}),
        ...hints(node, to),
        stall_ms: node.limits.migration_stall_ms,
        onStall: ({ idle_ms, phase }) => {
          log.warn({ idle_ms: Math.round(idle_ms), phase, stall_ms: node.limits.migration_stall_ms }, `migration of ${pid} to ${to} stalled while ${phase}: aborting it`);
          node.events.publish({ type: "migration.stalled", pid, to, strategy, phase, idle_ms: Math.round(idle_ms) });
        },
      },
    );
    learn(node, to, metrics);
    node.metrics.migrationSucceeded(pid, metrics);
    node.events.publish({ type: "migration.succeeded", pid, to, strategy, total_ms: metrics.total_ms, downtime_ms: metrics.downtime_ms, bytes: metrics.bytes });
    const rounded = (phases: Record<string, number | undefined>): Record<string, number> => Object.fromEntries(Object.entries(phases).flatMap(([k, ms]) => (ms === undefined ? [] : [[k, Math.round(ms * 10) / 10]])));
    log.info({ total_ms: Math.round(metrics.total_ms), downtime_ms: Math.round(metrics.downtime_ms), bytes: metrics.bytes, phases_ms: rounded(metrics.phases_ms), destination_phases_ms: rounded(metrics.destination_phases_ms) }, `migrated ${pid} to ${to}`);
    // Committed: the destination runs it and has all of it. The home records
    // where it went before this copy goes (issue 11's move/exit race: the
    // destination's process may end at once, and its end is taken only from
    // the node the home has recorded).
    const { record, copy_may_go } = await moved();
    running.net.detach();
    // Its memory is the destination's now: given back to the kernel at once (the next arrival here takes those pages).
    if (record !== "unrecorded") await running.proc.terminate(undefined, { discard: true });
    else {
      // Kept (stopped, never resumed) while the directory has not taken the move: `_move_record.ts`.
      void copy_may_go
        .then(() => running.proc.terminate(undefined, { discard: true }))
        .catch((err: unknown) => log.error({ err: errorField(err) }, `could not drop the copy of ${pid} left after its move`));
    }
    return { pid, from: node.name, to, metrics };
  } catch (err: unknown) {
    const code = err instanceof FerryError ? err.code : "ERR_INTERNAL";
    node.metrics.migrationFailed(pid, strategy, code);
    node.events.publish({ type: "migration.failed", pid, to, strategy, code, message: err instanceof Error ? err.message : String(err) });
    // A process that ended on its own before it could be moved is no fault: its end is recorded as usual (an automatic move often races a process's end).
    if (code === "ERR_PROCESS_ENDED") log.info({ err: errorField(err) }, `${pid} ended before it could be moved to ${to}`);
    else log.warn({ err: errorField(err) }, `migration of ${pid} to ${to} failed`);
    if (err instanceof FerryError && err.code === "ERR_POSTCOPY_LOST") {
      // Its live state went to the destination, its memory stayed here: gone.
      await located;
      node.table.release(pid);
      running.net.detach();
      await running.proc.terminate();
      // The source of the move may report its loss (the destination may be gone too); the home takes the first report.
      await node.table.reportExit(pid, home, { kind: "lost", message: err.message }, moves).catch((e: unknown) => {
        log.error({ home, err: errorField(e) }, `the home of ${pid} was not told it was lost`);
      });
    } else {
      // It keeps running here.
      node.table.moving(pid, undefined);
    }
    throw err;
  } finally {
    awake?.();
    running.migrating = false;
  }
}
