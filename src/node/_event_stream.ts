/**
 * `GET /v1/events` (docs/operations.md, "Events"): the cluster's events as
 * server-sent events. The node answering sends its own recent events and
 * each of its peers' (asked with `?local=1`), and with `follow=1` stays open
 * and passes on every new one, its own and its peers', as they happen.
 *
 * A slow reader never makes the node hold more than
 * {@link EVENT_STREAM_BUFFER_BYTES_MAX} for it: past that, events are dropped
 * (not queued) and the next one that fits is preceded by a `gap` event
 * saying how many were lost. A peer whose stream breaks is marked with a
 * `gap` event naming it, and asked again every {@link PEER_RETRY_MS}.
 */
import type http from "node:http";
import { FerryError } from "../errors.js";
import { parse } from "../validate.js";
import { SseParser } from "../sse.js";
import { errorField } from "../log/mod.js";
import type { FerryNode } from "./node.js";
import type { NodeEvent } from "./events.js";
import { EventsQuerySchema, queryOf } from "./_api_schemas.js";
import { PEER_TIMEOUT_MS } from "./_http.js";

/**
 * Bytes of events a stream may have waiting in its socket before it drops
 * events: some thousand events, far more than a reader that keeps up ever
 * has waiting, and a bound on what one that does not can cost.
 */
export const EVENT_STREAM_BUFFER_BYTES_MAX = 256 * 1024;

/** Pause before asking a peer whose event stream broke again. */
export const PEER_RETRY_MS = 2000;

/** Time between comment lines on an idle stream, so proxies and the client's TCP see it alive. */
const KEEPALIVE_MS = 15_000;

/** What an {@link EventWriter} writes to: an HTTP response, as far as it is used. */
export type EventSink = Pick<http.ServerResponse, "write" | "writableLength" | "writableEnded" | "destroyed" | "on">;

/** Writes events to one client, dropping them (and saying so) while the client does not keep up. */
export class EventWriter {
  readonly #res: EventSink;
  #dropped = 0;

  constructor(res: EventSink) {
    this.#res = res;
    // A reader that caught up hears of the gap at once, not at the next event.
    res.on("drain", () => this.#flushGap());
  }

  /** Sends one event, or drops it if the client is too far behind. */
  send(name: string, data: string): void {
    if (this.#res.writableEnded || this.#res.destroyed) return;
    if (this.#res.writableLength > EVENT_STREAM_BUFFER_BYTES_MAX) {
      this.#dropped += 1;
      return;
    }
    this.#flushGap();
    this.#res.write(`event: ${name}\ndata: ${data}\n\n`);
  }

  /** Marks a hole in the stream that is not the client's doing (a peer's stream broke). */
  gap(what: Record<string, unknown>): void {
    this.send("gap", JSON.stringify(what));
  }

  #flushGap(): void {
    if (this.#dropped === 0 || this.#res.writableLength > EVENT_STREAM_BUFFER_BYTES_MAX) return;
    const dropped = this.#dropped;
    this.#dropped = 0;
    this.#res.write(`event: gap\ndata: ${JSON.stringify({ dropped, reason: "the reader fell behind" })}\n\n`);
  }
}

/** Serves `GET /v1/events`. */
export async function serveEvents(node: FerryNode, url: URL, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const query = parse(EventsQuerySchema, queryOf(url), "query");
  const follow = query.follow === "1";
  const writer = new EventWriter(res);
  const local = (e: NodeEvent): void => writer.send(e.type, JSON.stringify(e));
  // Subscribed before the recent ones are sent, in the same turn: nothing falls between.
  const unsubscribe = follow ? node.events.subscribe(local) : () => undefined;
  if (unsubscribe === null) throw new FerryError("ERR_QUOTA", `node ${node.name} serves as many event streams as it may; close one or ask another node`);
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
  for (const e of node.events.recent()) local(e);
  const peers = query.local === "1" ? [] : [...node.peers];
  const stop = new AbortController();
  const keepalive = follow ? setInterval(() => res.write(": keepalive\n\n"), KEEPALIVE_MS) : undefined;
  const cleanup = (): void => {
    unsubscribe();
    clearInterval(keepalive);
    stop.abort();
  };
  req.on("close", cleanup);
  res.on("close", cleanup);
  const pulls = peers.map((address) => pullPeer(node, address, follow, writer, stop.signal));
  if (follow) return;
  await Promise.all(pulls);
  cleanup();
  res.end();
}

/**
 * Passes a peer's events on to `writer`: its recent ones, and with `follow`
 * every new one until `signal`, asking again after a break. Never rejects.
 */
async function pullPeer(node: FerryNode, address: string, follow: boolean, writer: EventWriter, signal: AbortSignal): Promise<void> {
  for (;;) {
    try {
      await readPeer(node, address, follow, writer, signal);
      if (!follow || signal.aborted) return;
      throw new Error("the peer ended its event stream");
    } catch (err: unknown) {
      if (signal.aborted) return;
      // The reader is told events of this peer may be missing; the node's own view of the peer is updated (node.down).
      node.notePeer(address, { up: false, reason: err instanceof Error ? err.message : String(err) });
      writer.gap({ peer: address, reason: err instanceof Error ? err.message : String(err) });
      node.log.debug({ address, err: errorField(err) }, "a peer's event stream broke");
      if (!follow) return;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, PEER_RETRY_MS);
        signal.addEventListener("abort", () => {
          clearTimeout(t);
          resolve();
        }, { once: true });
      });
      if (signal.aborted) return;
    }
  }
}

/** One request for a peer's events; resolves when the peer ends the stream. */
function readPeer(node: FerryNode, address: string, follow: boolean, writer: EventWriter, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = node.dialer.request(address, { method: "GET", path: `/v1/events?local=1${follow ? "&follow=1" : ""}`, agent: false });
    // Without follow the peer's answer is short; with it, only connecting is timed (the dialer's), then keepalive watches.
    const deadline = follow ? undefined : setTimeout(() => req.destroy(new Error(`no whole answer within ${PEER_TIMEOUT_MS} ms`)), PEER_TIMEOUT_MS);
    const onAbort = (): void => {
      req.destroy();
      resolve();
    };
    signal.addEventListener("abort", onAbort, { once: true });
    const done = (): void => {
      clearTimeout(deadline);
      signal.removeEventListener("abort", onAbort);
    };
    req.once("socket", (socket) => socket.setKeepAlive(true, 5000));
    req.on("response", (answer) => {
      if (answer.statusCode !== 200) {
        answer.resume();
        done();
        reject(new Error(`the peer answered ${answer.statusCode}`));
        return;
      }
      let up = false;
      const parser = new SseParser();
      answer.on("data", (chunk: Buffer) => {
        let events;
        try {
          events = parser.push(chunk);
        } catch (err: unknown) {
          answer.destroy(err instanceof Error ? err : new Error(String(err)));
          return;
        }
        for (const e of events) {
          if (!up && e.event !== "gap") {
            up = true;
            if (typeof e.data === "string") node.notePeer(address, { up: true, name: peerName(e.data) ?? address });
          }
          writer.send(e.event, e.data);
        }
      });
      answer.on("end", () => {
        done();
        resolve();
      });
      answer.on("error", (err) => {
        done();
        reject(err);
      });
      answer.on("aborted", () => {
        done();
        reject(new Error("the peer's stream broke"));
      });
    });
    req.on("error", (err) => {
      done();
      if (signal.aborted) resolve();
      else reject(err);
    });
    req.end();
  });
}

/** The reporting node of an event as a peer sent it (null if its data is not an event's JSON). */
function peerName(data: string): string | null {
  try {
    const name = (JSON.parse(data) as { node?: unknown } | null)?.node;
    return typeof name === "string" ? name : null;
  } catch {
    // A peer's malformed event is passed on as it is; only its name is not learned from it.
    return null;
  }
}
