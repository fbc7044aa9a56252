/**
 * Link deliveries between nodes (docs/links.md) over one long-lived framed
 * connection per pair of nodes, used both ways: an HTTP upgrade to
 * `ferry-links/3` on the control port, opened by whichever node sends
 * first, then DELIVER frames answered by ANSWER frames matched by id
 * (binary bodies, `_link_frames.ts`), from either side. Requests are
 * independent (the receiver takes only the next numbers of each sender,
 * whatever order batches arrive in), so each side answers as soon as it is
 * done, in any order.
 *
 * Frames a side has for the connection in one turn of the event loop go out
 * together, in one write. An answer waits a little (ANSWER_HOLD_MS) for a
 * delivery going the same way to ride with: in a request-answer exchange the
 * reply follows its request's answer within that time, so each message costs
 * one write and one wake of the other node instead of two. An answer a
 * sender may be waiting on goes at once: one that stops it (it took less
 * than its batch), or one of many held for a sender streaming one way. A broken
 * connection fails its pending requests; senders retry, and the receiver's
 * sequence numbers make the retry harmless.
 */
import { errorField, logger } from "../log/mod.js";
import { FerryError } from "../errors.js";
import type { Batch, DeliverAnswer } from "../links/mod.js";
import { FramedConnection } from "../transport/mod.js";
import { decodeAnswer, decodeDeliver, encodeAnswer, encodeDeliver } from "./_link_frames.js";

/** The upgrade token of the link channel (3: deliveries both ways on one connection per pair of nodes; binary bodies, `_link_frames.ts`). */
export const LINKS_PROTOCOL = "ferry-links/3";
/** Path of the link channel; the opening node names itself in `?node=` (with TLS its certificate names it instead). */
export const LINKS_PATH = "/v1/internal/links";
/** How long a delivery waits for its answer before the sender tries again. */
const ANSWER_TIMEOUT_MS = 5000;
/**
 * How often a channel looks for deliveries past their answer's timeout: one
 * timer per channel, not one per delivery (arming and clearing a timer per
 * message costs more than the rest of the channel's work on it).
 */
const ANSWER_SWEEP_MS = 250;
/**
 * Longest an answer waits for a delivery to ride with. Long enough for a
 * receiving guest woken by the delivery to reply, also on a busy machine
 * (tens of microseconds on an idle one, milliseconds on a loaded one: with
 * a shorter hold most answers there go alone, one more write and one more
 * wake of the other node per message); short beside the sender's answer
 * timeout. What it delays is only the sender's freeing of messages already
 * delivered, and never a sender that waits for room (ANSWERED_MESSAGES_HELD_MAX).
 */
export const ANSWER_HOLD_MS = 5;
/**
 * Answers held at most before they go on their own: half the batches a
 * sender may have on their way (`BATCHES_IN_FLIGHT_MAX`), so a sender
 * streaming one way never waits on the hold.
 */
export const ANSWERS_HELD_MAX = 4;
/**
 * Held answers go once the deliveries they answer carried this many
 * messages: a quarter of the undelivered messages a guest may have before
 * its `send` blocks (`OUTBOX_MAX`, 256), so a sender streaming one way in
 * large batches never waits on the hold for room.
 */
export const ANSWERED_MESSAGES_HELD_MAX = 64;

/** What a node does with a delivery that reached it from node `peer` (null: a peer that could not be named): its answer. */
export type Receive = (pid: string, batch: Batch, peer: string | null) => Promise<DeliverAnswer>;

const DELIVER = 1;
const ANSWER = 2;

/**
 * Frames for one connection, gathered while this turn of the event loop
 * runs and written together after its I/O callbacks (one TLS record and one
 * syscall for all the deliveries and answers of a burst, instead of one
 * each). Deliveries go in the turn they are made; answers wait for one, or
 * for ANSWER_HOLD_MS, or until ANSWERS_HELD_MAX of them are held.
 */
class Outgoing {
  readonly #conn: FramedConnection;
  #frames: { type: number; payload: Uint8Array }[] = [];
  #failed: ((err: Error) => void)[] = [];
  /** Frames queued that are deliveries: with none, only the hold's timer or the count of answers sends them. */
  #deliveries = 0;
  #flush_queued = false;
  /** One timer for the hold, left armed across writes (one per message cost more than the rest of the channel's work on it). */
  #hold: NodeJS.Timeout | null = null;
  /** When the oldest answer held now was queued (0: none is held). */
  #held_since_ms = 0;
  /** Messages of the deliveries whose answers are held now. */
  #held_messages = 0;
  readonly #hold_ms: number;
  /** What went out (for tests, benchmarks and `inspect` to count, whatever the machine's load). */
  readonly counts: ChannelCounts = { writes: 0, deliveries: 0, answers: 0, answers_riding: 0 };

  constructor(conn: FramedConnection, hold_ms: number) {
    this.#conn = conn;
    this.#hold_ms = hold_ms;
  }

  /** Queues a delivery, written after this turn; `failed` learns if it could not be written. */
  deliver(payload: Uint8Array, failed: (err: Error) => void): void {
    this.#frames.push({ type: DELIVER, payload });
    this.#failed.push(failed);
    this.#deliveries += 1;
    this.#queueFlush();
  }

  /**
   * Queues the answer to a delivery of `messages` messages, written with the
   * next delivery or once held long enough, or this turn if `urgent` (a
   * lost one is retried by its sender).
   */
  answer(payload: Uint8Array, messages: number, urgent: boolean): void {
    this.#frames.push({ type: ANSWER, payload });
    this.#failed.push(() => undefined);
    this.#held_messages += messages;
    if (this.#deliveries > 0 || this.#flush_queued) return; // rides with them
    if (urgent || this.#frames.length >= ANSWERS_HELD_MAX || this.#held_messages >= ANSWERED_MESSAGES_HELD_MAX) {
      this.#queueFlush();
      return;
    }
    if (this.#held_since_ms === 0) this.#held_since_ms = performance.now();
    // Unref'd: a held answer must not keep a process alive (its connection does while it is open).
    this.#hold ??= setTimeout(() => this.#onHold(), this.#hold_ms).unref();
  }

  /** Drops what was not written (the connection is gone). */
  stop(): void {
    if (this.#hold !== null) clearTimeout(this.#hold);
    this.#hold = null;
    this.#held_since_ms = 0;
  }

  #onHold(): void {
    this.#hold = null;
    if (this.#held_since_ms === 0 || this.#flush_queued) return;
    const left_ms = this.#hold_ms - (performance.now() - this.#held_since_ms);
    if (left_ms <= 0) this.#flush();
    else this.#hold = setTimeout(() => this.#onHold(), left_ms).unref();
  }

  #queueFlush(): void {
    if (this.#flush_queued) return;
    this.#flush_queued = true;
    setImmediate(() => this.#flush());
  }

  #flush(): void {
    this.#flush_queued = false;
    this.#held_since_ms = 0;
    this.#held_messages = 0;
    if (this.#frames.length === 0) return;
    const failed = this.#failed;
    const frames = this.#frames;
    this.#frames = [];
    this.#failed = [];
    this.counts.writes += 1;
    this.counts.deliveries += this.#deliveries;
    this.counts.answers += frames.length - this.#deliveries;
    if (this.#deliveries > 0) this.counts.answers_riding += frames.length - this.#deliveries;
    this.#deliveries = 0;
    this.#conn.sendAll(frames).catch((err: unknown) => {
      const e = err instanceof Error ? err : new Error(String(err));
      for (const f of failed) f(e);
    });
  }
}

/** Frames and writes a channel sent. */
export interface ChannelCounts {
  /** Writes (each one or more frames, one syscall and TLS record where they fit). */
  writes: number;
  deliveries: number;
  answers: number;
  /** Answers that went in a write with a delivery. */
  answers_riding: number;
}

interface Pending {
  resolve(a: DeliverAnswer): void;
  reject(e: Error): void;
  deadline_ms: number;
}

/** One connection to a peer node: deliveries both ways, each answered by id. */
class Channel {
  readonly #conn: FramedConnection;
  readonly #out: Outgoing;
  /** In the order sent, so in deadline order too. */
  readonly #pending = new Map<number, Pending>();
  // Unref'd: a channel's timer must not keep a stopping node alive; pending deliveries are failed when it closes.
  readonly #sweep = setInterval(() => this.#expire(), ANSWER_SWEEP_MS).unref();
  #next = 1;
  /** Resolves once the connection has ended and what waited on it has failed. */
  readonly ended: Promise<void>;

  /** `peer` names the node at the other end (null: it could not be named), for `receive`. */
  constructor(conn: FramedConnection, receive: Receive, peer: string | null, hold_ms = ANSWER_HOLD_MS) {
    this.#conn = conn;
    this.#out = new Outgoing(conn, hold_ms);
    this.ended = this.#read(receive, peer);
  }

  /** What went out on this connection. */
  get counts(): ChannelCounts {
    return this.#out.counts;
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
      this.#out.deliver(body, (err) => {
        if (!this.#pending.delete(id)) return; // failed already, as the channel closed
        reject(err);
      });
    });
  }

  close(): void {
    this.#conn.destroy();
  }

  async #read(receive: Receive, peer: string | null): Promise<void> {
    try {
      for await (const frame of this.#conn) {
        if (frame.type === ANSWER) {
          const { id, answer } = decodeAnswer(frame.payload);
          const p = this.#pending.get(id);
          if (p === undefined) continue; // timed out already: its sender has moved on
          this.#pending.delete(id);
          p.resolve(answer);
        } else if (frame.type === DELIVER) {
          const { id, pid, batch } = decodeDeliver(frame.payload);
          const count = batch.messages.length;
          const last = batch.messages[count - 1]?.seq ?? 0;
          receive(pid, batch, peer).then(
            // Taking less than the batch stops its sender until it hears: it goes at once.
            (a) => this.#out.answer(encodeAnswer(id, a), count, a.kind !== "accepted" || a.upto < last),
            (err: unknown) => {
              // "moving" makes the sender retry: right for a process that is landing or leaving, harmless otherwise.
              logger().debug({ pid, err: errorField(err) }, "a link delivery failed here; the sender retries");
              this.#out.answer(encodeAnswer(id, { kind: "moving" }), count, true);
            },
          );
        } else {
          throw new FerryError("ERR_LINK_PROTOCOL", `unexpected frame type ${frame.type} on a link channel`);
        }
      }
    } catch (err: unknown) {
      // Broken, or a bad frame (the peer is not to be believed any more): fail what waits; senders retry on a new channel.
      logger().debug({ err: errorField(err) }, "a link channel to a peer broke");
    }
    this.#conn.destroy();
    this.#out.stop();
    clearInterval(this.#sweep);
    for (const p of this.#pending.values()) p.reject(new FerryError("ERR_PEER_UNREACHABLE", "the link channel closed"));
    this.#pending.clear();
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

/** Knobs of {@link LinkChannels}. */
export interface LinkChannelsOptions {
  /** Longest an answer waits for a delivery to ride with (default ANSWER_HOLD_MS). */
  answer_hold_ms?: number;
}

/**
 * One channel per peer node, used both ways: opened on first use (or taken
 * from the peer that opened it first) and again after a break. Two nodes
 * that open one to each other at the same moment each keep their own for
 * their deliveries and serve the other's: both work, each one way.
 */
export class LinkChannels {
  readonly #open: (address: string, name: string) => Promise<FramedConnection>;
  readonly #receive: Receive;
  /** Per peer node's name: the channel deliveries to it take. */
  readonly #channels = new Map<string, Promise<Channel>>();
  readonly #all = new Set<Channel>();
  readonly #hold_ms: number;
  #closed = false;

  /** `open` connects to node `name` at `address`; `receive` takes the deliveries a peer sends. */
  constructor(open: (address: string, name: string) => Promise<FramedConnection>, receive: Receive, options: LinkChannelsOptions = {}) {
    this.#open = open;
    this.#receive = receive;
    this.#hold_ms = options.answer_hold_ms ?? ANSWER_HOLD_MS;
  }

  /** Sends `batch` for `pid` to node `name` at `address`; resolves with its answer. */
  async deliver(address: string, name: string, pid: string, batch: Batch): Promise<DeliverAnswer> {
    let channel = this.#channels.get(name);
    if (channel === undefined) {
      const opening: Promise<Channel> = this.#open(address, name).then((conn) => this.#serve(name, conn, () => opening));
      channel = opening;
      this.#channels.set(name, opening);
      // Whoever awaits the channel below sees why it did not open; here it is only forgotten, so the next send tries anew.
      opening.catch(() => this.#forget(name, opening));
    }
    return (await channel).deliver(pid, batch);
  }

  /**
   * Serves a channel peer node `name` opened (null: a peer that could not be
   * named), and sends this node's deliveries to it there too if none is open.
   */
  accept(name: string | null, conn: FramedConnection): void {
    if (name === null || this.#channels.has(name)) {
      this.#serve(name, conn, () => null);
      return;
    }
    let entry: Promise<Channel> | null = null;
    const channel = this.#serve(name, conn, () => entry);
    entry = Promise.resolve(channel);
    this.#channels.set(name, entry);
  }

  /** Writes made on the channel to node `name` (for tests to count); 0 with none. */
  async writes(name: string): Promise<number> {
    const c = this.#channels.get(name);
    return c === undefined ? 0 : (await c).counts.writes;
  }

  /** What went out on the channels open now, summed (`inspect`; benchmarks count writes per message with it). */
  counts(): ChannelCounts & { channels: number } {
    const sum = { channels: this.#all.size, writes: 0, deliveries: 0, answers: 0, answers_riding: 0 };
    for (const c of this.#all) {
      sum.writes += c.counts.writes;
      sum.deliveries += c.counts.deliveries;
      sum.answers += c.counts.answers;
      sum.answers_riding += c.counts.answers_riding;
    }
    return sum;
  }

  close(): void {
    this.#closed = true;
    for (const c of this.#all) c.close();
    this.#all.clear();
    this.#channels.clear();
  }

  /** A channel on `conn`; once it ends it is forgotten as the channel to `name` if `entry` still is that. */
  #serve(name: string | null, conn: FramedConnection, entry: () => Promise<Channel> | null): Channel {
    const channel = new Channel(conn, this.#receive, name, this.#hold_ms);
    // One that opened after close(): its deliveries fail at once, and nothing is left open.
    if (this.#closed) channel.close();
    else this.#all.add(channel);
    void channel.ended.then(() => {
      this.#all.delete(channel);
      const e = entry();
      if (name !== null && e !== null) this.#forget(name, e);
    });
    return channel;
  }

  /** Forgets `entry` as the channel to `name`, if it still is (a newer one stays). */
  #forget(name: string, entry: Promise<Channel>): void {
    if (this.#channels.get(name) === entry) this.#channels.delete(name);
  }
}

/** Serves a link channel a peer opened, on its own (no deliveries of this side go on it): each DELIVER is handed to `receive` and answered when done. */
export function serveLinkChannel(conn: FramedConnection, receive: Receive): void {
  void new Channel(conn, receive, null);
}
