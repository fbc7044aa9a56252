/**
 * Link deliveries between nodes (docs/links.md) over one long-lived framed
 * connection per peer: an HTTP upgrade to `ferry-links/2` on the control
 * port, then DELIVER frames answered by ANSWER frames matched by id (binary
 * bodies, `_link_frames.ts`). Requests are independent (the receiver takes
 * only the next numbers of each sender, whatever order batches arrive in),
 * so the accepting side answers each as soon as it is done, in any order. Frames a side has to send in one turn
 * of the event loop go out together, in one write. A broken connection fails
 * its pending requests; senders retry, and the receiver's sequence numbers
 * make the retry harmless.
 */
import { errorField, logger } from "../log/mod.js";
import { FerryError } from "../errors.js";
import type { Batch, DeliverAnswer } from "../links/mod.js";
import { FramedConnection } from "../transport/mod.js";
import { decodeAnswer, decodeDeliver, encodeAnswer, encodeDeliver } from "./_link_frames.js";

/** The upgrade token of the link channel (2: binary DELIVER and ANSWER bodies, `_link_frames.ts`). */
export const LINKS_PROTOCOL = "ferry-links/2";
/** Path of the link channel. */
export const LINKS_PATH = "/v1/internal/links";
/** How long a delivery waits for its answer before the sender tries again. */
const ANSWER_TIMEOUT_MS = 5000;
/**
 * How often a channel looks for deliveries past their answer's timeout: one
 * timer per channel, not one per delivery (arming and clearing a timer per
 * message costs more than the rest of the channel's work on it).
 */
const ANSWER_SWEEP_MS = 250;

const DELIVER = 1;
const ANSWER = 2;

/**
 * Frames for one connection, gathered while this turn of the event loop
 * runs and written together after its I/O callbacks (one TLS record and one
 * syscall for all the deliveries or answers of a burst, instead of one
 * each). Nothing waits on a timer: the write follows in the same turn.
 */
class Outgoing {
  readonly #conn: FramedConnection;
  #frames: { type: number; payload: Uint8Array }[] = [];
  #failed: ((err: Error) => void)[] = [];

  constructor(conn: FramedConnection) {
    this.#conn = conn;
  }

  /** Queues a frame; `failed` learns if it could not be written. */
  push(type: number, payload: Uint8Array, failed: (err: Error) => void): void {
    if (this.#frames.length === 0) setImmediate(() => this.#flush());
    this.#frames.push({ type, payload });
    this.#failed.push(failed);
  }

  #flush(): void {
    const failed = this.#failed;
    const frames = this.#frames;
    this.#frames = [];
    this.#failed = [];
    this.#conn.sendAll(frames).catch((err: unknown) => {
      const e = err instanceof Error ? err : new Error(String(err));
      for (const f of failed) f(e);
    });
  }
}

interface Pending {
  resolve(a: DeliverAnswer): void;
  reject(e: Error): void;
  deadline_ms: number;
}

class Channel {
  readonly #conn: FramedConnection;
  readonly #out: Outgoing;
  /** In the order sent, so in deadline order too. */
  readonly #pending = new Map<number, Pending>();
  // Unref'd: a channel's timer must not keep a stopping node alive; pending deliveries are failed when it closes.
  readonly #sweep = setInterval(() => this.#expire(), ANSWER_SWEEP_MS).unref();
  #next = 1;

  constructor(conn: FramedConnection, onEnd: () => void) {
    this.#conn = conn;
    this.#out = new Outgoing(conn);
    void (async () => {
      try {
        for await (const frame of conn) {
          if (frame.type !== ANSWER) continue;
          const { id, answer } = decodeAnswer(frame.payload);
          const p = this.#pending.get(id);
          if (p === undefined) continue;
          this.#pending.delete(id);
          p.resolve(answer);
        }
      } catch (err: unknown) {
        // Broken, or a bad frame (the peer is not to be believed any more): fail what waits; senders retry on a new channel.
        logger().debug({ err: errorField(err) }, "a link channel to a peer broke");
      }
      clearInterval(this.#sweep);
      for (const p of this.#pending.values()) p.reject(new FerryError("ERR_PEER_UNREACHABLE", "the link channel closed"));
      this.#pending.clear();
      onEnd();
    })();
  }

  deliver(pid: string, batch: Batch): Promise<DeliverAnswer> {
    const id = this.#next;
    // A u32 on the wire: ids wrap, and stay unique while fewer than 2^32 deliveries wait.
    this.#next = (this.#next + 1) >>> 0;
    return new Promise((resolve, reject) => {
      let body: Buffer;
      try {
        body = encodeDeliver(id, pid, batch);
      } catch (err: unknown) {
        reject(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      this.#pending.set(id, { resolve, reject, deadline_ms: performance.now() + ANSWER_TIMEOUT_MS });
      this.#out.push(DELIVER, body, (err) => {
        if (!this.#pending.delete(id)) return; // failed already, as the channel closed
        reject(err);
      });
    });
  }

  close(): void {
    this.#conn.destroy();
  }

  #expire(): void {
    const now = performance.now();
    for (const [id, p] of this.#pending) {
      if (p.deadline_ms > now) break;
      this.#pending.delete(id);
      p.reject(new FerryError("ERR_PEER_UNREACHABLE", "no answer on the link channel"));
    }
  }
}

/** One channel per peer address, opened on first use and again after a break. */
export class LinkChannels {
  readonly #open: (address: string, name: string) => Promise<FramedConnection>;
  readonly #channels = new Map<string, Promise<Channel>>();

  /** `open` connects to node `name` at `address`. */
  constructor(open: (address: string, name: string) => Promise<FramedConnection>) {
    this.#open = open;
  }

  async deliver(address: string, name: string, pid: string, batch: Batch): Promise<DeliverAnswer> {
    let channel = this.#channels.get(address);
    if (channel === undefined) {
      channel = this.#open(address, name).then((conn) => new Channel(conn, () => this.#channels.delete(address)));
      this.#channels.set(address, channel);
      // Whoever awaits the channel below sees why it did not open; here it is only forgotten, so the next send tries anew.
      channel.catch(() => this.#channels.delete(address));
    }
    return (await channel).deliver(pid, batch);
  }

  close(): void {
    // A channel that never opened has nothing to close (its failure went to its senders).
    for (const c of this.#channels.values()) void c.then((ch) => ch.close(), () => undefined);
    this.#channels.clear();
  }
}

/** Serves a link channel a peer opened: each DELIVER is handed to `receive` and answered when done. */
export function serveLinkChannel(conn: FramedConnection, receive: (pid: string, batch: Batch) => Promise<DeliverAnswer>): void {
  const out = new Outgoing(conn);
  const answer = (id: number, a: DeliverAnswer): void => {
    // A closed channel: the sender times out and retries, and sequence numbers make that harmless.
    out.push(ANSWER, encodeAnswer(id, a), () => undefined);
  };
  void (async () => {
    try {
      for await (const frame of conn) {
        if (frame.type !== DELIVER) throw new FerryError("ERR_LINK_PROTOCOL", `unexpected frame type ${frame.type} on a link channel`);
        const { id, pid, batch } = decodeDeliver(frame.payload);
        receive(pid, batch).then(
          (a) => answer(id, a),
          (err: unknown) => {
            // "moving" makes the sender retry: right for a process that is landing or leaving, harmless otherwise.
            logger().debug({ pid, err: errorField(err) }, "a link delivery failed here; the sender retries");
            answer(id, { kind: "moving" });
          },
        );
      }
    } catch {
      // A bad frame or a broken link: the peer reconnects and retries.
    }
    conn.destroy();
  })();
}
