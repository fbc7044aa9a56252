/**
 * `ferry-net/2`: a process's TCP connections between the node that runs it
 * and its home, over one framed connection (an HTTP upgrade to
 * `/v1/internal/net/PID` on the home's control port), opened by the runner.
 *
 * The runner sends HELLO (JSON {@link NetHello}) and waits for ATTACHED; then
 * both sides stream frames. Every frame that names a connection has a fixed
 * binary body (`_net_frames.ts`): stream bytes headed by listener, seq and
 * offset, and the small frames (WRITTEN, CONSUMED, END, ...) likewise, so a
 * relayed request and its reply cost no JSON. Only HELLO, ATTACHED and ERROR
 * are JSON. FLUSH is answered by FLUSHED with its id once every earlier
 * frame was handled, since the home handles frames in order. LANE_ASK is
 * answered by LANE_GRANT: a net lane's ticket and keys (`_net_lanes.ts`),
 * or nothing if the home grants none. A runner may send it right behind
 * its HELLO, before ATTACHED comes: the home reads it once the session is
 * attached.
 */
import { errorField, logger } from "../log/mod.js";
import type { Duplex } from "node:stream";
import type http from "node:http";
import type * as v from "valibot";
import type { Socket } from "node:net";
import { FerryError, isErrorCode, knownCode, PeerError } from "../errors.js";
import { FramedConnection } from "../transport/mod.js";
import { parseJson, type Schema } from "../validate.js";
import { PID_PATTERN } from "../process_spec.js";
import { NetHelloSchema, PeerErrorSchema } from "./_internal_schemas.js";
import { decodeBytes, decodeEnd, decodeOffset, decodeRef, decodeU32, encodeEnd, encodeOffset, encodeRef, encodeU32 } from "./_net_frames.js";
import type { NetDownlink, NetHello, NetHome, NetSession } from "./net_home.js";
import type { NetAttach, NetLaneSocket, NetLine } from "./net_link.js";
import type { ConnRef } from "../wasi/mod.js";
import { upgrade } from "./_upgrade.js";
import { nodeNamed, type Dialer } from "./_dialer.js";
import { dialNetLane, type NetLaneDoors } from "./_net_lanes.js";
import { decodeGrant, encodeGrant } from "./_page_tickets.js";

/** The upgrade token of the connection channel (2: binary bodies for every frame that names a connection). */
export const NET_PROTOCOL = "ferry-net/2";
/** Path prefix of the connection channel; the pid follows. */
export const NET_PATH = "/v1/internal/net/";

/** How long attaching and flushing may take. */
const ANSWER_TIMEOUT_MS = 5000;
/**
 * How long the home waits for a line's HELLO. A migration's destination
 * opens its line before the image comes (`openNetChannel`), so that the
 * connection's handshakes are no part of what a client waits through, and
 * says HELLO once the process lands there: a stop-copy's image, or a
 * pre-copy's rounds, may take that long. A line that says nothing by then is
 * closed (and the destination opens a new one when it lands).
 */
const HELLO_TIMEOUT_MS = 30_000;
/** Largest stream bytes in one frame. */
const CHUNK_BYTES = 256 * 1024;

export const Frame = {
  hello: 1,
  send: 2,
  shutdown: 3,
  close: 4,
  unlisten: 5,
  consumed: 6,
  flush: 7,
  lane_ask: 8,
  attached: 16,
  arrived: 17,
  data: 18,
  end: 19,
  written: 20,
  flushed: 21,
  superseded: 22,
  error: 23,
  lane_grant: 24,
} as const;

function json(value: unknown): Uint8Array {
  return Buffer.from(JSON.stringify(value));
}

/** A JSON frame checked against its schema: ERR_NET_PROTOCOL otherwise. */
function read<S extends Schema>(schema: S, payload: Uint8Array, what: string): v.InferOutput<S> {
  return parseJson(schema, payload, `ferry-net/2 ${what} frame`, { code: "ERR_NET_PROTOCOL" });
}

/**
 * Longest a WRITTEN or CONSUMED waits for another frame going its way to
 * ride with: in a request-reply exchange the next request or reply follows
 * within that time, so each costs one write and one wake of the other node
 * instead of two. Only the freeing of buffered bytes and the guest's send
 * window wait on it, and never in bulk (NET_ACK_URGENT_BYTES), so it can be
 * long: a client that thinks between requests for longer than a
 * millisecond (any client on a busy machine) then still costs no
 * confirmation of its own per request.
 */
export const NET_ACK_HOLD_MS = 20;
/** Confirmations held at most before they go on their own. */
const ACKS_HELD_MAX = 8;
/**
 * A confirmation that moves its connection's offset this far past the last
 * one sent goes at once: a stream in bulk must never wait on the hold for
 * room in its window.
 */
export const NET_ACK_URGENT_BYTES = 16 * 1024;

/**
 * Frames for one line, gathered while this turn of the event loop runs and
 * written together after its I/O callbacks (one write, one TLS record, one
 * wake of the other node for all of them). Confirmations (WRITTEN,
 * CONSUMED) only wait for another frame, in order with the rest; a newer
 * confirmation of a connection replaces the one still held for it (its
 * offset only grows, so the other side learns the same, sooner).
 */
export class LineOut {
  readonly #conn: FramedConnection;
  readonly #hold_ms: number;
  #frames: { type: number; payload: Uint8Array | Uint8Array[] }[] = [];
  /** Frames queued that are not confirmations: with one, the queue goes this turn. */
  #others = 0;
  #queued = false;
  /**
   * One timer for the hold, left armed across writes (arming and clearing
   * one per request cost more than the rest of the line's work on it):
   * when it fires it writes what has been held long enough, or waits on.
   */
  #hold: NodeJS.Timeout | null = null;
  /** When the oldest confirmation held now was queued (0: none is held). */
  #held_since_ms = 0;
  /** Per connection (`listener.seq`): its confirmation in the queue, not yet written. */
  readonly #held = new Map<string, { frame: { type: number; payload: Uint8Array }; offset: number }>();
  /** Per connection: the offset of the last confirmation written. */
  readonly #sent = new Map<string, number>();
  /** Writes made, and confirmations that rode with another frame (for tests to count). */
  readonly counts = { writes: 0, acks: 0, acks_riding: 0 };

  /** `hold_ms`: longest a confirmation waits (tests lengthen it to see it wait). */
  constructor(conn: FramedConnection, hold_ms = NET_ACK_HOLD_MS) {
    this.#conn = conn;
    this.#hold_ms = hold_ms;
  }

  /** Queues a frame that goes this turn (with the confirmations held before it). */
  frame(type: number, payload: Uint8Array | Uint8Array[]): void {
    this.#frames.push({ type, payload });
    this.#others += 1;
    this.#queue();
  }

  /** A confirmation of `c` up to `offset`: held, unless it moves that connection NET_ACK_URGENT_BYTES or more past the last one written. */
  ack(type: number, c: ConnRef, offset: number): void {
    const k = `${c.listener}.${c.seq}`;
    this.counts.acks += 1;
    const held = this.#held.get(k);
    if (held !== undefined && held.frame.type === type) {
      held.offset = offset;
      encodeOffset(c, offset, held.frame.payload);
    } else {
      const frame = { type, payload: encodeOffset(c, offset) };
      this.#frames.push(frame);
      this.#held.set(k, { frame, offset });
    }
    if (this.#others > 0 || this.#queued) return; // rides with them
    if (offset - (this.#sent.get(k) ?? 0) >= NET_ACK_URGENT_BYTES || this.#held.size >= ACKS_HELD_MAX) {
      this.#queue();
      return;
    }
    if (this.#held_since_ms === 0) this.#held_since_ms = performance.now();
    // Unref'd: a held confirmation must not keep a process alive; a line being closed is flushed first.
    this.#hold ??= setTimeout(() => this.#onHold(), this.#hold_ms).unref();
  }

  /** A connection that ended: its offsets are forgotten. */
  forget(c: ConnRef): void {
    this.#sent.delete(`${c.listener}.${c.seq}`);
  }

  /** Writes what is queued now (before a close, which sends only what was written). */
  flush(): void {
    this.#queued = false;
    this.#held_since_ms = 0;
    if (this.#frames.length === 0) return;
    const frames = this.#frames;
    const acks = frames.length - this.#others;
    this.counts.writes += 1;
    if (this.#others > 0) this.counts.acks_riding += acks;
    this.#frames = [];
    this.#others = 0;
    for (const [k, h] of this.#held) this.#sent.set(k, h.offset);
    this.#held.clear();
    // A broken channel is noticed by its reader, which reattaches and resends from the confirmed offsets.
    this.#conn.sendAll(frames).catch(() => undefined);
  }

  #onHold(): void {
    this.#hold = null;
    if (this.#held_since_ms === 0 || this.#queued) return;
    const left_ms = this.#hold_ms - (performance.now() - this.#held_since_ms);
    if (left_ms <= 0) this.flush();
    else this.#hold = setTimeout(() => this.#onHold(), left_ms).unref();
  }

  #queue(): void {
    if (this.#queued) return;
    this.#queued = true;
    setImmediate(() => {
      if (this.#queued) this.flush();
    });
  }
}

/** Sends stream bytes of `c` in frames of at most CHUNK_BYTES. */
function sendBytes(out: LineOut, type: number, c: ConnRef, offset: number, bytes: Uint8Array): void {
  for (let at = 0; at < bytes.length || at === 0; at += CHUNK_BYTES) {
    out.frame(type, [encodeOffset(c, offset + at), bytes.subarray(at, at + CHUNK_BYTES)]);
    if (bytes.length === 0) break;
  }
}

/** An upgraded connection to a home, not attached yet (HELLO not said). */
export interface NetChannel {
  socket: Duplex;
  head: Uint8Array;
}

/**
 * Runner side, ahead of attaching: the upgraded connection to the home of
 * `pid`, node `home` at `address`, for {@link connectNetLine} to attach on
 * later. Until then the socket's errors are only logged: it is closed by
 * the home if no HELLO comes within HELLO_TIMEOUT_MS.
 */
export async function openNetChannel(dialer: Dialer, address: string, home: string, pid: string): Promise<NetChannel> {
  const { socket, head } = await upgrade(dialer, address, `${NET_PATH}${encodeURIComponent(pid)}`, NET_PROTOCOL, nodeNamed(home));
  // Until a line is made on it, nothing else listens: an error must not go unheard (the line's reader sees what follows).
  socket.on("error", (err: Error) => logger().debug({ pid, err: errorField(err) }, "a prepared connection relay line broke before it was used"));
  return { socket, head };
}

/**
 * Runner side: attaches to the home of `attach.pid`, node `home` at
 * `address`, on `channel` if one was opened ahead (a channel the home has
 * closed meanwhile fails here, like any broken line), else on a new one.
 */
export async function connectNetLine(dialer: Dialer, address: string, home: string, attach: NetAttach & { pid: string }, channel?: NetChannel): Promise<NetLine & { lane(): Promise<NetLaneSocket | null> }> {
  const { pid, hello, down, broken } = attach;
  const { socket, head } = channel ?? (await openNetChannel(dialer, address, home, pid));
  const conn = new FramedConnection(socket, { head: Buffer.from(head) });
  /** Lane grants asked for, answered in order. */
  const grants: { resolve(grant: Uint8Array | null): void; timer: NodeJS.Timeout }[] = [];
  const askGrant = (ask: () => void): Promise<Uint8Array | null> =>
    new Promise<Uint8Array | null>((resolve) => {
      const timer = setTimeout(() => {
        const at = grants.findIndex((g) => g.timer === timer);
        if (at >= 0) grants.splice(at, 1);
        resolve(null);
      }, ANSWER_TIMEOUT_MS);
      grants.push({ resolve, timer });
      ask();
    });
  // A lane wanted at once is asked for with the HELLO: the home grants it as soon as it has attached the session,
  // a round trip sooner than an ask sent once ATTACHED came (after a move, replies go the slower way until it is open).
  let early: Promise<Uint8Array | null> | null = null;
  try {
    if (attach.lane === true && dialer.tls !== null) {
      const hello_sent = conn.send(Frame.hello, json(hello));
      // A failed send is a broken connection: the ATTACHED awaited below fails with it, and the grant is answered null there.
      early = askGrant(() => void conn.send(Frame.lane_ask, new Uint8Array(0)).catch(() => undefined));
      await hello_sent;
    } else await conn.send(Frame.hello, json(hello));
    const first = await conn.next({ timeout_ms: ANSWER_TIMEOUT_MS });
    if (first.type === Frame.error) {
      const e = read(PeerErrorSchema, first.payload, "ERROR");
      const unknown = e.code !== undefined && !isErrorCode(e.code) ? ` [${e.code}]` : "";
      throw new PeerError(knownCode(e.code, "ERR_PEER"), `${e.message ?? "the home refused"}${unknown}`);
    }
    if (first.type !== Frame.attached) throw new FerryError("ERR_NET_PROTOCOL", `expected ATTACHED, got frame type ${first.type}`);
  } catch (err: unknown) {
    for (const g of grants.splice(0)) {
      clearTimeout(g.timer);
      g.resolve(null);
    }
    conn.destroy();
    throw err;
  }
  let detached = false;
  const out = new LineOut(conn);
  const flushes = new Map<number, { resolve(): void; reject(e: Error): void; timer: NodeJS.Timeout }>();
  let next_flush = 1;
  void (async () => {
    try {
      for await (const f of conn) {
        if (f.type === Frame.data) {
          const d = decodeBytes(f.payload, "DATA");
          down.data(d.conn, d.offset, d.bytes);
        } else if (f.type === Frame.written) {
          const m = decodeOffset(f.payload, "WRITTEN");
          down.written(m, m.offset);
        } else if (f.type === Frame.arrived) down.arrived(decodeRef(f.payload, "ARRIVED"));
        else if (f.type === Frame.end) {
          const m = decodeEnd(f.payload);
          down.end(m, m.how);
        } else if (f.type === Frame.flushed) {
          const id = decodeU32(f.payload, "FLUSHED");
          const p = flushes.get(id);
          flushes.delete(id);
          if (p !== undefined) {
            clearTimeout(p.timer);
            p.resolve();
          }
        } else if (f.type === Frame.lane_grant) {
          const g = grants.shift();
          if (g !== undefined) {
            clearTimeout(g.timer);
            g.resolve(f.payload.length === 0 ? null : f.payload);
          }
        } else if (f.type === Frame.superseded) {
          detached = true;
          down.superseded();
          break;
        }
      }
    } catch (err: unknown) {
      // Broken, or a bad frame from the home (it is not believed any more): handled below, as a broken line.
      logger().debug({ err: errorField(err) }, "a connection relay line to a home broke");
    }
    conn.destroy();
    for (const p of flushes.values()) {
      clearTimeout(p.timer);
      p.reject(new FerryError("ERR_PEER_UNREACHABLE", `the connection channel to the home of ${pid} broke`));
    }
    flushes.clear();
    for (const g of grants.splice(0)) {
      clearTimeout(g.timer);
      g.resolve(null);
    }
    if (!detached) {
      detached = true;
      broken();
    }
  })();
  const send = (type: number, body: Uint8Array): void => {
    // As in sendBytes: a broken channel is noticed by the reader above.
    if (!detached) out.frame(type, body);
  };
  return {
    send: (c, offset, bytes) => {
      if (!detached) sendBytes(out, Frame.send, c, offset, bytes);
    },
    shutdown: (c, offset) => send(Frame.shutdown, encodeOffset(c, offset)),
    close: (c, offset) => {
      send(Frame.close, encodeOffset(c, offset));
      out.forget(c);
    },
    unlisten: (listener) => send(Frame.unlisten, encodeU32(listener)),
    consumed: (c, offset) => {
      if (!detached) out.ack(Frame.consumed, c, offset);
    },
    flush: () =>
      new Promise<void>((resolve, reject) => {
        if (detached) {
          reject(new FerryError("ERR_PEER_UNREACHABLE", `no connection channel to the home of ${pid}`));
          return;
        }
        const id = next_flush;
        // A u32 on the wire: ids wrap, and stay unique while fewer than 2^32 flushes wait.
        next_flush = (next_flush + 1) >>> 0;
        const timer = setTimeout(() => {
          flushes.delete(id);
          reject(new FerryError("ERR_PEER_UNREACHABLE", `the home of ${pid} did not confirm its connections' data`));
        }, ANSWER_TIMEOUT_MS);
        flushes.set(id, { resolve, reject, timer });
        send(Frame.flush, encodeU32(id));
      }),
    lane: async () => {
      if (detached || dialer.tls === null) return null;
      // The grant asked for with the HELLO, once; any later lane is asked for now.
      const asked = early ?? askGrant(() => send(Frame.lane_ask, new Uint8Array(0)));
      early = null;
      const bytes = await asked;
      if (bytes === null || detached) return null;
      const grant = decodeGrant(bytes);
      return { socket: await dialNetLane(address, grant.ticket), key: grant.keys.to_destination };
    },
    detach: () => {
      detached = true;
      out.flush();
      // Detached either way; a close that fails leaves nothing to undo.
      void conn.close().catch(() => undefined);
    },
  };
}

/** Home side: an upgrade to `NET_PATH + pid`; `homeOf` finds the process's NetHome here. */
export function acceptNetLine(req: http.IncomingMessage, socket: Duplex, head: Buffer, homeOf: (pid: string) => NetHome | undefined, lanes: NetLaneDoors | null = null): void {
  if ((req.headers.upgrade ?? "").toLowerCase() !== NET_PROTOCOL) {
    socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n");
    return;
  }
  // A pid is plain ASCII: no escapes to decode (a malformed one would throw in the server's event handler).
  const pid = (req.url ?? "").slice(NET_PATH.length);
  if (!PID_PATTERN.test(pid)) {
    socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n");
    return;
  }
  (socket as Socket).setNoDelay?.(true);
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: ${NET_PROTOCOL}\r\nconnection: Upgrade\r\n\r\n`);
  const conn = new FramedConnection(socket, { head });
  void (async () => {
    let up: NetSession | null = null;
    const home = homeOf(pid);
    try {
      const hello = await conn.next({ timeout_ms: HELLO_TIMEOUT_MS });
      if (hello.type !== Frame.hello) throw new FerryError("ERR_NET_PROTOCOL", `expected HELLO, got frame type ${hello.type}`);
      if (home === undefined) throw new FerryError("ERR_NO_SUCH_PROCESS", `this node is not the home of a listening process ${pid}`);
      const { known, conns } = read(NetHelloSchema, hello.payload, "HELLO");
      await conn.send(Frame.attached, json({}));
      let done = false;
      const out = new LineOut(conn);
      const send = (type: number, body: Uint8Array): void => {
        // A broken channel ends the loop below; the runner reattaches.
        if (!done) out.frame(type, body);
      };
      const down: NetDownlink = {
        arrived: (c) => send(Frame.arrived, encodeRef(c)),
        data: (c, offset, bytes) => {
          if (!done) sendBytes(out, Frame.data, c, offset, bytes);
        },
        end: (c, how) => send(Frame.end, encodeEnd(c, how)),
        written: (c, offset) => {
          if (!done) out.ack(Frame.written, c, offset);
        },
        superseded: () => {
          send(Frame.superseded, new Uint8Array(0));
          out.flush();
          done = true;
          // Superseded either way; a close that fails leaves nothing to undo.
          void conn.close().catch(() => undefined);
        },
      };
      up = home.attach({ known, conns }, down);
      for await (const f of conn) {
        if (f.type === Frame.send) {
          const d = decodeBytes(f.payload, "SEND");
          up.send(d.conn, d.offset, d.bytes);
        } else if (f.type === Frame.consumed) {
          const m = decodeOffset(f.payload, "CONSUMED");
          up.consumed(m, m.offset);
        } else if (f.type === Frame.shutdown) {
          const m = decodeOffset(f.payload, "SHUTDOWN");
          up.shutdown(m, m.offset);
        } else if (f.type === Frame.close) {
          const m = decodeOffset(f.payload, "CLOSE");
          up.close(m, m.offset);
          out.forget(m);
        } else if (f.type === Frame.unlisten) up.unlisten(decodeU32(f.payload, "UNLISTEN"));
        else if (f.type === Frame.flush) send(Frame.flushed, encodeU32(decodeU32(f.payload, "FLUSH")));
        else if (f.type === Frame.lane_ask) {
          const grant = lanes?.issue(home, up.id) ?? null;
          send(Frame.lane_grant, grant === null ? new Uint8Array(0) : encodeGrant(grant));
        }
      }
    } catch (err: unknown) {
      if (up === null) {
        const code = err instanceof FerryError ? err.code : "ERR_NET_PROTOCOL";
        // The link may be what failed: the runner then learns of it from the closed connection.
        await conn.send(Frame.error, json({ code, message: (err as Error).message })).catch(() => undefined);
        logger().info({ code, err: errorField(err) }, "refused a connection relay line");
      }
    }
    if (up !== null) home?.detach(up);
    conn.destroy();
  })();
}
