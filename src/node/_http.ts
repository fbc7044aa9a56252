/** Small HTTP helpers of the control API: JSON bodies, errors, forwarding. */
import http from "node:http";
import type * as v from "valibot";
import { FerryError, knownCode, statusOf } from "../errors.js";
import { parse, type Schema } from "../validate.js";

/** Largest JSON request body a node reads (process specs are small). */
export const JSON_BODY_BYTES_MAX = 1024 * 1024;

/** How long a node waits for a peer's answer before calling it down. */
export const PEER_TIMEOUT_MS = 2000;

/**
 * A request body's chunks, refusing more than `max_bytes` with `code` (at
 * once if the request declares a larger length). The request is never
 * destroyed: what is left of it is drained, so the client reads the refusal
 * rather than a reset connection.
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
  sendJson(res, statusOf(code), { error: { code, message } });
}

/**
 * A JSON request to a peer; throws FerryError with the peer's code on an
 * error answer, ERR_PEER_UNREACHABLE when it does not answer within
 * `timeout_ms`.
 */
export function requestJson(address: string, method: string, path: string, body?: unknown, timeout_ms = PEER_TIMEOUT_MS): Promise<unknown> {
  const [host, port] = splitAddress(address);
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(
      // A fresh connection each time: a kept-alive one the peer has just timed
      // out would fail the request with ECONNRESET and make a live peer look down.
      { host, port, method, path, agent: false, timeout: timeout_ms, headers: payload ? { "content-type": "application/json", "content-length": payload.length } : {} },
      (res) => {
        const parts: Buffer[] = [];
        res.on("data", (c: Buffer) => parts.push(c));
        res.on("end", () => {
          const text = Buffer.concat(parts).toString("utf8");
          let value: unknown = null;
          try {
            value = text === "" ? null : JSON.parse(text);
          } catch {
            reject(new FerryError("ERR_PEER_UNREACHABLE", `peer ${address} answered with something that is not JSON`));
            return;
          }
          if ((res.statusCode ?? 500) >= 400) {
            const e = (value as { error?: { code?: string; message?: string } } | null)?.error;
            reject(new FerryError(knownCode(e?.code, "ERR_PEER"), typeof e?.message === "string" ? e.message : `peer ${address} answered ${res.statusCode}`));
            return;
          }
          resolve(value);
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeout_ms} ms`)));
    req.on("error", (err) => reject(new FerryError("ERR_PEER_UNREACHABLE", `peer ${address} is unreachable: ${err.message}`, { cause: err })));
    req.end(payload);
  });
}

/** Forwards a request as it is to another node and streams the answer back. */
export function forward(req: http.IncomingMessage, res: http.ServerResponse, address: string, body?: Buffer): void {
  const [host, port] = splitAddress(address);
  const out = http.request({ host, port, method: req.method, path: req.url, agent: false, headers: { ...req.headers, host: address } }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    answer.pipe(res);
  });
  out.on("error", (err) => sendError(res, new FerryError("ERR_PEER_UNREACHABLE", `node ${address} is unreachable: ${err.message}`)));
  res.on("close", () => out.destroy());
  if (body !== undefined) out.end(body);
  else req.pipe(out);
}

function splitAddress(address: string): [string, number] {
  const i = address.lastIndexOf(":");
  return [address.slice(0, i), Number(address.slice(i + 1))];
}

/**
 * A plain HTTP request to a node: status and raw body, whatever the status.
 * For tools that look at answers as they are (tests, benchmarks).
 */
export function httpRequest(address: string, method: string, path: string, body?: Uint8Array | object): Promise<{ status: number; body: Buffer }> {
  const payload = body === undefined ? undefined : body instanceof Uint8Array ? body : Buffer.from(JSON.stringify(body));
  const [host, port] = splitAddress(address);
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, method, path, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on("data", (c: Buffer) => parts.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
    });
    req.on("error", reject);
    req.end(payload);
  });
}
