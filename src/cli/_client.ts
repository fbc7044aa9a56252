/**
 * The CLI's client of a node's control API (docs/cluster.md): JSON over
 * HTTP/1.1 and event streams, with the API's errors turned into FerryErrors
 * carrying the API's own codes.
 */
import type http from "node:http";
import https from "node:https";
import { FerryError, isErrorCode, knownCode, type ErrorCode } from "../errors.js";
import { ClusterTls, clientCredentialDir, hasCredential, readCredential } from "../trust/mod.js";
import { optionValue, UsageError, type OptionSpec, type Parsed } from "./_args.js";
import { SseParser, type SseEvent } from "../sse.js";

/** Where the CLI looks for a cluster when neither --cluster nor FERRY_CLUSTER says: `ferry up`'s first node. */
export const DEFAULT_CLUSTER = "127.0.0.1:7070";

/** The option every cluster command takes. */
export const CLUSTER_OPTION: OptionSpec = { name: "cluster", value: true };

/**
 * How long connecting to a node may take. Only the connection is timed: a
 * request may legitimately stay open for hours (`wait`, `logs -f`).
 */
export const CONNECT_TIMEOUT_MS = 5000;

/** Largest JSON answer read; a process table of many thousands of entries fits. */
export const RESPONSE_BYTES_MAX = 64 * 1024 * 1024;

/** Socket errors that mean no node is listening there (as opposed to one that failed mid-answer). */
const UNREACHABLE_CODES = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL", "ETIMEDOUT"]);

/** A failure talking to the cluster. `code` is the API's own code when the node answered with an error. */
export class ClusterError extends FerryError {
  /** The HTTP status of the answer, when there was one. */
  readonly status: number | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; status?: number }) {
    super(code, message, options);
    this.name = "ClusterError";
    this.status = options?.status;
  }
}

/** A node's control address. */
export interface Address {
  host: string;
  port: number;
}

/** Parses `HOST:PORT` (an IPv6 host in brackets: `[::1]:7070`). */
export function parseAddress(text: string): Address | null {
  const colon = text.lastIndexOf(":");
  if (colon <= 0) return null;
  let host = text.slice(0, colon);
  const port_text = text.slice(colon + 1);
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  if (host === "" || /[\s/]/.test(host) || !/^\d{1,5}$/.test(port_text)) return null;
  const port = Number(port_text);
  if (port < 1 || port > 65535) return null;
  return { host, port };
}

/** Formats an address back as `HOST:PORT`. */
export function formatAddress(address: Address): string {
  return address.host.includes(":") ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

/** The cluster address a command talks to first: the first of {@link clusterAddresses}. */
export function clusterAddress(parsed: Parsed, env: NodeJS.ProcessEnv = process.env): Address {
  return clusterAddresses(parsed, env)[0] as Address;
}

/**
 * The nodes a command may talk to, in order: --cluster, else FERRY_CLUSTER,
 * else {@link DEFAULT_CLUSTER}; each a comma-separated list of HOST:PORT, so
 * that a command still finds the cluster when the first node is down.
 */
export function clusterAddresses(parsed: Parsed, env: NodeJS.ProcessEnv = process.env): Address[] {
  const option = optionValue(parsed, "cluster");
  const from_env = env["FERRY_CLUSTER"];
  const [text, source] =
    option !== undefined ? [option, "--cluster"] : from_env !== undefined && from_env !== "" ? [from_env, "FERRY_CLUSTER"] : [DEFAULT_CLUSTER, "default"];
  const parts = text.split(",").map((t) => t.trim());
  const addresses = parts.map(parseAddress);
  if (parts.length > ADDRESSES_MAX || addresses.some((a) => a === null)) throw new UsageError(`${source} ${JSON.stringify(text)}: want HOST:PORT, or up to ${ADDRESSES_MAX} of them separated by commas`);
  return addresses as Address[];
}

/** Most nodes one --cluster names. */
const ADDRESSES_MAX = 64;

/** An answer's body as the API sends it. */
interface ApiErrorBody {
  error?: { code?: unknown; message?: unknown };
}

/**
 * A client of one node. Each request uses its own connection: the CLI makes
 * a handful. Given other nodes too, it talks to the next of them when the
 * node it talks to cannot be reached (no connection: the request was never
 * sent, so sending it elsewhere is safe), and keeps to that one after.
 */
export class ClusterClient {
  readonly #addresses: readonly Address[];
  #at = 0;
  #tls: ClusterTls | undefined;

  constructor(address: Address, others: readonly Address[] = []) {
    this.#addresses = [address, ...others];
  }

  /** The node this client talks to. */
  get address(): Address {
    return this.#addresses[this.#at] as Address;
  }

  /** `HOST:PORT` of the node. */
  get name(): string {
    return formatAddress(this.address);
  }

  /** A JSON request; resolves with the parsed answer (null for an empty body), throws ClusterError on an error answer. */
  async json(method: string, path: string, body?: unknown): Promise<unknown> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const res = await this.#request(method, path, payload, payload === undefined ? {} : { "content-type": "application/json" });
    const bytes = await readAll(res, this.name);
    this.#throwIfError(res, bytes);
    if (bytes.length === 0) return null;
    try {
      return JSON.parse(bytes.toString("utf8")) as unknown;
    } catch (err: unknown) {
      throw new ClusterError("ERR_CLUSTER_PROTOCOL", `node ${this.name} answered ${method} ${path} with something that is not JSON`, {
        cause: err,
        status: res.statusCode,
      });
    }
  }

  /** A request whose answer is text (e.g. `GET /metrics`); throws ClusterError on an error answer. */
  async text(method: string, path: string): Promise<string> {
    const res = await this.#request(method, path, undefined, {});
    const bytes = await readAll(res, this.name);
    this.#throwIfError(res, bytes);
    return bytes.toString("utf8");
  }

  /** Whether a resource exists: true for 2xx, false for 404, ClusterError otherwise. */
  async exists(path: string): Promise<boolean> {
    const res = await this.#request("HEAD", path, undefined, {});
    const bytes = await readAll(res, this.name);
    if (res.statusCode === 404) return false;
    this.#throwIfError(res, bytes);
    return true;
  }

  /** Sends raw bytes (`application/octet-stream`); resolves with the parsed JSON answer, if any. */
  async put(path: string, bytes: Uint8Array): Promise<unknown> {
    const res = await this.#request("PUT", path, bytes, { "content-type": "application/octet-stream" });
    const answer = await readAll(res, this.name);
    this.#throwIfError(res, answer);
    try {
      return answer.length === 0 ? null : (JSON.parse(answer.toString("utf8")) as unknown);
    } catch {
      return null; // a 2xx with a body that is not JSON is still a success
    }
  }

  /**
   * Reads a `text/event-stream` answer, yielding each event as it arrives.
   * Returns when the node ends the stream; throws ClusterError if the node
   * answers with an error or the connection breaks mid-stream.
   */
  async *events(path: string, method = "GET", body?: unknown): AsyncGenerator<SseEvent, void, undefined> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const res = await this.#request(method, path, payload, { accept: "text/event-stream", ...(payload === undefined ? {} : { "content-type": "application/json" }) });
    if ((res.statusCode ?? 500) >= 300) {
      this.#throwIfError(res, await readAll(res, this.name));
    }
    const type = res.headers["content-type"] ?? "";
    if (!type.startsWith("text/event-stream")) {
      res.destroy();
      throw new ClusterError("ERR_CLUSTER_PROTOCOL", `node ${this.name} answered GET ${path} with ${JSON.stringify(type)}, not an event stream`, {
        status: res.statusCode,
      });
    }
    const parser = new SseParser();
    try {
      for await (const chunk of res) {
        yield* parser.push(chunk as Buffer);
      }
    } catch (err: unknown) {
      if (err instanceof FerryError) throw err; // the parser refused the stream
      throw new ClusterError("ERR_CLUSTER_CONNECTION", `the connection to node ${this.name} broke during GET ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    } finally {
      // Also reached when the consumer stops early: do not leave the socket open.
      res.destroy();
    }
    if (!res.complete) {
      throw new ClusterError("ERR_CLUSTER_CONNECTION", `node ${this.name} closed the connection in the middle of GET ${path}`);
    }
    yield* parser.end();
  }

  /** This user's client credential, loaded on first use. */
  #credential(): ClusterTls {
    if (this.#tls === undefined) {
      const dir = clientCredentialDir();
      if (!hasCredential(dir)) {
        throw new ClusterError(
          "ERR_NO_CREDENTIALS",
          `no client credential in ${dir}: \`ferry up\` writes one for the cluster it starts; for another cluster, get a token from one of its members (ferry token create --client) and run \`ferry login TOKEN\` (or set FERRY_CREDENTIALS to a directory with ca.pem, cert.pem and key.pem)`,
        );
      }
      this.#tls = new ClusterTls(readCredential(dir));
    }
    return this.#tls;
  }

  async #request(method: string, path: string, body: Uint8Array | undefined, headers: http.OutgoingHttpHeaders): Promise<http.IncomingMessage> {
    const tried: string[] = [];
    for (;;) {
      try {
        return await this.#requestOnce(method, path, body, headers);
      } catch (err: unknown) {
        if (!(err instanceof ClusterError) || err.code !== "ERR_CLUSTER_UNREACHABLE" || this.#addresses.length === 1) throw err;
        tried.push(this.name);
        if (tried.length === this.#addresses.length) {
          throw new ClusterError("ERR_CLUSTER_UNREACHABLE", `no Ferry node answers at any of ${tried.join(", ")}: start a cluster with \`ferry up\`, or name a node with --cluster HOST:PORT or FERRY_CLUSTER`, { cause: err });
        }
        this.#at = (this.#at + 1) % this.#addresses.length;
      }
    }
  }

  #requestOnce(method: string, path: string, body: Uint8Array | undefined, headers: http.OutgoingHttpHeaders): Promise<http.IncomingMessage> {
    const tls = this.#credential();
    return new Promise((resolve, reject) => {
      const req = https.request({
        ...tls.clientOptions({ role: "node" }),
        host: this.address.host,
        port: this.address.port,
        method,
        path,
        // A fresh connection per request: nothing pooled keeps the CLI alive or goes stale.
        agent: false,
        headers: { ...headers, ...(body === undefined ? {} : { "content-length": body.length }) },
      });
      let connect_timer: NodeJS.Timeout | undefined;
      req.on("socket", (socket) => {
        if (!socket.connecting) return;
        connect_timer = setTimeout(() => {
          const err = Object.assign(new Error(`no connection within ${CONNECT_TIMEOUT_MS} ms`), { code: "ETIMEDOUT" });
          req.destroy(err);
        }, CONNECT_TIMEOUT_MS);
        socket.once("connect", () => clearTimeout(connect_timer));
      });
      req.on("response", (res) => {
        clearTimeout(connect_timer);
        resolve(res);
      });
      req.on("error", (err: NodeJS.ErrnoException) => {
        clearTimeout(connect_timer);
        reject(this.#connectionError(method, path, err));
      });
      req.end(body);
    });
  }

  #connectionError(method: string, path: string, err: NodeJS.ErrnoException): ClusterError {
    // Trying several addresses of a host name fails with an AggregateError of one error per address.
    const code = err.code ?? (err instanceof AggregateError ? (err.errors[0] as NodeJS.ErrnoException | undefined)?.code : undefined);
    if (code !== undefined && UNREACHABLE_CODES.has(code)) {
      return new ClusterError(
        "ERR_CLUSTER_UNREACHABLE",
        `no Ferry node answers at ${this.name} (${code}): start a cluster with \`ferry up\`, or name a node with --cluster HOST:PORT or FERRY_CLUSTER`,
        { cause: err },
      );
    }
    if (err instanceof FerryError && err.code === "ERR_PEER_UNAUTHENTICATED") {
      return new ClusterError("ERR_PEER_UNAUTHENTICATED", `${this.name} is not a node of the cluster your credential is for: ${err.message}`, { cause: err });
    }
    if (code !== undefined && /^(ERR_SSL|ERR_TLS|UNABLE_TO|CERT_|DEPTH_ZERO|SELF_SIGNED)/.test(code)) {
      return new ClusterError("ERR_PEER_UNAUTHENTICATED", `${this.name} did not prove it is a node of your credential's cluster (${code}): is --cluster right, and is your credential (${clientCredentialDir()}) for that cluster?`, { cause: err });
    }
    return new ClusterError("ERR_CLUSTER_CONNECTION", `${method} ${path} to node ${this.name} failed: ${err.message}`, { cause: err });
  }

  #throwIfError(res: http.IncomingMessage, bytes: Buffer): void {
    const status = res.statusCode ?? 500;
    if (status < 400) return;
    let body: ApiErrorBody | null = null;
    try {
      body = JSON.parse(bytes.toString("utf8")) as ApiErrorBody;
    } catch {
      // Expected: a proxy or a crashed handler may answer with a non-JSON body; the status and an excerpt of the body then make the error below.
      body = null;
    }
    const code = body?.error?.code;
    const message = body?.error?.message;
    if (typeof code === "string" && code !== "") {
      const text = typeof message === "string" ? message : `node ${this.name} answered ${status}`;
      // A code this CLI does not know (a newer node) is kept in the message, never passed off as a known one.
      throw new ClusterError(knownCode(code, "ERR_PEER"), isErrorCode(code) ? text : `${text} [${code}]`, { status });
    }
    const excerpt = bytes.subarray(0, 200).toString("utf8").trim();
    throw new ClusterError("ERR_CLUSTER_PROTOCOL", `node ${this.name} answered ${status}${excerpt === "" ? "" : `: ${excerpt}`}`, { status });
  }
}

/** A client of the node the command line names. */
export function clusterClient(parsed: Parsed): ClusterClient {
  const [first, ...others] = clusterAddresses(parsed);
  return new ClusterClient(first as Address, others);
}

function readAll(res: http.IncomingMessage, node: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let total = 0;
    res.on("data", (chunk: Buffer) => {
      total += chunk.length;
      if (total > RESPONSE_BYTES_MAX) {
        res.destroy();
        reject(new ClusterError("ERR_CLUSTER_PROTOCOL", `node ${node} sent an answer larger than ${RESPONSE_BYTES_MAX} bytes`));
        return;
      }
      parts.push(chunk);
    });
    res.on("end", () => resolve(Buffer.concat(parts)));
    res.on("error", (err) => reject(new ClusterError("ERR_CLUSTER_CONNECTION", `the connection to node ${node} broke: ${err.message}`, { cause: err })));
    res.on("close", () => {
      if (!res.complete) reject(new ClusterError("ERR_CLUSTER_CONNECTION", `node ${node} closed the connection mid-answer`));
    });
  });
}
