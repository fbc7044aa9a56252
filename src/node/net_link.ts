/**
 * The running node's side of a process's TCP connections: between the
 * guest's connection slots (`runtime/_net_area.ts`) and the process's home
 * (`net_home.ts`), in this node or reached over a `ferry-net/2` channel.
 *
 * Per connection it keeps the incoming bytes that did not fit the guest's
 * ring, and the outgoing bytes the home has not confirmed: after a broken
 * channel they are sent again from the offset the home reports, and the home
 * drops what it already has. Before a migration the source *flushes* (the
 * home has everything the guest sent) and *freezes* (it does not attach
 * again); the destination attaches with the offsets in the image.
 *
 * Where the line offers one, the guest's outgoing bytes go on a net lane
 * (`_net_lanes.ts`), written by its worker: they are kept here all the same,
 * and sent again on the line when the lane fails, before a FLUSH, and when
 * the line is replaced.
 */
import type net from "node:net";
import { errorField, logger } from "../log/mod.js";
import { End, type GuestProcess, type NetArea, type NetHooks } from "../runtime/mod.js";
import type { ConnFdState, ConnRef, ListenerFdState } from "../wasi/mod.js";
import type { NetDownlink, NetHello, NetUplink } from "./net_home.js";
import { RunnerNetLane } from "./_net_lanes.js";

/** Pause before attaching again after a broken channel. */
const REATTACH_MS = 200;
/**
 * How long the home may stay unreachable before its connections are taken
 * for lost (the home owns the sockets: if it died, they died with it). The
 * guest then sees each of them reset instead of waiting on it forever.
 */
export const NET_HOME_LOST_MS = 30_000;
/** Pause between attempts once the home is taken for lost (the guest's closes still reach it if it comes back). */
const REATTACH_LOST_MS = 1000;
/** Pause before a new net lane after one failed under its worker or was closed by the home. */
const LANE_RETRY_MS = 1000;

/** A net lane's socket to the home, past its door, and the key of its records. */
export interface NetLaneSocket {
  socket: net.Socket;
  key: Uint8Array;
}

/** An attached line to the home. */
export interface NetLine extends NetUplink {
  /** Resolves once the home has processed everything sent before. */
  flush(): Promise<void>;
  /** Detaches (the home keeps the connections for the next runner). */
  detach(): void;
  /** Asks the home for a net lane of this line's session and dials it: null if the home grants none. Absent: the line offers none. */
  lane?(): Promise<NetLaneSocket | null>;
}

/** What a NetLink needs to hand its worker a net lane: the addon's `dupFd`, and a close of what it made. */
export interface NetLaneFds {
  dup(fd: number): number;
  closeFd(fd: number): void;
}

/** What attaching says and where the home's side goes; `broken` is called if the line breaks later. */
export interface NetAttach {
  hello: NetHello;
  down: NetDownlink;
  broken: () => void;
  /** A net lane is wanted at once: the line asks for its grant with the HELLO (`NetLine.lane` then takes it). */
  lane?: boolean;
}

/** Opens a line to the home. */
export type NetConnect = (attach: NetAttach) => Promise<NetLine>;

/** Readying a line ahead of attaching (`prepare`), and letting go of one never used (`unprepare`). */
export interface NetPrepare {
  prepare(): void;
  unprepare(): void;
}

/** One connection as this node holds it. */
interface RunConn extends ConnRef {
  /** Slot in the guest's area, -1 while all are taken. */
  slot: number;
  /** Incoming: the offset the guest consumed up to, and its slot's ring tail when that was seen. */
  base: number;
  tail: number;
  /** Incoming bytes held here: in the ring or waiting for room, up to this offset. */
  have: number;
  backlog: Uint8Array[];
  end: "eof" | "reset" | null;
  /** The end is marked in the slot. */
  end_marked: boolean;
  /** Incoming offset the home was last told is consumed. */
  acked: number;
  /** Outgoing: the home confirmed up to here; bytes after it are kept. */
  written: number;
  /** `laned`: written on the net lane, and not on the line since. */
  unconfirmed: { offset: number; bytes: Uint8Array; laned: boolean }[];
  /** The guest shut its write side at this offset (told again after a reattach). */
  shut_at: number | null;
}

/** Where the guest's streams stood, from an image (or nothing, for a fresh start). */
export interface NetPositions {
  listeners: Pick<ListenerFdState, "listener" | "accepted">[];
  conns: Pick<ConnFdState, "listener" | "seq" | "received" | "sent" | "shut_wr">[];
}

export class NetLink implements NetHooks {
  readonly pid: string;
  readonly #connect: NetConnect;
  #proc: GuestProcess | null = null;
  readonly #conns = new Map<string, RunConn>();
  /** Connections waiting for a free slot, in arrival order. */
  #waiting: RunConn[] = [];
  #known: number[] = [];
  #line: NetLine | null = null;
  #attaching: Promise<void> | null = null;
  #active = false;
  #frozen = false;
  #superseded = false;
  #closed = false;
  /** Guest closes and unlistens made while detached, told on attach (a close after the bytes the home had not confirmed). */
  #closes: { conn: ConnRef; offset: number; unconfirmed: { offset: number; bytes: Uint8Array }[] }[] = [];
  #unlistens: number[] = [];
  readonly #home_lost_ms: number;
  readonly #prepare: NetPrepare | null;
  /** When attaching started to fail, while it does. */
  #unreachable_since: number | null = null;
  /** Net lanes: how to make the worker's descriptor (null: none are opened), the lane open now, one being asked for, a retry planned. */
  readonly #lane_fds: NetLaneFds | null;
  #lane: RunnerNetLane | null = null;
  #lane_asking = false;
  #lane_retry: NodeJS.Timeout | null = null;

  constructor(pid: string, connect: NetConnect, options: { home_lost_ms?: number; prepare?: NetPrepare; lanes?: NetLaneFds } = {}) {
    this.pid = pid;
    this.#connect = connect;
    this.#home_lost_ms = options.home_lost_ms ?? NET_HOME_LOST_MS;
    this.#prepare = options.prepare ?? null;
    this.#lane_fds = options.lanes ?? null;
  }

  /**
   * A process about to land here (a migration's destination, before the
   * image comes): the line to its home is opened now, so that attaching
   * when it lands is one exchange, not a connection's handshakes too.
   */
  prepare(): void {
    this.#prepare?.prepare();
  }

  bind(proc: GuestProcess): void {
    this.#proc = proc;
  }

  get #area(): NetArea {
    if (this.#proc === null) throw new Error("NetLink used before its process was bound");
    return this.#proc.net;
  }

  /**
   * Takes up the guest's streams where `positions` say (before the guest
   * runs: every connection it holds gets its slot now) and attaches to the
   * home if the process has sockets at all.
   */
  start(positions: NetPositions): void {
    if (positions.listeners.length === 0) return;
    this.#active = true;
    for (const l of positions.listeners) this.#known[l.listener] = l.accepted;
    for (const c of positions.conns) {
      const conn = this.#add(c, c.received);
      conn.written = c.sent;
      if (c.shut_wr) conn.shut_at = c.sent;
    }
    this.#attach();
  }

  /** Resolves once the home has everything the guest sent so far; throws if the home cannot be reached. */
  async flush(): Promise<void> {
    if (!this.#active || this.#superseded) return;
    if (this.#line === null) await this.#attach();
    // What the lane carried is sent on the line too, so the FLUSH covers it (the home writes each byte once).
    this.#dropLane();
    await this.#line?.flush();
  }

  /** The process stopped here for a move: no reattaching until {@link resume}. */
  freeze(): void {
    this.#frozen = true;
  }

  /** The move failed and the process runs here again: take its streams up again (the home may have let another runner in). */
  resume(): void {
    this.#frozen = false;
    if (!this.#active || this.#closed) return;
    if (this.#superseded || this.#line === null) {
      this.#superseded = false;
      void this.#attach();
    } else {
      this.#openLane(this.#line);
    }
  }

  /** The process left this node or ended: let go of the home. */
  detach(): void {
    this.#closed = true;
    if (this.#lane_retry !== null) clearTimeout(this.#lane_retry);
    this.#dropLane();
    this.#prepare?.unprepare();
    this.#line?.detach();
    this.#line = null;
  }

  // Hooks: the guest's side, in the order it acted.

  send(conn: ConnRef, offset: number, bytes: Uint8Array, lane = 0): void {
    const c = this.#conns.get(key(conn));
    if (c === undefined) return;
    const open = this.#lane;
    const laned = lane !== 0 && open !== null && open.gen === lane && open.open;
    // The worker failed on its lane (or would not take it): what it carried goes on the line, before these bytes.
    if (!laned && open !== null && !open.open) this.#dropLane();
    c.unconfirmed.push({ offset, bytes, laned });
    if (!laned) this.#line?.send(conn, offset, bytes);
  }

  shutdown(conn: ConnRef, offset: number): void {
    const c = this.#conns.get(key(conn));
    if (c !== undefined) c.shut_at = offset;
    this.#line?.shutdown(conn, offset);
  }

  close(conn: ConnRef, offset: number): void {
    const c = this.#conns.get(key(conn));
    if (c === undefined) return;
    this.#conns.delete(key(conn));
    if (c.slot >= 0) {
      this.#area.free(c.slot);
      this.#place();
    }
    if (this.#line !== null) {
      // What a lane carried of it: on the line too, before the close, since a lane dropped later no longer finds it here.
      for (const u of c.unconfirmed) if (u.laned) this.#line.send(c, u.offset, u.bytes);
      this.#line.close(conn, offset);
    } else {
      this.#closes.push({ conn: { listener: conn.listener, seq: conn.seq }, offset, unconfirmed: c.unconfirmed });
    }
  }

  unlisten(listener: number): void {
    if (this.#line !== null) this.#line.unlisten(listener);
    else this.#unlistens.push(listener);
  }

  read(conn: ConnRef): void {
    const c = this.#conns.get(key(conn));
    if (c === undefined || c.slot < 0) return;
    this.#pump(c);
    this.#ack(c);
  }

  // The home's side.

  #downlink(): NetDownlink & { retire(): void } {
    // Calls from a line that was replaced are dropped.
    let live = true;
    const down: NetDownlink & { retire(): void } = {
      retire: () => {
        live = false;
      },
      arrived: (conn) => {
        if (!live || this.#conns.has(key(conn))) return;
        this.#add(conn, 0);
        this.#known[conn.listener] = Math.max(this.#known[conn.listener] ?? 0, conn.seq + 1);
        this.#proc?.wake();
      },
      data: (conn, offset, bytes) => {
        const c = live ? this.#conns.get(key(conn)) : undefined;
        if (c === undefined || c.end_marked || offset > c.have || offset + bytes.length <= c.have) return;
        c.backlog.push(bytes.subarray(c.have - offset));
        c.have = offset + bytes.length;
        this.#pump(c);
      },
      end: (conn, how) => {
        const c = live ? this.#conns.get(key(conn)) : undefined;
        if (c === undefined || c.end !== null) return;
        c.end = how;
        this.#pump(c);
      },
      written: (conn, offset) => {
        const c = live ? this.#conns.get(key(conn)) : undefined;
        if (c === undefined) return;
        // Only a guest whose send window was full can be waiting for this: waking one that waits for its next request costs a context switch per reply.
        const full = c.slot < 0 || this.#area.room(c.slot) === 0;
        if (c.slot >= 0) this.#area.taken(c.slot, offset - c.written);
        c.written = offset;
        while (c.unconfirmed.length > 0) {
          const first = c.unconfirmed[0] as { offset: number; bytes: Uint8Array };
          if (first.offset + first.bytes.length > offset) break;
          c.unconfirmed.shift();
        }
        if (full) this.#proc?.wake();
      },
      superseded: () => {
        if (!live) return;
        live = false;
        this.#superseded = true;
        this.#line = null;
        this.#dropLane();
      },
    };
    return down;
  }

  #attach(): Promise<void> {
    this.#attaching ??= (async () => {
      for (;;) {
        if (this.#closed || this.#superseded) return;
        const hello: NetHello = {
          known: [...this.#known].map((n) => n ?? 0),
          conns: [...this.#conns.values()].map((c) => ({ listener: c.listener, seq: c.seq, received: c.have })),
        };
        const down = this.#downlink();
        try {
          const line = await this.#connect({
            hello,
            down,
            lane: this.#lane_fds !== null && this.#proc !== null && !this.#frozen,
            broken: () => {
              down.retire();
              if (this.#line === line) {
                this.#line = null;
                // Its session is over at the home: the lane with it (what it carried goes on the next line).
                this.#dropLane();
              }
              if (!this.#closed && !this.#frozen && !this.#superseded) setTimeout(() => void this.#attach(), REATTACH_MS).unref();
            },
          });
          if (this.#closed) {
            line.detach();
            return;
          }
          this.#line = line;
          this.#unreachable_since = null;
          this.#replay(line);
          this.#openLane(line);
          return;
        } catch (err: unknown) {
          if (this.#frozen) throw new Error(`the home of ${this.pid} cannot be reached`, { cause: err });
          const now = Date.now();
          // Retried below; said once when the home first stops answering, and once when it is given up.
          if (this.#unreachable_since === null) logger().warn({ pid: this.pid, err: errorField(err) }, `the home of ${this.pid} does not answer its connection relay; retrying`);
          this.#unreachable_since ??= now;
          const lost = now - this.#unreachable_since >= this.#home_lost_ms;
          if (lost && this.#conns.size > 0) logger().error({ pid: this.pid, home_lost_ms: this.#home_lost_ms }, `the home of ${this.pid} stayed unreachable: its connections are reset`);
          if (lost) this.#homeLost();
          await new Promise((r) => setTimeout(r, lost ? REATTACH_LOST_MS : REATTACH_MS).unref());
        }
      }
    })().finally(() => {
      this.#attaching = null;
    });
    return this.#attaching;
  }

  /** The home stayed unreachable: every connection it held is gone, and the guest is told so. */
  #homeLost(): void {
    for (const c of this.#conns.values()) {
      if (c.end !== null) continue;
      c.end = "reset";
      c.backlog = [];
      this.#pump(c);
    }
  }

  /**
   * Opens a net lane on `line` if it offers one and none is open: asked
   * for, dialled, and offered to the worker. One that cannot be opened
   * leaves the bytes on the line.
   */
  #openLane(line: NetLine): void {
    const fds = this.#lane_fds;
    if (fds === null || line.lane === undefined || this.#lane !== null || this.#lane_asking || this.#frozen || this.#closed || this.#proc === null) return;
    const proc = this.#proc;
    this.#lane_asking = true;
    line
      .lane()
      .then((got) => {
        if (got === null) return;
        if (this.#line !== line || this.#lane !== null || this.#frozen || this.#closed) {
          got.socket.destroy();
          return;
        }
        const lane: RunnerNetLane = new RunnerNetLane({
          socket: got.socket,
          key: got.key,
          proc,
          dup: fds.dup,
          closeFd: fds.closeFd,
          closed: () => {
            if (this.#lane !== lane) return;
            this.#dropLane();
            this.#retryLane(line);
          },
        });
        if (lane.open) this.#lane = lane;
      })
      .catch((err: unknown) => logger().debug({ pid: this.pid, err: errorField(err) }, "a net lane could not be opened; the bytes go on the line"))
      .finally(() => {
        this.#lane_asking = false;
      });
  }

  /** Opens a lane on `line` again in a while, if it is still the line then. */
  #retryLane(line: NetLine): void {
    if (this.#lane_retry !== null || this.#closed) return;
    this.#lane_retry = setTimeout(() => {
      this.#lane_retry = null;
      if (this.#line === line) this.#openLane(line);
    }, LANE_RETRY_MS).unref();
  }

  /** Closes the net lane, if one is open, and sends on the line what it carried that the home has not confirmed. */
  #dropLane(): void {
    const lane = this.#lane;
    if (lane === null) return;
    this.#lane = null;
    const broken = !lane.open;
    lane.close();
    for (const c of this.#conns.values()) {
      for (const u of c.unconfirmed) {
        if (!u.laned) continue;
        u.laned = false;
        this.#line?.send(c, u.offset, u.bytes);
      }
    }
    if (broken && this.#line !== null) this.#retryLane(this.#line);
  }

  /** After attaching: what the home may have missed. */
  #replay(line: NetLine): void {
    for (const c of this.#conns.values()) {
      for (const u of c.unconfirmed) {
        u.laned = false;
        line.send(c, u.offset, u.bytes);
      }
      if (c.shut_at !== null) line.shutdown(c, c.shut_at);
    }
    for (const c of this.#closes.splice(0)) {
      for (const u of c.unconfirmed) line.send(c.conn, u.offset, u.bytes);
      line.close(c.conn, c.offset);
    }
    for (const l of this.#unlistens.splice(0)) line.unlisten(l);
  }

  #add(conn: ConnRef, received: number): RunConn {
    const c: RunConn = {
      listener: conn.listener,
      seq: conn.seq,
      slot: -1,
      base: received,
      tail: 0,
      have: received,
      backlog: [],
      end: null,
      end_marked: false,
      acked: received,
      written: 0,
      unconfirmed: [],
      shut_at: null,
    };
    this.#conns.set(key(c), c);
    this.#waiting.push(c);
    this.#place();
    return c;
  }

  /** Gives waiting connections the free slots, oldest first. */
  #place(): void {
    while (this.#waiting.length > 0) {
      const c = this.#waiting[0] as RunConn;
      if (!this.#conns.has(key(c))) {
        this.#waiting.shift();
        continue;
      }
      const slot = this.#area.claim(c.listener, c.seq);
      if (slot < 0) return;
      this.#waiting.shift();
      c.slot = slot;
      c.tail = 0;
      this.#pump(c);
      this.#proc?.wake();
    }
  }

  /** Moves held bytes into the ring as room allows, then the end. */
  #pump(c: RunConn): void {
    if (c.slot < 0) return;
    const area = this.#area;
    let moved = false;
    while (c.backlog.length > 0) {
      const chunk = c.backlog[0] as Uint8Array;
      const n = area.push(c.slot, chunk);
      if (n > 0) moved = true;
      if (n < chunk.length) {
        c.backlog[0] = chunk.subarray(n);
        break;
      }
      c.backlog.shift();
    }
    if (c.backlog.length === 0 && c.end !== null && !c.end_marked) {
      area.end(c.slot, c.end === "eof" ? End.eof : End.reset);
      c.end_marked = true;
      moved = true;
    }
    area.setNotify(c.slot, c.backlog.length > 0);
    if (moved) this.#proc?.wake();
  }

  /** Tells the home how far the guest read. */
  #ack(c: RunConn): void {
    const tail = this.#area.tail(c.slot);
    c.base += (tail - c.tail) >>> 0;
    c.tail = tail;
    if (c.base > c.acked) {
      c.acked = c.base;
      this.#line?.consumed(c, c.base);
    }
  }
}

function key(conn: ConnRef): string {
  return `${conn.listener}.${conn.seq}`;
}
