/**
 * The node's side of migrations: the data endpoint (an HTTP upgrade on the
 * control port) and the glue between the migration strategies and the
 * process table.
 */
import fs from "node:fs";
import type http from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { FerryError } from "../errors.js";
import {
  MAX_DOWNTIME_MS_DEFAULT,
  migrateIn,
  migrateOut,
  RECOVER_MS_DEFAULT,
  STRATEGIES,
  type Landing,
  type MigrationMetrics,
  type MigrationProgress,
  type Offer,
  type Strategy,
} from "../migration/mod.js";
import { createTracker, populate, remotePagesAvailability } from "../memory/mod.js";
import { parseLinkState } from "../links/mod.js";
import { GuestProcess } from "../runtime/mod.js";
import { parse_wasi_state, socket_positions } from "../wasi/mod.js";
import { FramedConnection } from "../transport/mod.js";
import { MODULE_BYTES_MAX } from "./module_store.js";
import type { FerryNode } from "./node.js";
import { nodeNamed, type Dialer } from "./_dialer.js";
import { peerIdentity, type ExpectedPeer, type Identity } from "../trust/mod.js";
import { preopensHere } from "./process_table.js";
import type { OutputRelay } from "./relay.js";
import { peerError, requestJson } from "./_http.js";
import { acceptPages, IncomingPostCopy, PAGES_PATH } from "./_postcopy.js";
import { connectPages } from "./_page_connect.js";
import { LINKS_PATH, LINKS_PROTOCOL, serveLinkChannel } from "./_link_channel.js";
import { upgrade } from "./_upgrade.js";
import { acceptNetLine, NET_PATH } from "./_net_wire.js";
import { parseBatch } from "./_links.js";

/** Bytes of a wasm page: memory grows by these. */
const WASM_PAGE_BYTES = 65536;

/** The upgrade token of the data protocol. */
export const DATA_PROTOCOL = "ferry-data/1";
/** Path of the data endpoint. */
export const DATA_PATH = "/v1/internal/data";

/** Longest wait for a broken post-copy link a client may ask for. */
const RECOVER_MS_MAX = 600_000;

/** Opens a link channel to node `name` at `address` (`_link_channel.ts`). */
export async function connectLinks(dialer: Dialer, address: string, name: string): Promise<FramedConnection> {
  const { socket, head } = await upgrade(dialer, address, LINKS_PATH, LINKS_PROTOCOL, nodeNamed(name));
  return new FramedConnection(socket, { head: Buffer.from(head) });
}

/** Opens a data connection to node `name` at `address`. */
export async function connectData(dialer: Dialer, address: string, name: string): Promise<FramedConnection> {
  const { socket, head } = await upgrade(dialer, address, DATA_PATH, DATA_PROTOCOL, nodeNamed(name));
  return new FramedConnection(socket, { head: Buffer.from(head) });
}

/** Accepts an upgraded connection on the control server: a migration's data, a post-copy page channel, links, or a process's connections. */
export function acceptData(node: FerryNode, req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
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
  if ((req.url ?? "").startsWith(NET_PATH)) {
    acceptNetLine(req, socket, head, (pid) => node.table.home(pid)?.net ?? undefined);
    return;
  }
  if (req.url === LINKS_PATH && (req.headers.upgrade ?? "").toLowerCase() === LINKS_PROTOCOL) {
    (socket as Socket).setNoDelay?.(true);
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: ${LINKS_PROTOCOL}\r\nconnection: Upgrade\r\n\r\n`);
    serveLinkChannel(new FramedConnection(socket, { head }), (pid, body) => node.links.receive(pid, parseBatch(body)));
    return;
  }
  if (req.url !== DATA_PATH || (req.headers.upgrade ?? "").toLowerCase() !== DATA_PROTOCOL) {
    socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n");
    return;
  }
  (socket as Socket).setNoDelay?.(true);
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: ${DATA_PROTOCOL}\r\nconnection: Upgrade\r\n\r\n`);
  const conn = new FramedConnection(socket, { head });
  migrateIn(conn, { prepare: (offer) => prepare(node, offer, peer) }).catch(() => {
    // The source learns why from the ERROR frame or the broken link; nothing ran here.
  });
}

/**
 * Gets a process ready to land. `peer` is the authenticated source (null
 * without TLS): the module is fetched from it and nowhere else, whatever
 * address the offer names.
 */
async function prepare(node: FerryNode, offer: Offer, peer: Identity | null): Promise<Landing> {
  if (node.table.running(offer.pid) !== undefined) throw new FerryError("ERR_PROCESS_STATE", `${offer.pid} already runs on ${node.name}`);
  const post_copy = offer.strategy === "post-copy" || offer.strategy === "hybrid";
  if (post_copy) {
    const can = remotePagesAvailability();
    if (!can.available) throw new FerryError("ERR_UFFD_UNAVAILABLE", `node ${node.name} cannot take a ${offer.strategy} migration: ${can.reason}`);
  }
  if (!node.modules.has(offer.module_sha256)) {
    node.modules.put(offer.module_sha256, await fetchModule(node.dialer, offer.source, peer === null ? undefined : nodeNamed(peer.name), offer.module_sha256));
  }
  // The directories the process gets here: what this node grants, never the
  // host paths its image records (the image's preopens are matched to these
  // by guest path on activation).
  const preopens = preopensHere(offer.dirs, node.name);
  for (const file of offer.open_files) {
    if (!fs.existsSync(file)) throw new FerryError("ERR_MISSING_FILE", `file ${file}, open in ${offer.pid}, does not exist on node ${node.name}`);
  }
  // Output offsets are known only from the image: the relay is set at the end.
  let relay: OutputRelay | null = null;
  const sink: OutputRelay = {
    get offsets() {
      return (relay as OutputRelay).offsets;
    },
    write: (stream, data) => (relay as OutputRelay).write(stream, data),
    flush: () => (relay as OutputRelay).flush(),
  };
  // Instantiated now, while the source still runs: downtime does not pay for it.
  const links = node.links.endpoint(offer.pid);
  const net = node.table.netLink(offer.pid, offer.home);
  const proc = await GuestProcess.standby(node.modules.get(offer.module_sha256), node.table.ioFor(sink, links, net), offer.module_name);
  // Memory never shrinks: take the size it had when offered in one step, and
  // have the kernel back every page now, while the source still runs, rather
  // than fault them in one by one during the downtime.
  proc.growTo(offer.memory_bytes);
  // Post-copy drops all of it anyway; hybrid's round writes into it like pre-copy.
  if (offer.strategy !== "post-copy" && !populate(new Uint8Array(proc.memory.buffer), offer.memory_bytes)) await proc.reserve(offer.memory_bytes);
  let view = new Uint8Array(proc.memory.buffer);
  let incoming: IncomingPostCopy | null = null;
  return {
    write(offset, data) {
      const end = offset + data.length;
      if (end > view.length) {
        proc.growTo(Math.ceil(end / WASM_PAGE_BYTES) * WASM_PAGE_BYTES);
        view = new Uint8Array(proc.memory.buffer);
      }
      view.set(data, offset);
    },
    async finish(image, handover) {
      // Every page is already in place (written as it arrived), or, with a
      // handover, comes from the source once the process runs.
      proc.growTo(image.memory.size_bytes);
      relay = node.table.relayFor(offer.pid, offer.home, { stdout: image.streams.stdout_bytes, stderr: image.streams.stderr_bytes });
      if (handover !== null && incoming === null) throw new FerryError("ERR_MIGRATION_PROTOCOL", "post-copy image without its handover");
      if (image.links !== undefined) links.load(parseLinkState(image.links));
      // Its inbox, outbox count and any move it asked for, before it runs.
      links.start(node.name, true);
      // Its connections get their slots before it runs; the home sends their bytes from where the image is.
      net.start(socket_positions(parse_wasi_state(image.wasi)));
      try {
        await proc.activate(image, { preopens });
      } catch (err: unknown) {
        net.detach();
        throw err;
      }
      // It runs here: messages for it are taken here from now on.
      node.links.add(links);
      const { pid, home, module_sha256, module_name, args, env, dirs } = offer;
      node.table.adopt({ pid, home, module_sha256, module_name, args, env, dirs, listen: offer.listen ?? [], proc, relay, links, net });
    },
    handover(h) {
      // Registered and dropped now, while the image is still on its way: the
      // page channel attaches meanwhile, so the restore's first faults are served at once.
      proc.growTo(h.remote_bytes);
      view = new Uint8Array(proc.memory.buffer);
      incoming = new IncomingPostCopy(node.postcopy, offer.pid, proc, h, { recover_ms: offer.recover_ms ?? RECOVER_MS_DEFAULT, source: offer.source });
    },
    abort: () => proc.terminate(),
  };
}

/** Fetches a module from the node at `address`, which must be `expect` (the migration's authenticated source). */
function fetchModule(dialer: Dialer, address: string, expect: ExpectedPeer | undefined, sha256: string): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    dialer
      .request(address, { method: "GET", path: `/v1/modules/${sha256}`, agent: false }, expect)
      .on("response", (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new FerryError("ERR_MODULE_MISSING", `node ${address} does not have module ${sha256}`));
          return;
        }
        const parts: Buffer[] = [];
        let total = 0;
        res.on("data", (c: Buffer) => {
          total += c.length;
          if (total > MODULE_BYTES_MAX) res.destroy(new Error("module too large"));
          else parts.push(c);
        });
        res.on("end", () => resolve(Buffer.concat(parts)));
        res.on("error", reject);
      })
      .on("error", (err) => reject(peerError(address, err)))
      .end();
  });
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
  const b = (body ?? {}) as { to?: unknown; strategy?: unknown; max_downtime_ms?: unknown; recover_ms?: unknown; push_bytes_per_s?: unknown };
  if (typeof b.to !== "string") throw new FerryError("ERR_BAD_REQUEST", "to: the destination node's name is required");
  const strategy = (b.strategy ?? "stop-copy") as Strategy;
  if (!STRATEGIES.includes(strategy)) throw new FerryError("ERR_BAD_REQUEST", `strategy must be one of ${STRATEGIES.join(", ")}`);
  const max_downtime_ms = typeof b.max_downtime_ms === "number" && b.max_downtime_ms > 0 ? b.max_downtime_ms : MAX_DOWNTIME_MS_DEFAULT;
  const recover_ms = b.recover_ms ?? RECOVER_MS_DEFAULT;
  if (typeof recover_ms !== "number" || !(recover_ms > 0 && recover_ms <= RECOVER_MS_MAX)) throw new FerryError("ERR_BAD_REQUEST", `recover_ms must be a number of milliseconds up to ${RECOVER_MS_MAX}`);
  const push = b.push_bytes_per_s;
  if (push !== undefined && (typeof push !== "number" || !(push > 0))) throw new FerryError("ERR_BAD_REQUEST", "push_bytes_per_s must be a positive number");
  if (b.to === node.name) throw new FerryError("ERR_BAD_REQUEST", `${pid} already runs on ${node.name}`);
  if (node.postcopy.forPid(pid) !== undefined) throw new FerryError("ERR_PROCESS_STATE", `${pid} is still receiving pages from its last post-copy migration; try again when they are all here`);
  if (running.migrating) throw new FerryError("ERR_PROCESS_STATE", `${pid} is already being migrated`);
  const address = await node.addressOf(b.to);
  running.migrating = true;
  const { pid: _p, home, module_sha256, module_name, args, env, dirs, listen } = running;
  const to = b.to;
  let located: Promise<void> | null = null;
  const moved = (): Promise<void> => {
    // The destination runs it: this copy is not the process any more, and
    // messages that still come here follow it.
    node.table.release(pid);
    node.links.moved(pid, to);
    located ??= setLocation(node, pid, home, to);
    return located;
  };
  try {
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
          memory_bytes: running.proc.memory.buffer.byteLength,
          recover_ms,
        },
        connect: () => connectData(node.dialer, address, to),
        connectPages: (session) => connectPages(node.dialer, address, session, to),
        flushOutput: () => running.relay.flush(),
        destinationRuns: async () => ((await requestJson(node.dialer, address, "GET", `/v1/internal/running/${pid}`, { expect: nodeNamed(to) })) as { running: boolean }).running,
        resumed: () => void moved().catch(() => undefined),
        links: running.links,
        net: running.net,
        ...(progress !== undefined ? { progress } : {}),
      },
      { strategy, max_downtime_ms, tracker: () => createTracker(node.page_tracker.name), ...(push !== undefined ? { push_bytes_per_s: push } : {}) },
    );
    // Committed: the destination runs it and has all of it. Drop this copy.
    node.table.release(pid);
    running.net.detach();
    await running.proc.terminate();
    await moved();
    return { pid, from: node.name, to, metrics };
  } catch (err: unknown) {
    if (err instanceof FerryError && err.code === "ERR_POSTCOPY_LOST") {
      // Its live state went to the destination, its memory stayed here: gone.
      node.table.release(pid);
      running.net.detach();
      await running.proc.terminate();
      await node.table.reportExit(pid, home, { kind: "lost", message: err.message }).catch(() => undefined);
    }
    throw err;
  } finally {
    running.migrating = false;
  }
}

async function setLocation(node: FerryNode, pid: string, home: string, where: string): Promise<void> {
  const record = node.table.home(pid);
  if (record !== undefined) {
    record.node = where;
    return;
  }
  await requestJson(node.dialer, await node.addressOf(home), "POST", `/v1/internal/location/${pid}`, { body: { node: where }, expect: nodeNamed(home) });
}
