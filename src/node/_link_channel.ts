/**
 * Link deliveries between nodes (docs/links.md) over one long-lived framed
 * connection per peer: an HTTP upgrade to `ferry-links/1` on the control
 * port, then DELIVER frames answered by ANSWER frames matched by id. Requests
 * are independent (a sender has at most one batch in flight per receiver), so
 * the accepting side answers each as soon as it is done, in any order. A
 * broken connection fails its pending requests; senders retry, and the
 * receiver's sequence numbers make the retry harmless.
 */
import { errorField, logger } from "../log/mod.js";
import { FerryError } from "../errors.js";
import type { Batch, DeliverAnswer } from "../links/mod.js";
import { FramedConnection } from "../transport/mod.js";
import { parseJson } from "../validate.js";
import { AnswerFrameSchema, DeliverFrameSchema } from "./_internal_schemas.js";

/** The upgrade token of the link channel. */
export const LINKS_PROTOCOL = "ferry-links/1";
/** Path of the link channel. */
export const LINKS_PATH = "/v1/internal/links";
/** How long a delivery waits for its answer before the sender tries again. */
const ANSWER_TIMEOUT_MS = 5000;

const DELIVER = 1;
const ANSWER = 2;

/** A batch as JSON on the wire (also the body of `POST /v1/internal/deliver/PID`). */
export interface WireBatch {
  from: string;
  messages: { seq: number; data: string }[];
}

/** A batch as JSON on the wire. */
export function toWire(batch: Batch): WireBatch {
  return { from: batch.from, messages: batch.messages.map((m) => ({ seq: m.seq, data: Buffer.from(m.data).toString("base64") })) };
}

interface Pending {
  resolve(a: DeliverAnswer): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

class Channel {
  readonly #conn: FramedConnection;
  readonly #pending = new Map<number, Pending>();
  #next = 1;

  constructor(conn: FramedConnection, onEnd: () => void) {
    this.#conn = conn;
    void (async () => {
      try {
        for await (const frame of conn) {
          if (frame.type !== ANSWER) continue;
          const { id, answer } = parseJson(AnswerFrameSchema, frame.payload, "ANSWER frame", { code: "ERR_LINK_PROTOCOL" });
          const p = this.#pending.get(id);
          if (p === undefined) continue;
          this.#pending.delete(id);
          clearTimeout(p.timer);
          p.resolve(answer);
        }
      } catch (err: unknown) {
        // Broken, or a bad frame (the peer is not to be believed any more): fail what waits; senders retry on a new channel.
        logger().debug({ err: errorField(err) }, "a link channel to a peer broke");
      }
      for (const p of this.#pending.values()) {
        clearTimeout(p.timer);
        p.reject(new FerryError("ERR_PEER_UNREACHABLE", "the link channel closed"));
      }
      this.#pending.clear();
      onEnd();
    })();
  }

  deliver(pid: string, batch: Batch): Promise<DeliverAnswer> {
    const id = this.#next;
    this.#next += 1;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new FerryError("ERR_PEER_UNREACHABLE", "no answer on the link channel"));
      }, ANSWER_TIMEOUT_MS);
      this.#pending.set(id, { resolve, reject, timer });
      this.#conn.send(DELIVER, Buffer.from(JSON.stringify({ id, pid, ...toWire(batch) }))).catch((err: unknown) => {
        clearTimeout(timer);
        this.#pending.delete(id);
        reject(err instanceof Error ? err : new Error(String(err)));
      });
    });
  }

  close(): void {
    this.#conn.destroy();
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
export function serveLinkChannel(conn: FramedConnection, receive: (pid: string, body: WireBatch) => Promise<DeliverAnswer>): void {
  void (async () => {
    try {
      for await (const frame of conn) {
        if (frame.type !== DELIVER) throw new FerryError("ERR_LINK_PROTOCOL", `unexpected frame type ${frame.type} on a link channel`);
        const request = parseJson(DeliverFrameSchema, frame.payload, "DELIVER frame", { code: "ERR_LINK_PROTOCOL" });
        const id = request.id;
        void receive(request.pid, { from: request.from, messages: request.messages })
          .catch((err: unknown): DeliverAnswer => {
            // "moving" makes the sender retry: right for a process that is landing or leaving, harmless otherwise.
            logger().debug({ pid: request.pid, err: errorField(err) }, "a link delivery failed here; the sender retries");
            return { kind: "moving" };
          })
          .then((answer) => conn.send(ANSWER, Buffer.from(JSON.stringify({ id, answer }))))
          // A closed channel: the sender times out and retries, and sequence numbers make that harmless.
          .catch(() => undefined);
      }
    } catch {
      // A bad frame or a broken link: the peer reconnects and retries.
    }
    conn.destroy();
  })();
}
