/**
 * The home node's side of a process's TCP service: the real listening
 * sockets and every connection accepted on them, for the whole life of the
 * process, wherever it runs.
 *
 * Each connection is two byte streams. Incoming bytes are kept from the
 * offset the process last said it consumed, so whoever runs it next can be
 * sent them again from the offset its image holds; outgoing bytes carry the
 * offset the guest sent them at, and only bytes past what was already
 * written reach the socket, so each byte reaches the peer exactly once, in
 * order, however often the process moved. The peer sees one connection that
 * never resets: the socket itself never moves.
 *
 * One runner is attached at a time (a *session*); attaching a new one (the
 * process landed elsewhere) supersedes the old, whose later calls are ignored.
 *
 * Outgoing bytes may come two ways: through the session's channel, and on
 * the process's net lane (`_net_lanes.ts`), which its worker writes to
 * itself. So bytes can come past a gap (a lane's, ahead of the channel's
 * older ones); they are held, within the guest's send window, and written
 * once the gap fills.
 */
import net from "node:net";
import { FerryError } from "../errors.js";
import { splitHostPort } from "../process_spec.js";
import type { ConnRef } from "../wasi/mod.js";

/** Incoming bytes a connection may have unconsumed before the home stops reading its socket. */
export const NET_HOME_WINDOW_BYTES = 1024 * 1024;
/** Outgoing bytes a socket may have buffered before the home stops crediting the guest's window. */
const SOCKET_BUFFER_HIGH_BYTES = 256 * 1024;
/** How long a socket the guest closed may take to send its last bytes. */
const LINGER_MS = 30_000;
/**
 * Outgoing bytes a connection may hold past a gap. The guest has at most
 * its send window (256 KiB) unconfirmed, and the home confirms only what it
 * wrote, so a runner that keeps to the protocol never comes near; past
 * this, bytes are dropped, and come again with the runner's next resend.
 */
export const NET_HOME_HELD_BYTES_MAX = 1024 * 1024;

/** What the home tells the node that runs the process. */
export interface NetDownlink {
  /** A connection arrived. */
  arrived(conn: ConnRef): void;
  /** Incoming bytes at stream offset `offset`. */
  data(conn: ConnRef, offset: number, bytes: Uint8Array): void;
  /** The incoming stream ends after what was sent: the peer closed its side, or the connection broke. */
  end(conn: ConnRef, how: "eof" | "reset"): void;
  /** The home took the outgoing stream up to `offset`; the guest's send window opens by that much. */
  written(conn: ConnRef, offset: number): void;
  /** Another runner is attached now (or the process ended): this one hears nothing more. */
  superseded(): void;
}

/** A runner's uplink as the home made it: `id` names its session (a net lane is granted to one). */
export interface NetSession extends NetUplink {
  readonly id: number;
}

/** What a runner says when it attaches. */
export interface NetHello {
  /** Per listener, how many connections it knows of: later ones are announced to it. */
  known: number[];
  /** The connections it holds, with the incoming offset it has bytes up to. */
  conns: (ConnRef & { received: number })[];
}

/** What a runner tells the home. */
export interface NetUplink {
  /** Outgoing bytes, starting at stream offset `offset`. */
  send(conn: ConnRef, offset: number, bytes: Uint8Array): void;
  /** The outgoing stream ends at `offset`. */
  shutdown(conn: ConnRef, offset: number): void;
  /** The guest closed the connection; its outgoing stream ends at `offset`. */
  close(conn: ConnRef, offset: number): void;
  /** The guest closed listening socket `listener`. */
  unlisten(listener: number): void;
  /** The guest consumed the incoming stream up to `offset`: the home may forget what lies before. */
  consumed(conn: ConnRef, offset: number): void;
}

/** Parses "HOST:PORT" (IPv6 hosts in brackets); throws ERR_BAD_REQUEST. */
export function parseListenAddress(text: string): { host: string; port: number } {
  const address = splitHostPort(text);
  if (address === null) throw new FerryError("ERR_BAD_REQUEST", `listen address ${JSON.stringify(text)} is not HOST:PORT`);
  return address;
}

/** One accepted connection. */
class HomeConn implements ConnRef {
  readonly listener: number;
  readonly seq: number;
  readonly socket: net.Socket;
  /** Incoming bytes from `in_base` on. */
  chunks: Buffer[] = [];
  in_base = 0;
  in_total = 0;
  ended: "eof" | "reset" | null = null;
  out_written = 0;
  /** Outgoing bytes that came past a gap, by offset: written once it fills. */
  held: { offset: number; bytes: Uint8Array }[] = [];
  held_bytes = 0;
  /** The outgoing stream ends here (the guest shut down or closed). */
  out_end: number | null = null;
  closed_by_guest = false;
  paused = false;
  waiting_drain = false;

  constructor(listener: number, seq: number, socket: net.Socket) {
    this.listener = listener;
    this.seq = seq;
    this.socket = socket;
  }

  /** Forgets incoming bytes before `offset`. */
  trim(offset: number): void {
    while (this.chunks.length > 0) {
      const first = this.chunks[0] as Buffer;
      if (this.in_base + first.length > offset) {
        if (offset > this.in_base) {
          this.chunks[0] = first.subarray(offset - this.in_base);
          this.in_base = offset;
        }
        return;
      }
      this.chunks.shift();
      this.in_base += first.length;
    }
    this.in_base = Math.max(this.in_base, Math.min(offset, this.in_total));
  }

  /** Incoming bytes from `offset` on, as kept. */
  *from(offset: number): Generator<[number, Buffer]> {
    let at = this.in_base;
    for (const chunk of this.chunks) {
      const end = at + chunk.length;
      if (end > offset) yield [Math.max(at, offset), chunk.subarray(Math.max(0, offset - at))];
      at = end;
    }
  }
}

/** Told of the bytes a home relays: in from clients, out to them (the node's metrics). */
export type RelayCounter = (direction: "in" | "out", bytes: number) => void;

/** The listening sockets and connections of one process. */
export class NetHome {
  readonly pid: string;
  readonly #servers: net.Server[];
  /** Bound addresses, "HOST:PORT", one per listener. */
  readonly addresses: string[];
  readonly #conns = new Map<string, HomeConn>();
  readonly #next: number[];
  #session: { id: number; down: NetDownlink } | null = null;
  #sessions = 0;
  #closed = false;
  readonly #counted: RelayCounter;

  private constructor(pid: string, servers: net.Server[], counted: RelayCounter) {
    this.pid = pid;
    this.#counted = counted;
    this.#servers = servers;
    this.addresses = servers.map((s) => {
      const a = s.address() as net.AddressInfo;
      return a.family === "IPv6" ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
    });
    this.#next = servers.map(() => 0);
    servers.forEach((server, listener) => server.on("connection", (socket) => this.#accept(listener, socket)));
  }

  /** Binds every address (port 0: any free port). Throws ERR_LISTEN, with nothing left bound, if one fails. */
  static async listen(pid: string, specs: readonly string[], counted: RelayCounter = () => undefined): Promise<NetHome> {
    const servers: net.Server[] = [];
    try {
      for (const spec of specs) {
        const { host, port } = parseListenAddress(spec);
        const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false });
        await new Promise<void>((resolve, reject) => {
          server.once("error", reject);
          server.listen({ host, port, exclusive: true }, () => {
            server.off("error", reject);
            resolve();
          });
        });
        servers.push(server);
      }
    } catch (err: unknown) {
      for (const s of servers) s.close();
      if (err instanceof FerryError) throw err;
      throw new FerryError("ERR_LISTEN", `cannot listen on ${specs.join(", ")}: ${(err as Error).message}`, { cause: err });
    }
    return new NetHome(pid, servers, counted);
  }

  /** Connections open now. */
  get connections(): number {
    return this.#conns.size;
  }

  /**
   * Attaches the runner that says `hello`, superseding any other; returns
   * its uplink. The runner hears at once what it lacks: the outgoing offsets
   * written, incoming bytes past what it has, ends, and connections it does
   * not know yet.
   */
  attach(hello: NetHello, down: NetDownlink): NetSession {
    const old = this.#session;
    const id = ++this.#sessions;
    this.#session = { id, down };
    old?.down.superseded();
    if (this.#closed) {
      down.superseded();
      return this.#uplink(id);
    }
    const held = new Set<string>();
    for (const c of hello.conns) {
      const key = `${c.listener}.${c.seq}`;
      held.add(key);
      const conn = this.#conns.get(key);
      if (conn === undefined || conn.closed_by_guest) {
        down.end(c, "reset");
        continue;
      }
      down.written(conn, conn.out_written);
      this.#replay(conn, Math.max(c.received, conn.in_base), down);
    }
    for (const conn of [...this.#conns.values()].sort((a, b) => a.seq - b.seq)) {
      const key = `${conn.listener}.${conn.seq}`;
      if (held.has(key) || conn.closed_by_guest) continue;
      if (conn.seq < (hello.known[conn.listener] ?? 0)) {
        // Known to the runner and not held: the guest closed it while its close was on the way.
        this.#guestClosed(conn, conn.out_written);
        continue;
      }
      down.arrived(conn);
      this.#replay(conn, conn.in_base, down);
    }
    return this.#uplink(id);
  }

  /**
   * Outgoing bytes from a net lane of session `session`: written as
   * through its uplink. False if that session is over (the lane is no use
   * any more, and closes).
   */
  fromLane(session: number, conn: ConnRef, offset: number, bytes: Uint8Array): boolean {
    if (this.#session?.id !== session) return false;
    const c = this.#conns.get(`${conn.listener}.${conn.seq}`);
    if (c !== undefined) this.#write(c, offset, bytes);
    return true;
  }

  /** The runner of session `uplink` is gone (its link broke); connections wait for the next one. */
  detach(uplink: NetUplink): void {
    if (this.#session !== null && (uplink as { id?: number }).id === this.#session.id) this.#session = null;
  }

  /** The process ended: stop listening; each connection gets what the guest sent, then its end. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of this.#servers) s.close();
    for (const conn of this.#conns.values()) this.#guestClosed(conn, conn.out_written);
    this.#session?.down.superseded();
    this.#session = null;
  }

  #uplink(id: number): NetSession {
    const live = (): boolean => this.#session?.id === id;
    const find = (c: ConnRef): HomeConn | undefined => (live() ? this.#conns.get(`${c.listener}.${c.seq}`) : undefined);
    return {
      id,
      send: (conn, offset, bytes) => {
        const c = find(conn);
        if (c !== undefined) this.#write(c, offset, bytes);
      },
      shutdown: (conn, offset) => {
        const c = find(conn);
        if (c === undefined) return;
        c.out_end = offset;
        this.#maybeEnd(c);
      },
      close: (conn, offset) => {
        const c = find(conn);
        if (c !== undefined) this.#guestClosed(c, offset);
      },
      unlisten: (listener) => {
        if (live()) this.#servers[listener]?.close();
      },
      consumed: (conn, offset) => {
        const c = find(conn);
        if (c === undefined || offset <= c.in_base) return;
        c.trim(offset);
        if (c.paused && c.in_total - c.in_base <= NET_HOME_WINDOW_BYTES / 2) {
          c.paused = false;
          c.socket.resume();
        }
      },
    };
  }

  #accept(listener: number, socket: net.Socket): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    const seq = this.#next[listener] ?? 0;
    this.#next[listener] = seq + 1;
    const conn = new HomeConn(listener, seq, socket);
    this.#conns.set(`${listener}.${seq}`, conn);
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => {
      const offset = conn.in_total;
      conn.chunks.push(chunk);
      conn.in_total += chunk.length;
      this.#counted("in", chunk.length);
      this.#session?.down.data(conn, offset, chunk);
      if (conn.in_total - conn.in_base > NET_HOME_WINDOW_BYTES && !conn.paused) {
        conn.paused = true;
        socket.pause();
      }
    });
    socket.on("end", () => this.#ended(conn, "eof"));
    socket.on("error", () => this.#ended(conn, "reset"));
    socket.on("close", () => {
      this.#ended(conn, "reset");
      if (conn.closed_by_guest) this.#conns.delete(`${listener}.${seq}`);
    });
    this.#session?.down.arrived(conn);
  }

  #ended(conn: HomeConn, how: "eof" | "reset"): void {
    if (conn.ended !== null) return;
    conn.ended = how;
    if (!conn.closed_by_guest) this.#session?.down.end(conn, how);
  }

  #replay(conn: HomeConn, from: number, down: NetDownlink): void {
    for (const [offset, bytes] of conn.from(from)) down.data(conn, offset, bytes);
    if (conn.ended !== null) down.end(conn, conn.ended);
  }

  #write(conn: HomeConn, offset: number, bytes: Uint8Array): void {
    if (conn.socket.destroyed) return;
    // Past a gap: a lane's, ahead of older bytes still on the channel.
    if (offset > conn.out_written) {
      this.#hold(conn, offset, bytes);
      return;
    }
    // Before what was written: sent again after a move, a broken link or lane, or both ways.
    if (!this.#put(conn, offset, bytes)) return;
    while (conn.held.length > 0 && (conn.held[0] as { offset: number }).offset <= conn.out_written) {
      const h = conn.held.shift() as { offset: number; bytes: Uint8Array };
      conn.held_bytes -= h.bytes.length;
      this.#put(conn, h.offset, h.bytes);
    }
    this.#credit(conn);
    this.#maybeEnd(conn);
  }

  /** Writes what of `bytes` (at `offset`, not past out_written) is new to the socket; false if none is. */
  #put(conn: HomeConn, offset: number, bytes: Uint8Array): boolean {
    const skip = conn.out_written - offset;
    if (skip >= bytes.length) return false;
    conn.socket.write(skip === 0 ? bytes : bytes.subarray(skip));
    this.#counted("out", bytes.length - skip);
    conn.out_written = offset + bytes.length;
    return true;
  }

  /** Keeps bytes that came past a gap, in offset order, within NET_HOME_HELD_BYTES_MAX. */
  #hold(conn: HomeConn, offset: number, bytes: Uint8Array): void {
    if (bytes.length === 0 || conn.held_bytes + bytes.length > NET_HOME_HELD_BYTES_MAX) return;
    let at = conn.held.length;
    while (at > 0 && (conn.held[at - 1] as { offset: number }).offset > offset) at -= 1;
    const before = conn.held[at - 1];
    // The same bytes again (a resend of what a lane carried already).
    if (before !== undefined && before.offset === offset && before.bytes.length >= bytes.length) return;
    conn.held.splice(at, 0, { offset, bytes });
    conn.held_bytes += bytes.length;
  }

  /** Tells the runner what was written once the socket's buffer is low (so a slow reader slows the guest). */
  #credit(conn: HomeConn): void {
    if (conn.socket.writableLength <= SOCKET_BUFFER_HIGH_BYTES) {
      this.#session?.down.written(conn, conn.out_written);
      return;
    }
    if (conn.waiting_drain) return;
    conn.waiting_drain = true;
    conn.socket.once("drain", () => {
      conn.waiting_drain = false;
      this.#credit(conn);
    });
  }

  #maybeEnd(conn: HomeConn): void {
    if (conn.out_end !== null && conn.out_written >= conn.out_end && !conn.socket.writableEnded) conn.socket.end();
  }

  #guestClosed(conn: HomeConn, offset: number): void {
    conn.closed_by_guest = true;
    conn.out_end = Math.min(conn.out_end ?? offset, offset);
    conn.chunks = [];
    conn.socket.resume();
    this.#maybeEnd(conn);
    if (conn.socket.destroyed) this.#conns.delete(`${conn.listener}.${conn.seq}`);
    else setTimeout(() => conn.socket.destroy(), LINGER_MS).unref();
  }
}
