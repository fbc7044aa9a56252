/**
 * `ferry-net/1`: a process's TCP connections between the node that runs it
 * and its home, over one framed connection (an HTTP upgrade to
 * `/v1/internal/net/PID` on the home's control port), opened by the runner.
 *
 * The runner sends HELLO (JSON {@link NetHello}) and waits for ATTACHED; then
 * both sides stream frames. Stream bytes travel in binary frames whose first
 * 16 bytes are u32 listener, u32 seq and f64 offset (little-endian); every
 * other frame is JSON. FLUSH {id} is answered by FLUSHED {id} once every
 * earlier frame was handled, since the home handles frames in order.
 */
import { errorField, logger } from "../log/mod.js";
import type { Duplex } from "node:stream";
import type http from "node:http";
import type { Socket } from "node:net";
import type * as v from "valibot";
import { FerryError, isErrorCode, knownCode, PeerError } from "../errors.js";
import { FramedConnection } from "../transport/mod.js";
import { parseJson, type Schema } from "../validate.js";
import { PID_PATTERN } from "../process_spec.js";
import { ConnEndSchema, ConnOffsetSchema, ConnRefSchema, FlushSchema, NetHelloSchema, PeerErrorSchema, UnlistenSchema } from "./_internal_schemas.js";
import type { NetDownlink, NetHello, NetHome, NetUplink } from "./net_home.js";
import type { NetAttach, NetLine } from "./net_link.js";
import type { ConnRef } from "../wasi/mod.js";
import { upgrade } from "./_upgrade.js";
import { nodeNamed, type Dialer } from "./_dialer.js";

/** The upgrade token of the connection channel. */
export const NET_PROTOCOL = "ferry-net/1";
/** Path prefix of the connection channel; the pid follows. */
export const NET_PATH = "/v1/internal/net/";

/** How long attaching and flushing may take. */
const ANSWER_TIMEOUT_MS = 5000;
/** Largest stream bytes in one frame. */
const CHUNK_BYTES = 256 * 1024;

const Frame = {
  hello: 1,
  send: 2,
  shutdown: 3,
  close: 4,
  unlisten: 5,
  consumed: 6,
  flush: 7,
  attached: 16,
  arrived: 17,
  data: 18,
  end: 19,
  written: 20,
  flushed: 21,
  superseded: 22,
  error: 23,
} as const;

const HEAD = 16;

function json(value: unknown): Uint8Array {
  return Buffer.from(JSON.stringify(value));
}

/** A JSON frame checked against its schema: ERR_NET_PROTOCOL otherwise. */
function read<S extends Schema>(schema: S, payload: Uint8Array, what: string): v.InferOutput<S> {
  return parseJson(schema, payload, `ferry-net/1 ${what} frame`, { code: "ERR_NET_PROTOCOL" });
}

/** A stream offset in a binary frame's head: a whole number of bytes, exact as a double. */
function offsetOf(value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new FerryError("ERR_NET_PROTOCOL", `a ferry-net/1 data frame has a bad offset ${value}`);
  return value;
}

/**
 * Longest a WRITTEN or CONSUMED waits for another frame going its way to
 * ride with: in a request-reply exchange the next request or reply follows
 * within that time, so each costs one write and one wake of the other node
 * instead of two. Only the freeing of buffered bytes waits on it.
 */
export const NET_ACK_HOLD_MS = 1;
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
 * CONSUMED) only wait for another frame, in order with the rest.
 */
export class LineOut {
  readonly #conn: FramedConnection;
  readonly #hold_ms: number;
  #frames: { type: number; payload: Uint8Array | Uint8Array[] }[] = [];
  /** Frames queued that are not confirmations: with one, the queue goes this turn. */
  #others = 0;
  #queued = false;
  #hold: NodeJS.Timeout | null = null;
  /** Per connection (`listener.seq`): the offset of the last confirmation queued. */
  readonly #acked = new Map<string, number>();
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

  /** A confirmation of `c` up to `offset`: held, unless it moves that connection's offset by NET_ACK_URGENT_BYTES or more. */
  ack(type: number, c: ConnRef, offset: number): void {
    const k = `${c.listener}.${c.seq}`;
    const last = this.#acked.get(k) ?? 0;
    this.#acked.set(k, offset);
    this.#frames.push({ type, payload: json({ listener: c.listener, seq: c.seq, offset }) });
    this.counts.acks += 1;
    if (this.#others > 0) return; // rides with them
    if (offset - last >= NET_ACK_URGENT_BYTES || this.#frames.length >= ACKS_HELD_MAX) this.#queue();
    else if (this.#hold === null && !this.#queued) this.#hold = setTimeout(() => this.flush(), this.#hold_ms);
  }

  /** A connection that ended: its offsets are forgotten. */
  forget(c: ConnRef): void {
    this.#acked.delete(`${c.listener}.${c.seq}`);
  }

  /** Writes what is queued now (before a close, which sends only what was written). */
  flush(): void {
    this.#queued = false;
    if (this.#hold !== null) clearTimeout(this.#hold);
    this.#hold = null;
    if (this.#frames.length === 0) return;
    const frames = this.#frames;
    const acks = frames.length - this.#others;
    this.counts.writes += 1;
    if (this.#others > 0) this.counts.acks_riding += acks;
    this.#frames = [];
    this.#others = 0;
    // A broken channel is noticed by its reader, which reattaches and resends from the confirmed offsets.
    this.#conn.sendAll(frames).catch(() => undefined);
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
    const head = new DataView(new ArrayBuffer(HEAD));
    head.setUint32(0, c.listener, true);
    head.setUint32(4, c.seq, true);
    head.setFloat64(8, offset + at, true);
    out.frame(type, [new Uint8Array(head.buffer), bytes.subarray(at, at + CHUNK_BYTES)]);
    if (bytes.length === 0) break;
  }
}

function readBytes(payload: Uint8Array): { conn: ConnRef; offset: number; bytes: Uint8Array } {
  if (payload.length < HEAD) throw new FerryError("ERR_NET_PROTOCOL", "a ferry-net/1 data frame is too short");
  const v = new DataView(payload.buffer, payload.byteOffset, HEAD);
  return { conn: { listener: v.getUint32(0, true), seq: v.getUint32(4, true) }, offset: offsetOf(v.getFloat64(8, true)), bytes: payload.subarray(HEAD).slice() };
}

/** Runner side: attaches to the home of `attach.pid`, node `home` at `address`. */
export async function connectNetLine(dialer: Dialer, address: string, home: string, attach: NetAttach & { pid: string }): Promise<NetLine> {
  const { pid, hello, down, broken } = attach;
  const { socket, head } = await upgrade(dialer, address, `${NET_PATH}${encodeURIComponent(pid)}`, NET_PROTOCOL, nodeNamed(home));
  const conn = new FramedConnection(socket, { head: Buffer.from(head) });
  try {
    await conn.send(Frame.hello, json(hello));
    const first = await conn.next({ timeout_ms: ANSWER_TIMEOUT_MS });
    if (first.type === Frame.error) {
      const e = read(PeerErrorSchema, first.payload, "ERROR");
      const unknown = e.code !== undefined && !isErrorCode(e.code) ? ` [${e.code}]` : "";
      throw new PeerError(knownCode(e.code, "ERR_PEER"), `${e.message ?? "the home refused"}${unknown}`);
    }
    if (first.type !== Frame.attached) throw new FerryError("ERR_NET_PROTOCOL", `expected ATTACHED, got frame type ${first.type}`);
  } catch (err: unknown) {
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
          const d = readBytes(f.payload);
          down.data(d.conn, d.offset, d.bytes);
          continue;
        }
        if (f.type === Frame.arrived) down.arrived(read(ConnRefSchema, f.payload, "ARRIVED"));
        else if (f.type === Frame.end) {
          const m = read(ConnEndSchema, f.payload, "END");
          down.end(m, m.how);
        } else if (f.type === Frame.written) {
          const m = read(ConnOffsetSchema, f.payload, "WRITTEN");
          down.written(m, m.offset);
        } else if (f.type === Frame.flushed) {
          const id = read(FlushSchema, f.payload, "FLUSHED").id;
          const p = flushes.get(id);
          flushes.delete(id);
          if (p !== undefined) {
            clearTimeout(p.timer);
            p.resolve();
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
    if (!detached) {
      detached = true;
      broken();
    }
  })();
  const send = (type: number, value: unknown): void => {
    // As in sendBytes: a broken channel is noticed by the reader above.
    if (!detached) out.frame(type, json(value));
  };
  return {
    send: (c, offset, bytes) => {
      if (!detached) sendBytes(out, Frame.send, c, offset, bytes);
    },
    shutdown: (c, offset) => send(Frame.shutdown, { listener: c.listener, seq: c.seq, offset }),
    close: (c, offset) => {
      send(Frame.close, { listener: c.listener, seq: c.seq, offset });
      out.forget(c);
    },
    unlisten: (listener) => send(Frame.unlisten, { listener }),
    consumed: (c, offset) => {
      if (!detached) out.ack(Frame.consumed, c, offset);
    },
    flush: () =>
      new Promise<void>((resolve, reject) => {
        if (detached) {
          reject(new FerryError("ERR_PEER_UNREACHABLE", `no connection channel to the home of ${pid}`));
          return;
        }
        const id = next_flush++;
        const timer = setTimeout(() => {
          flushes.delete(id);
          reject(new FerryError("ERR_PEER_UNREACHABLE", `the home of ${pid} did not confirm its connections' data`));
        }, ANSWER_TIMEOUT_MS);
        flushes.set(id, { resolve, reject, timer });
        send(Frame.flush, { id });
      }),
    detach: () => {
      detached = true;
      out.flush();
      // Detached either way; a close that fails leaves nothing to undo.
      void conn.close().catch(() => undefined);
    },
  };
}

/** Home side: an upgrade to `NET_PATH + pid`; `homeOf` finds the process's NetHome here. */
export function acceptNetLine(req: http.IncomingMessage, socket: Duplex, head: Buffer, homeOf: (pid: string) => NetHome | undefined): void {
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
    let up: NetUplink | null = null;
    const home = homeOf(pid);
    try {
      const hello = await conn.next({ timeout_ms: ANSWER_TIMEOUT_MS });
      if (hello.type !== Frame.hello) throw new FerryError("ERR_NET_PROTOCOL", `expected HELLO, got frame type ${hello.type}`);
      if (home === undefined) throw new FerryError("ERR_NO_SUCH_PROCESS", `this node is not the home of a listening process ${pid}`);
      const { known, conns } = read(NetHelloSchema, hello.payload, "HELLO");
      await conn.send(Frame.attached, json({}));
      let done = false;
      const out = new LineOut(conn);
      const send = (type: number, value: unknown): void => {
        // A broken channel ends the loop below; the runner reattaches.
        if (!done) out.frame(type, json(value));
      };
      const down: NetDownlink = {
        arrived: (c) => send(Frame.arrived, { listener: c.listener, seq: c.seq }),
        data: (c, offset, bytes) => {
          if (!done) sendBytes(out, Frame.data, c, offset, bytes);
        },
        end: (c, how) => send(Frame.end, { listener: c.listener, seq: c.seq, how }),
        written: (c, offset) => {
          if (!done) out.ack(Frame.written, c, offset);
        },
        superseded: () => {
          send(Frame.superseded, {});
          out.flush();
          done = true;
          // Superseded either way; a close that fails leaves nothing to undo.
          void conn.close().catch(() => undefined);
        },
      };
      up = home.attach({ known, conns }, down);
      for await (const f of conn) {
        if (f.type === Frame.send) {
          const d = readBytes(f.payload);
          up.send(d.conn, d.offset, d.bytes);
          continue;
        }
        if (f.type === Frame.shutdown) {
          const m = read(ConnOffsetSchema, f.payload, "SHUTDOWN");
          up.shutdown(m, m.offset);
        } else if (f.type === Frame.close) {
          const m = read(ConnOffsetSchema, f.payload, "CLOSE");
          up.close(m, m.offset);
          out.forget(m);
        } else if (f.type === Frame.unlisten) up.unlisten(read(UnlistenSchema, f.payload, "UNLISTEN").listener);
        else if (f.type === Frame.consumed) {
          const m = read(ConnOffsetSchema, f.payload, "CONSUMED");
          up.consumed(m, m.offset);
        } else if (f.type === Frame.flush) send(Frame.flushed, { id: read(FlushSchema, f.payload, "FLUSH").id });
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
