/**
 * Link deliveries between nodes (docs/links.md) over one long-lived framed
 * connection per peer: an HTTP upgrade to `ferry-links/1` on the control
 * port, then DELIVER frames answered by ANSWER frames matched by id. Requests
 * are independent (a sender has at most one batch in flight per receiver), so
 * the accepting side answers each as soon as it is done, in any order. A
 * broken connection fails its pending requests; senders retry, and the
 * receiver's sequence numbers make the retry harmless.
 */
import { FerryError } from "../errors.js";
import type { Batch, DeliverAnswer } from "../links/mod.js";
import { FramedConnection } from "../transport/mod.js";

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

export function toWire(batch: Batch): WireBatch {
  return { from: batch.from, messages: batch.messages.map((m) => ({ seq: m.seq, data: Buffer.from(m.data).toString("base64") })) };
}

function json(payload: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.length).toString("utf8"));
  } catch (cause: unknown) {
    throw new FerryError("ERR_LINK_PROTOCOL", "a link channel frame is not JSON", { cause });
  }
}

/** An ANSWER frame from the peer (untrusted): its request id and a well-formed answer. */
function parseAnswer(payload: Uint8Array): { id: unknown; answer: DeliverAnswer } {
  const v = json(payload);
  const { id, answer } = (typeof v === "object" && v !== null ? v : {}) as { id?: unknown; answer?: unknown };
  const a = (typeof answer === "object" && answer !== null ? answer : {}) as Record<string, unknown>;
  if (a["kind"] === "moving" || a["kind"] === "unknown" || a["kind"] === "gone") return { id, answer: { kind: a["kind"] } };
  if (a["kind"] === "accepted" && Number.isSafeInteger(a["upto"]) && (a["upto"] as number) >= 0 && typeof a["at"] === "string") {
    return { id, answer: { kind: "accepted", upto: a["upto"] as number, at: a["at"] } };
  }
  throw new FerryError("ERR_LINK_PROTOCOL", "a link channel answer is not {id, answer: {kind, ...}}");
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
          const { id, answer } = parseAnswer(frame.payload);
          if (typeof id !== "number") continue;
          const p = this.#pending.get(id);
          if (p === undefined) continue;
          this.#pending.delete(id);
          clearTimeout(p.timer);
          p.resolve(answer);
        }
      } catch {
        // Broken: fail what waits.
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
      channel.catch(() => this.#channels.delete(address));
    }
    return (await channel).deliver(pid, batch);
  }

  close(): void {
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
        // `?? {}`: a JSON null has no fields to read (other non-objects read as undefined).
        const request = (json(frame.payload) ?? {}) as { id?: unknown; pid?: unknown } & WireBatch;
        if (typeof request.id !== "number" || typeof request.pid !== "string") throw new FerryError("ERR_LINK_PROTOCOL", "a delivery is {id, pid, from, messages}");
        const id = request.id;
        void receive(request.pid, request)
          .catch((): DeliverAnswer => ({ kind: "moving" }))
          .then((answer) => conn.send(ANSWER, Buffer.from(JSON.stringify({ id, answer }))))
          .catch(() => undefined);
      }
    } catch {
      // A bad frame or a broken link: the peer reconnects and retries.
    }
    conn.destroy();
  })();
}
