/**
 * Net lanes (docs/networking.md, "Net lanes"): the bytes a process running
 * away from its home sends on its TCP connections, written by the
 * process's own worker on a connection to the home, so that a relayed reply
 * wakes the home's thread only, and not the running node's thread first.
 *
 * Opening one (the runner's node, R; the home, H; nodes with TLS and the
 * native addon only):
 * 1. R asks on the process's `ferry-net/2` channel (mutual TLS): LANE_ASK.
 *    H answers LANE_GRANT, a one-time ticket and fresh keys (the page
 *    channel's, `_page_tickets.ts`), and remembers the channel's session.
 * 2. R dials H's address in plain TCP and presents PAGE_DATA_MAGIC and the
 *    ticket (the front sorts it to the net lane doors); H answers
 *    NET_LANE_GO.
 * 3. R hands the worker a duplicate of the socket and the key of records
 *    to H (`GuestProcess.offerNetLane`, `src/runtime/_net_lane_writer.ts`);
 *    the worker writes each of the guest's sends as a sealed record, and
 *    still posts it to R's thread, which keeps the bytes until H confirms
 *    them on the channel. H opens the records and writes their bytes as it
 *    writes the channel's (`NetHome.fromLane`), by offset.
 *
 * Nothing comes back on a lane. If it fails, or the channel's session ends
 * (a move, a broken channel), R drops the lane and sends every byte the
 * home has not confirmed again on the channel; the home writes each byte
 * once, whichever way it came first.
 *
 * Records are the page channel's (`src/memory/page_records.ts`); each holds
 * one frame, a frame being u32 body length, u8 type (1 SEND) and
 * `ferry-net/2`'s BYTES body (`_net_frames.ts`).
 */
import type net from "node:net";
import { FerryError } from "../errors.js";
import { errorField, logger } from "../log/mod.js";
import { RecordDirection, RecordOpener } from "../memory/mod.js";
import type { GuestProcess } from "../runtime/mod.js";
import { LANE_FRAME_HEAD_BYTES } from "../runtime/_lane_writer.js";
import { NetLaneFrame } from "../runtime/_net_lane_writer.js";
import { awaitGo } from "./_bulk_doors.js";
import { connectTcp } from "./_dialer.js";
import { decodeBytes } from "./_net_frames.js";
import { PAGE_DATA_MAGIC, TicketDoors, type PageGrant } from "./_page_tickets.js";
import type { NetHome } from "./net_home.js";

/** What a net lane door answers once it took a connection: the worker writes records only after it. */
export const NET_LANE_GO = Buffer.from("FRYNETGO", "latin1");
/** Net lanes a node serves at most (processes it is home to, running elsewhere): a socket and a few KiB each. */
export const NET_LANES_SERVED_MAX = 4096;
/** Longest wait for a net lane's door to answer. */
const NET_LANE_DIAL_MS = 5000;
/** How often a lane being closed looks again whether its worker is out of `write`. */
const NET_LANE_CLOSE_RETRY_MS = 1;

/** H's doors for net lanes: a ticket and keys per lane asked for, and the process and session each is for. */
export class NetLaneDoors {
  readonly #doors: TicketDoors<{ home: NetHome; session: number }>;
  readonly #counted: (bytes: number) => void;
  /** Stream bytes the lanes served here brought (tests count them; the node's metrics are told each). */
  bytes = 0;
  /** Lanes this node took since it started. */
  accepted = 0;

  /** `counted`: told of the bytes each lane brings (the node's metrics). */
  constructor(options: { served_max?: number; counted?: (bytes: number) => void } = {}) {
    this.#doors = new TicketDoors("net-lane", options.served_max ?? NET_LANES_SERVED_MAX);
    const counted = options.counted ?? (() => undefined);
    this.#counted = (bytes) => {
      this.bytes += bytes;
      counted(bytes);
    };
  }

  /**
   * A door for a lane of session `session` of `home`'s process: its grant,
   * confidential (sent inside mutual TLS). Null once NET_LANES_SERVED_MAX
   * lanes (or `served_max`) are served here: the runner's bytes then go on
   * its channel only.
   */
  issue(home: NetHome, session: number): PageGrant | null {
    return this.#doors.full ? null : this.#doors.issue({ home, session });
  }

  /** Serves a connection that presented `ticket`, if it is a net lane door's; false if not. */
  accept(socket: net.Socket, ticket: Buffer): boolean {
    const taken = this.#doors.accept(socket, ticket, NET_LANE_GO);
    if (taken === null) return false;
    if (taken === "spent") return true;
    this.accepted += 1;
    new NetLaneServer(socket, taken.keys.to_destination, taken.what.home, taken.what.session, this.#counted);
    return true;
  }

  /** Lanes served now. */
  get size(): number {
    return this.#doors.size;
  }

  /** Closes every lane served here (the node stops). */
  close(): void {
    this.#doors.close();
  }
}

/**
 * H's side of one lane: opens the worker's records and writes their bytes
 * to the process's connections. A class, not closures made per lane: V8
 * keeps what it learnt of its code across lanes.
 */
class NetLaneServer {
  readonly #socket: net.Socket;
  readonly #opener: RecordOpener;
  readonly #home: NetHome;
  readonly #session: number;
  readonly #counted: (bytes: number) => void;

  constructor(socket: net.Socket, key: Uint8Array, home: NetHome, session: number, counted: (bytes: number) => void) {
    this.#socket = socket;
    this.#opener = new RecordOpener(key, RecordDirection.to_destination, { native: true });
    this.#home = home;
    this.#session = session;
    this.#counted = counted;
    socket.on("error", () => socket.destroy());
    socket.once("close", () => this.#opener.close());
    socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    socket.resume();
  }

  #onData(chunk: Buffer): void {
    try {
      for (const plain of this.#opener.push(chunk)) {
        let at = 0;
        while (at < plain.length) {
          if (plain.length - at < LANE_FRAME_HEAD_BYTES) throw new FerryError("ERR_NET_PROTOCOL", "a net lane record ends inside a frame's head");
          const len = plain.readUInt32LE(at);
          const type = plain.readUInt8(at + 4);
          at += LANE_FRAME_HEAD_BYTES;
          if (len > plain.length - at) throw new FerryError("ERR_NET_PROTOCOL", "a net lane frame runs past its record");
          if (type !== NetLaneFrame.send) throw new FerryError("ERR_NET_PROTOCOL", `unexpected frame type ${type} on a net lane`);
          const d = decodeBytes(plain.subarray(at, at + len), "net lane SEND");
          at += len;
          if (!this.#home.fromLane(this.#session, d.conn, d.offset, d.bytes)) {
            // Its session is over: whatever else comes on it, the runner sends again on its new channel.
            this.#socket.destroy();
            return;
          }
          this.#counted(d.bytes.length);
        }
      }
    } catch (err: unknown) {
      logger().debug({ pid: this.#home.pid, err: errorField(err) }, "a net lane was dropped");
      this.#socket.destroy();
    }
  }
}

/** Dials H's net lane door `ticket` at `address`; resolves with the socket once it said NET_LANE_GO. */
export async function dialNetLane(address: string, ticket: Uint8Array): Promise<net.Socket> {
  const socket = await connectTcp(address, NET_LANE_DIAL_MS);
  socket.setNoDelay(true);
  socket.write(Buffer.concat([PAGE_DATA_MAGIC, ticket]));
  return await awaitGo(socket, Buffer.alloc(0), address, NET_LANE_GO, "a net lane");
}

/** What the runner's side of a lane needs of its node. */
export interface RunnerLaneOptions {
  socket: net.Socket;
  /** The key of records to the home. */
  key: Uint8Array;
  proc: GuestProcess;
  /** Duplicates the socket's descriptor for the worker (the addon's `dupFd`). */
  dup(fd: number): number;
  /** Closes a descriptor the lane made. */
  closeFd(fd: number): void;
  /** Called once when the lane closes, whatever closed it. */
  closed(): void;
}

let generations = 0;

/** R's end of one process's net lane: offered to the worker, which writes; nothing is read. */
export class RunnerNetLane {
  readonly gen: number;
  readonly #socket: net.Socket;
  readonly #fd: number;
  readonly #proc: GuestProcess;
  readonly #close_fd: (fd: number) => void;
  readonly #closed_cb: () => void;
  #closed = false;

  constructor(o: RunnerLaneOptions) {
    generations = generations >= 0x7fff_ffff ? 1 : generations + 1;
    this.gen = generations;
    this.#socket = o.socket;
    this.#proc = o.proc;
    this.#close_fd = o.closeFd;
    this.#closed_cb = o.closed;
    const fd = (o.socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (typeof fd !== "number" || fd < 0) throw new FerryError("ERR_PEER_UNREACHABLE", "a net lane's socket has no descriptor");
    this.#fd = o.dup(fd);
    // Nothing comes back on a lane but its end.
    o.socket.on("data", () => this.close());
    o.socket.on("error", () => this.close());
    o.socket.on("close", () => this.close());
    o.socket.resume();
    if (!this.#proc.offerNetLane({ gen: this.gen, fd: this.#fd, key: o.key })) {
      this.close();
      return;
    }
  }

  /** Whether the worker may write on it: not closed, and the worker did not fail on it. */
  get open(): boolean {
    return !this.#closed && this.#proc.netLaneBroken !== this.gen;
  }

  /** Ends the lane: the worker's lease is taken back, and the socket closes (its descriptor once the worker is out of `write`). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#proc.revokeNetLane(this.gen);
    this.#socket.destroy();
    this.#closeFdWhenIdle();
    this.#closed_cb();
  }

  #closeFdWhenIdle(): void {
    if (this.#proc.revokeNetLane(this.gen)) {
      this.#close_fd(this.#fd);
      return;
    }
    setTimeout(() => this.#closeFdWhenIdle(), NET_LANE_CLOSE_RETRY_MS);
  }
}
