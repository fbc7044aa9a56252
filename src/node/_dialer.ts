/**
 * How a node, the CLI or a tool opens connections to nodes: HTTPS with a
 * cluster credential (mutual TLS, the peer checked to be the member
 * expected), or plain HTTP where a cluster runs without security
 * (benchmarks only).
 */
import http from "node:http";
import https from "node:https";
import net from "node:net";
import { FerryError } from "../errors.js";
import { splitHostPort as parseHostPort } from "../process_spec.js";
import { ClusterTls, clientCredentialDir, hasCredential, readCredential, type ExpectedPeer } from "../trust/mod.js";

/** Any node of the cluster. */
export const ANY_NODE: ExpectedPeer = { role: "node" };

/**
 * Longest a connection to a node may take to open, TLS handshake included.
 * On loopback or a LAN a live node answers in milliseconds, and in a few
 * seconds when its machine is overloaded (the CLI allows the same); a dropped
 * link would otherwise hold a request for the kernel's SYN retries (over a
 * minute).
 */
export const CONNECT_TIMEOUT_MS = 5000;

/**
 * How long a connection a node answers on may sit idle between requests
 * before the node closes it: far longer than {@link IDLE_REUSE_MS}, so a
 * dialer never sends a request on a connection its peer is closing.
 */
export const SERVER_KEEP_ALIVE_MS = 30_000;

/**
 * How long the dialing side keeps an idle connection for its next request.
 * Load gossip (every 500 ms), output relays and exit reports then ride one
 * connection per peer instead of a TLS handshake each (a handshake costs
 * both ends milliseconds of CPU: a busy pair of nodes spent most of a
 * second of CPU a second on them).
 */
export const IDLE_REUSE_MS = 4000;

/** Opens requests to nodes. */
export class Dialer {
  /** The credential dialed with; null: plain HTTP. */
  readonly tls: ClusterTls | null;
  /**
   * Kept-alive connections, one pool per peer expected: a connection's peer
   * was checked once, at its handshake, so one made for any node is never
   * lent to a request that must reach a given one.
   */
  readonly #pools = new Map<string, http.Agent>();

  constructor(tls: ClusterTls | null) {
    this.tls = tls;
  }

  /**
   * A request to the node at `address` (HOST:PORT; an IPv6 host in
   * brackets). With TLS, the answer must come from `expect`. It goes out on
   * a kept-alive connection to that peer when one is idle, unless
   * `options.agent` says otherwise (`false`: a connection of its own, for
   * streams and long polls).
   */
  request(address: string, options: http.RequestOptions, expect: ExpectedPeer = ANY_NODE): http.ClientRequest {
    const { host, port } = splitHostPort(address);
    const agent = options.agent === undefined ? this.#pool(expect) : options.agent;
    const req = this.tls === null ? http.request({ ...options, agent, host, port }) : https.request({ ...options, agent, host, port, ...this.tls.clientOptions(expect) });
    connectDeadline(req, address, this.tls !== null, CONNECT_TIMEOUT_MS);
    return req;
  }

  /** Closes the idle kept-alive connections (those in use close after their request). */
  close(): void {
    for (const a of this.#pools.values()) a.destroy();
    this.#pools.clear();
  }

  #pool(expect: ExpectedPeer): http.Agent {
    // Without TLS no peer is checked: one pool serves every request.
    const key = this.tls === null ? "" : `${expect.role}/${expect.name ?? ""}`;
    let a = this.#pools.get(key);
    if (a === undefined) {
      // `timeout` closes a connection idle that long; an idle one is unref'd, so it never keeps a process alive.
      const options = { keepAlive: true, timeout: IDLE_REUSE_MS, scheduling: "lifo" as const };
      a = this.tls === null ? new http.Agent(options) : new https.Agent(options);
      this.#pools.set(key, a);
    }
    return a;
  }
}

/** Destroys `req` with ERR_PEER_UNREACHABLE unless its connection (and TLS handshake) is up within `timeout_ms`. */
function connectDeadline(req: http.ClientRequest, address: string, tls: boolean, timeout_ms: number): void {
  // With TLS the connection is up once the handshake is done: a peer that accepts TCP and then stalls is as unreachable.
  req.once("socket", (socket: net.Socket) => {
    // A kept-alive socket is connected (and its handshake done) already.
    if (req.reusedSocket) return;
    const timer = setTimeout(() => req.destroy(new FerryError("ERR_PEER_UNREACHABLE", `node ${address} did not accept a connection within ${timeout_ms} ms`)), timeout_ms);
    const clear = (): void => clearTimeout(timer);
    socket.once(tls ? "secureConnect" : "connect", clear);
    socket.once("close", clear);
  });
}

/** HOST and PORT of an address to dial (brackets of an IPv6 host removed); ERR_ADDRESS if it is not one. */
export function splitHostPort(address: string): { host: string; port: number } {
  const split = parseHostPort(address);
  if (split === null) throw new FerryError("ERR_ADDRESS", `bad address ${JSON.stringify(address)}: want HOST:PORT`);
  return split;
}

const tool_dialers = new Map<string, Dialer>();

/**
 * The dialer of tools on this machine (the CLI, tests, benchmarks): the
 * client credential in $FERRY_CREDENTIALS or the Ferry home's `client/`,
 * or plain HTTP if there is none there.
 */
export function toolDialer(env: NodeJS.ProcessEnv = process.env): Dialer {
  const dir = clientCredentialDir(env);
  let d = tool_dialers.get(dir);
  if (d === undefined) {
    // Not remembered while there is none: a credential written later is found.
    if (!hasCredential(dir)) return new Dialer(null);
    d = new Dialer(new ClusterTls(readCredential(dir)));
    tool_dialers.set(dir, d);
  }
  return d;
}

/** The node called `name`, and no other. */
export function nodeNamed(name: string): ExpectedPeer {
  return { role: "node", name };
}

/** Opens a plain TCP connection to `address` (HOST:PORT), failing after `timeout_ms` without an answer. */
export function connectTcp(address: string, timeout_ms: number): Promise<net.Socket> {
  const { host, port } = splitHostPort(address);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, noDelay: true });
    const timer = setTimeout(() => socket.destroy(new FerryError("ERR_PEER_UNREACHABLE", `node ${address} did not answer within ${timeout_ms} ms`)), timeout_ms);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.off("error", fail);
      resolve(socket);
    });
    const fail = (err: Error): void => {
      clearTimeout(timer);
      reject(err instanceof FerryError ? err : new FerryError("ERR_PEER_UNREACHABLE", `cannot reach node ${address}: ${err.message}`, { cause: err }));
    };
    socket.once("error", fail);
  });
}
