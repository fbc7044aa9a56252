/**
 * The directory over HTTP (docs/directory.md): the server `ferry up` runs in
 * its supervisor process to serve its embedded directory to the nodes, the
 * transport a node's RemoteDirectory uses to reach it, and `openDirectory`,
 * which turns a `--directory` URL into a backend.
 *
 * With the cluster's credentials every connection is mutual TLS, and only
 * nodes of the cluster are served; a node may take, renew and end only its
 * own lease (a node cannot act as another). The protocol itself is in
 * `src/directory/remote.ts`.
 */
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import * as v from "valibot";
import { MemoryDirectory, openEtcdDirectory, NewProcessSchema, ProcessChangeSchema, RemoteDirectory, LEASE_TTL_MS_MAX, LEASE_TTL_MS_MIN, type Directory, type DirectoryTransport } from "../directory/mod.js";
import { FerryError } from "../errors.js";
import { HostPort, NodeName } from "../process_spec.js";
import { SseParser } from "../sse.js";
import { peerIdentity, type ClusterTls } from "../trust/mod.js";
import { integer, Uint } from "../validate.js";
import { ANY_NODE, Dialer, splitHostPort } from "./_dialer.js";
import { peerError, readRequest, requestJson, sendError, sendJson } from "./_http.js";

/** Bytes of changes a watch stream may have waiting before it is closed (the client opens it again and reads the state anew). */
const WATCH_BUFFER_BYTES_MAX = 8 * 1024 * 1024;

/** How long a directory request may take, answer included: a local server answers in milliseconds. */
const DIRECTORY_TIMEOUT_MS = 5000;

const LeaseRequestSchema = v.object({ name: NodeName, address: HostPort, ttl_ms: integer(LEASE_TTL_MS_MIN, LEASE_TTL_MS_MAX) });
const UpdateRequestSchema = v.object({ expect_moves: Uint, change: ProcessChangeSchema });

/** A directory being served. */
export interface DirectoryServer {
  /** HOST:PORT it listens on. */
  address: string;
  /** What a node's `--directory` takes to use it. */
  url: string;
  close(): Promise<void>;
}

/** Serves `directory` on HOST:PORT (port 0: any free one); with `tls`, to the cluster's nodes only. */
export async function serveDirectory(directory: MemoryDirectory, options: { host: string; port: number; tls: ClusterTls | null }): Promise<DirectoryServer> {
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    handle(directory, options.tls !== null, req, res).catch((err: unknown) => sendError(res, err));
  };
  const server = options.tls === null ? http.createServer(handler) : https.createServer(options.tls.serverOptions(), handler);
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) => reject(new FerryError("ERR_LISTEN", `the directory cannot listen on ${options.host}:${options.port}: ${err.message}`, { cause: err })));
    server.listen(options.port, options.host, () => resolve());
  });
  const address = `${options.host}:${(server.address() as AddressInfo).port}`;
  return {
    address,
    url: `${options.tls === null ? "http" : "https"}://${address}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function handle(d: MemoryDirectory, secure: boolean, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const caller = peerIdentity(req.socket);
  if (secure && caller?.role !== "node") throw new FerryError("ERR_UNAUTHENTICATED", "the directory serves the cluster's nodes only: present a node certificate of this cluster");
  const url = new URL(req.url ?? "/", "http://directory");
  const parts = url.pathname.split("/").filter((p) => p !== "").map(decodeURIComponent);
  if (parts[0] !== "v1" || parts[1] !== "directory") throw new FerryError("ERR_NOT_FOUND", `no ${req.method} ${url.pathname} here`);
  const [, , what, id, action] = parts;
  const method = req.method ?? "GET";
  // A node may renew or end only its own lease, and take one only in its own name.
  const own = (name: string | undefined): void => {
    if (secure && name !== undefined && name !== caller?.name) throw new FerryError("ERR_FORBIDDEN", `node ${caller?.name} may not act on node ${name}'s lease`);
  };
  if (what === "processes" && id === undefined && method === "POST") return sendJson(res, 200, { record: await d.createProcess(await readRequest(req, NewProcessSchema)) });
  if (what === "processes" && id === undefined && method === "GET") {
    const runner = url.searchParams.get("runner");
    const home = url.searchParams.get("home");
    return sendJson(res, 200, { processes: await d.processes({ ...(runner !== null ? { runner } : {}), ...(home !== null ? { home } : {}) }) });
  }
  if (what === "processes" && id !== undefined && action === undefined && method === "GET") return sendJson(res, 200, { record: await d.process(id) });
  if (what === "processes" && id !== undefined && action === "update" && method === "POST") {
    const body = await readRequest(req, UpdateRequestSchema);
    return sendJson(res, 200, await d.updateProcess(id, body.expect_moves, body.change));
  }
  if (what === "leases" && id === undefined && method === "POST") {
    const body = await readRequest(req, LeaseRequestSchema);
    own(body.name);
    return sendJson(res, 200, await d.grantLease({ name: body.name, address: body.address }, body.ttl_ms));
  }
  if (what === "leases" && id !== undefined && action === "keepalive" && method === "POST") {
    own(d.leaseHolder(id));
    await d.keepAlive(id);
    return sendJson(res, 200, {});
  }
  if (what === "leases" && id !== undefined && action === undefined && method === "DELETE") {
    own(d.leaseHolder(id));
    await d.revokeLease(id);
    return sendJson(res, 200, {});
  }
  if (what === "members" && method === "GET") return sendJson(res, 200, { members: await d.members() });
  if (what === "watch" && method === "GET") return watch(d, res);
  throw new FerryError("ERR_NOT_FOUND", `no ${method} ${url.pathname} here`);
}

async function watch(d: MemoryDirectory, res: http.ServerResponse): Promise<void> {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store" });
  const stop = await d.watch((change) => {
    if (res.writableLength > WATCH_BUFFER_BYTES_MAX) {
      // A reader this far behind is closed rather than fed without bound; it reconnects and reads the state anew.
      res.destroy();
      return;
    }
    res.write(`data: ${JSON.stringify(change)}\n\n`);
  });
  res.on("close", stop);
  // An empty event first: the client knows the watch is in place.
  res.write("data: \n\n");
}

/** The transport of a RemoteDirectory to the server at `address`, dialed with `dialer`. */
export function directoryTransport(dialer: Dialer, address: string): DirectoryTransport {
  return {
    async request(method, path, body) {
      try {
        return await requestJson(dialer, address, method, path, { timeout_ms: DIRECTORY_TIMEOUT_MS, ...(body !== undefined ? { body } : {}) });
      } catch (err: unknown) {
        if (err instanceof FerryError && (err.code === "ERR_PEER_UNREACHABLE" || err.code === "ERR_PEER")) {
          throw new FerryError("ERR_DIRECTORY_UNAVAILABLE", `the directory at ${address} did not answer: ${err.message}`, { cause: err });
        }
        throw err;
      }
    },
    stream(path, onData, onEnd) {
      let ended = false;
      const end = (err: Error | null): void => {
        if (ended) return;
        ended = true;
        onEnd(err);
      };
      const req = dialer.request(address, { method: "GET", path, agent: false }, ANY_NODE);
      req.on("response", (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          end(new FerryError("ERR_DIRECTORY_UNAVAILABLE", `the directory at ${address} answered ${res.statusCode} to its watch`));
          return;
        }
        // Dead links are noticed by TCP keepalive: the stream may be quiet for as long as nothing changes.
        res.socket.setKeepAlive(true, 5000);
        const parser = new SseParser();
        res.on("data", (chunk: Buffer) => {
          try {
            for (const e of parser.push(chunk)) onData(e.data);
          } catch (err: unknown) {
            req.destroy(err instanceof Error ? err : new Error(String(err)));
          }
        });
        res.on("end", () => end(null));
        res.on("error", (err) => end(err));
      });
      req.on("error", (err) => end(peerError(address, err)));
      req.on("close", () => end(null));
      req.end();
      return () => {
        ended = true;
        req.destroy();
      };
    },
  };
}

/**
 * The directory a `--directory` URL names: `etcd://HOST:PORT,HOST:PORT,...`
 * (a path after the endpoints is the key prefix, default /ferry/), or
 * `https://HOST:PORT` for one `ferry up` serves (`http://` only with
 * `tls` null: --insecure). ERR_DIRECTORY_URL for anything else. The etcd
 * client is loaded only for an etcd URL.
 */
export async function openDirectory(whole: string, tls: ClusterTls | null): Promise<Directory> {
  const bad = (why: string): FerryError => new FerryError("ERR_DIRECTORY_URL", `--directory ${JSON.stringify(whole)}: ${why}`);
  const q = whole.indexOf("?");
  const url = q < 0 ? whole : whole.slice(0, q);
  const query = new URLSearchParams(q < 0 ? "" : whole.slice(q + 1));
  const match = /^([a-z]+):\/\/([^/]+)(\/.*)?$/.exec(url);
  if (match === null) throw bad("want etcd://HOST:PORT,... or https://HOST:PORT");
  const [, scheme, hosts, rest] = match as unknown as [string, string, string, string | undefined];
  const endpoints = hosts.split(",");
  for (const e of endpoints) {
    try {
      splitHostPort(e);
    } catch {
      // splitHostPort's own message says less than this, which names the whole flag.
      throw bad(`${JSON.stringify(e)} is not HOST:PORT`);
    }
  }
  if (scheme === "etcd" || scheme === "etcds") {
    const prefix = rest === undefined || rest === "/" ? "/ferry/" : rest.endsWith("/") ? rest : `${rest}/`;
    if (scheme === "etcd") {
      if (q >= 0) throw bad("etcd:// takes no options; TLS options go with etcds://");
      return await openEtcdDirectory({ endpoints, prefix });
    }
    return await openEtcdDirectory({ endpoints, prefix, tls: etcdTls(query, bad) });
  }
  if (scheme !== "https" && scheme !== "http") throw bad(`unknown scheme ${scheme}: want etcd or https`);
  if (endpoints.length !== 1) throw bad("a served directory has one address");
  if (rest !== undefined && rest !== "/") throw bad("a served directory's URL has no path");
  if (scheme === "http" && tls !== null) throw bad("http:// is for --insecure nodes; this node has TLS credentials: use https://");
  if (scheme === "https" && tls === null) throw bad("https:// needs the cluster's credentials; an --insecure node uses http://");
  if (q >= 0) throw bad("a served directory's URL takes no options");
  const address = endpoints[0] as string;
  return new RemoteDirectory(directoryTransport(new Dialer(tls), address), url);
}

/** `etcds://...?ca=FILE[&cert=FILE&key=FILE]`: the PEM files for TLS to etcd (cert and key together: client-certificate authentication). */
function etcdTls(query: URLSearchParams, bad: (why: string) => FerryError): { ca_pem: Buffer; cert_pem?: Buffer; key_pem?: Buffer } {
  for (const k of query.keys()) if (!["ca", "cert", "key"].includes(k)) throw bad(`unknown option ${k}: etcds:// takes ca, cert and key`);
  const ca = query.get("ca");
  const cert = query.get("cert");
  const key = query.get("key");
  if (ca === null) throw bad("etcds:// needs ca=FILE, the CA that signed etcd's certificate (PEM)");
  if ((cert === null) !== (key === null)) throw bad("cert=FILE and key=FILE go together (etcd's client-certificate authentication)");
  const read = (file: string, what: string): Buffer => {
    try {
      return fs.readFileSync(file);
    } catch (cause: unknown) {
      throw new FerryError("ERR_DIRECTORY_URL", `cannot read the ${what} for etcds:// from ${file}: ${(cause as Error).message}`, { cause });
    }
  };
  return { ca_pem: read(ca, "CA certificate"), ...(cert !== null && key !== null ? { cert_pem: read(cert, "client certificate"), key_pem: read(key, "client key") } : {}) };
}
