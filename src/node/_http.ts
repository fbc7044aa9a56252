/** Small HTTP helpers of the control API: JSON bodies, errors, forwarding. */
import http from "node:http";
import type * as v from "valibot";
import { FerryError, knownCode, statusOf } from "../errors.js";
import { parse, type Schema } from "../validate.js";
import { peerIdentity, type ExpectedPeer, type Identity } from "../trust/mod.js";
import { ANY_NODE, toolDialer, type Dialer } from "./_dialer.js";

/** Largest JSON request body a node reads (process specs are small). */
export const JSON_BODY_BYTES_MAX = 1024 * 1024;

/**
 * How long a node waits for a peer's whole answer (connecting included)
 * before calling it down. Node-to-node calls are small JSON exchanges; a peer
 * that takes longer, even on an overloaded machine, is stuck or its link is
 * gone.
 */
export const PEER_TIMEOUT_MS = 10_000;

/**
 * A request body's chunks, refusing more than `max_bytes` with `code` (at
 * once if the request declares a larger length). The request is never
 * destroyed: what is left of it is drained, and `sendError` answers once it
 * is in (for a while, up to a size), so the client reads the refusal rather
 * than a reset connection.
 */
export async function* bodyChunks(req: http.IncomingMessage, max_bytes: number, code: "ERR_BODY_TOO_LARGE" | "ERR_MODULE_TOO_LARGE" = "ERR_BODY_TOO_LARGE"): AsyncGenerator<Buffer> {
  const refuse = (): FerryError => {
    req.resume();
    return new FerryError(code, `request body exceeds the ${max_bytes} bytes this node accepts`);
  };
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > max_bytes) throw refuse();
  let total = 0;
  for await (const chunk of req.iterator({ destroyOnReturn: false })) {
    total += (chunk as Buffer).length;
    if (total > max_bytes) throw refuse();
    yield chunk as Buffer;
  }
}

/** Reads a request body, refusing more than `max_bytes`. */
export async function readBody(req: http.IncomingMessage, max_bytes: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of bodyChunks(req, max_bytes)) parts.push(chunk);
  return Buffer.concat(parts);
}

/** Reads and parses a JSON request body. */
export async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const body = await readBody(req, JSON_BODY_BYTES_MAX);
  try {
    return JSON.parse(body.toString("utf8"));
  } catch (err: unknown) {
    throw new FerryError("ERR_BAD_REQUEST", "request body is not JSON", { cause: err });
  }
}

/** Reads a JSON request body and checks it against `schema`: 400 ERR_BAD_REQUEST naming the field otherwise. */
export async function readRequest<S extends Schema>(req: http.IncomingMessage, schema: S): Promise<v.InferOutput<S>> {
  return parse(schema, await readJson(req), "request body");
}

/** Sends a JSON answer. */
export function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

/**
 * Sends an error as `{error: {code, message}}` with its code's status from
 * the registry. Anything but a FerryError is a fault of the node, never of
 * the request: 500 ERR_INTERNAL.
 */
export function sendError(res: http.ServerResponse, err: unknown): void {
  const code = err instanceof FerryError ? err.code : "ERR_INTERNAL";
  const message = err instanceof Error ? err.message : String(err);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const answer = (): void => {
    if (!res.headersSent && !res.destroyed) sendJson(res, statusOf(code), { error: { code, message } });
  };
  const req = res.req as http.IncomingMessage | undefined;
  if (req === undefined || req.complete || req.destroyed) return answer();
  // Refused before its body was read (too large, say), and the client still sends it. Answering now, on a
  // connection the client asked to close, closes it with unread bytes in it: the kernel then resets it, and
  // the client's next write fails (EPIPE) before it reads the answer. So the rest is read and dropped first,
  // for a while and up to a size (a lingering close); past either the answer goes at once.
  let drained = 0;
  const done = (): void => {
    clearTimeout(timer);
    req.off("data", count);
    req.off("end", done);
    req.off("close", done);
    answer();
  };
  const count = (chunk: Buffer): void => {
    drained += chunk.length;
    if (drained > LINGER_BYTES_MAX) done();
  };
  const timer = setTimeout(done, LINGER_MS);
  req.on("data", count);
  req.once("end", done);
  req.once("close", done);
  req.resume();
}

/** How long, and how many bytes of a refused request's body, an error answer waits to be read and dropped (`sendError`). */
const LINGER_MS = 2_000;
const LINGER_BYTES_MAX = 16 * 1024 * 1024;

/** Options of {@link requestJson}. */
export interface PeerRequestOptions {
  /** Sent as JSON. */
  body?: unknown;
  /** How long the whole request may take, answer read included (default {@link PEER_TIMEOUT_MS}). */
  timeout_ms?: number;
  /** The member that must answer (default: any node). */
  expect?: ExpectedPeer;
  /**
   * A call the peer must not act on twice (a start): it goes on a connection
   * of its own and is never sent again. Others ride kept-alive connections
   * and are sent once more if theirs closes before any answer.
   */
  once?: boolean;
}

/**
 * A JSON request to a peer; throws FerryError with the peer's code on an
 * error answer, ERR_PEER_UNREACHABLE when it does not answer within the
 * timeout, ERR_PEER_UNAUTHENTICATED when the one answering is not who was
 * expected.
 */
export async function requestJson(dialer: Dialer, address: string, method: string, path: string, options: PeerRequestOptions = {}): Promise<unknown> {
  return (await requestJsonFrom(dialer, address, method, path, options)).value;
}

/** {@link requestJson}, also saying who answered (null without TLS). */
export async function requestJsonFrom(dialer: Dialer, address: string, method: string, path: string, options: PeerRequestOptions = {}): Promise<{ value: unknown; peer: Identity | null }> {
  const payload = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
  if (options.once === true) return await exchangeJson(dialer, address, method, path, payload, options, false);
  try {
    return await exchangeJson(dialer, address, method, path, payload, options, undefined);
  } catch (err: unknown) {
    if (!(err instanceof StaleConnection)) throw err;
    // The kept-alive connection was closed under the request before any answer: its peer closed it idle as the
    // request went out, or restarted. The calls sent this way are safe to repeat (output by offset, reports and
    // records by move counter, load exchanges), so it goes again, once, on a connection of its own.
    return await exchangeJson(dialer, address, method, path, payload, options, false);
  }
}

/** A kept-alive connection that failed before any answer: the request goes again on a new one. */
export class StaleConnection extends Error {}

/** Errors of a connection its peer closed or reset. */
const CLOSED_CODES = new Set(["ECONNRESET", "EPIPE", "ECONNABORTED"]);

/** What `err` on `req` means: the kept-alive connection it rode closed before any answer (StaleConnection), or the peer's failure. */
export function requestError(req: http.ClientRequest, answered: boolean, address: string, err: NodeJS.ErrnoException): Error {
  if (req.reusedSocket && !answered && err.code !== undefined && CLOSED_CODES.has(err.code)) return new StaleConnection(err.message);
  return peerError(address, err);
}

function exchangeJson(dialer: Dialer, address: string, method: string, path: string, payload: Buffer | undefined, options: PeerRequestOptions, agent: false | undefined): Promise<{ value: unknown; peer: Identity | null }> {
  const timeout_ms = options.timeout_ms ?? PEER_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    const req = dialer.request(address, { method, path, agent, headers: payload ? { "content-type": "application/json", "content-length": payload.length } : {} }, options.expect);
    let answered = false;
    // A total deadline, not an idle one: a peer that trickles its answer is as stuck as a silent one.
    const deadline = setTimeout(() => req.destroy(new Error(`no whole answer within ${timeout_ms} ms`)), timeout_ms);
    req.on("close", () => clearTimeout(deadline));
    req.on("response", (res) => {
      answered = true;
      const parts: Buffer[] = [];
      res.on("data", (c: Buffer) => parts.push(c));
      res.on("end", () => {
        const text = Buffer.concat(parts).toString("utf8");
        let value: unknown = null;
        try {
          value = text === "" ? null : JSON.parse(text);
        } catch (cause) {
          reject(new FerryError("ERR_PEER_UNREACHABLE", `peer ${address} answered with something that is not JSON`, { cause }));
          return;
        }
        if ((res.statusCode ?? 500) >= 400) {
          const e = (value as { error?: { code?: string; message?: string } } | null)?.error;
          reject(new FerryError(knownCode(e?.code, "ERR_PEER"), typeof e?.message === "string" ? e.message : `peer ${address} answered ${res.statusCode}`));
          return;
        }
        resolve({ value, peer: peerIdentity(res.socket) });
      });
    });
    req.on("error", (err: NodeJS.ErrnoException) => reject(requestError(req, answered, address, err)));
    req.end(payload);
  });
}

/** What a failed connection to a peer means: not the member expected, or no answer. */
export function peerError(address: string, err: Error): FerryError {
  if (err instanceof FerryError && err.code === "ERR_PEER_UNAUTHENTICATED") return new FerryError("ERR_PEER_UNAUTHENTICATED", `${address}: ${err.message}`, { cause: err });
  return new FerryError("ERR_PEER_UNREACHABLE", `peer ${address} is unreachable: ${err.message}`, { cause: err });
}

/**
 * How long a forwarded request may take, when it is not a long poll or a
 * stream: the same as a node's own calls, with room for a kill to take effect.
 */
export const FORWARD_TIMEOUT_MS = 10_000;

/**
 * Idle time after which TCP keepalive probes a forwarded long poll or stream,
 * so a link that died silently is noticed without a total deadline.
 */
const FORWARD_KEEPALIVE_MS = 5000;

/**
 * Forwards a request as it is to another node and streams the answer back.
 * Connecting is always timed (the dialer's CONNECT_TIMEOUT_MS); `timeout_ms`
 * bounds the whole exchange, and is null only for long polls and streams
 * (`wait`, `output?follow=1`, `migrate`), which last as long as the process
 * or the move does and are watched by TCP keepalive instead. `unreachable`,
 * when given, answers instead if the node does not (before any answer came).
 */
export function forward(
  dialer: Dialer,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  address: string,
  expect: ExpectedPeer = ANY_NODE,
  timeout_ms: number | null = FORWARD_TIMEOUT_MS,
  unreachable?: (err: FerryError) => Promise<void>,
): void {
  const out = dialer.request(address, { method: req.method, path: req.url, agent: false, headers: { ...req.headers, host: address } }, expect);
  if (timeout_ms !== null) {
    const deadline = setTimeout(() => out.destroy(new Error(`no whole answer within ${timeout_ms} ms`)), timeout_ms);
    out.on("close", () => clearTimeout(deadline));
  } else {
    out.once("socket", (socket) => socket.setKeepAlive(true, FORWARD_KEEPALIVE_MS));
  }
  out.on("response", (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    answer.pipe(res);
    // An answer cut short (the node died mid-stream) is cut here too, so the client sees it and asks again, rather than waiting on an answer that will never end.
    answer.on("close", () => {
      if (!answer.complete) res.destroy();
    });
  });
  out.on("error", (err) => {
    const failed = peerError(address, err);
    if (unreachable === undefined || res.headersSent || failed.code !== "ERR_PEER_UNREACHABLE") return sendError(res, failed);
    unreachable(failed).catch((e: unknown) => sendError(res, e));
  });
  res.on("close", () => out.destroy());
  // A request forwarded again after a first node did not answer has been read already.
  if (req.readableEnded) out.end();
  else req.pipe(out);
}

/**
 * A plain request to a node: status and raw body, whatever the status.
 * For tools that look at answers as they are (tests, benchmarks); they
 * dial with this machine's client credential unless told otherwise.
 */
export function httpRequest(address: string, method: string, path: string, body?: Uint8Array | object, dialer: Dialer = toolDialer()): Promise<{ status: number; body: Buffer }> {
  const payload = body === undefined ? undefined : body instanceof Uint8Array ? body : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = dialer.request(address, { method, path, agent: false });
    req.on("response", (res) => {
      const parts: Buffer[] = [];
      res.on("data", (c: Buffer) => parts.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
    });
    req.on("error", reject);
    req.end(payload);
  });
}
