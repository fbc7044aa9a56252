/**
 * Node-to-node requests ride kept-alive connections: one per peer expected,
 * and a request whose kept-alive connection closes under it before any
 * answer goes again on a new one, so a live peer never looks down.
 */
import assert from "node:assert/strict";
import http from "node:http";
import https from "node:https";
import type net from "node:net";
import { after, describe, it } from "node:test";
import { FerryError } from "../errors.js";
import { ClusterTls, createAuthority, issue } from "../trust/mod.js";
import { ANY_NODE, Dialer, nodeNamed } from "./_dialer.js";
import { requestJson } from "./_http.js";
import { upgrade } from "./_upgrade.js";

interface Peer {
  address: string;
  /** Connections accepted so far. */
  connections: () => number;
  /** Requests answered so far. */
  answered: () => number;
  close: () => Promise<void>;
}

/** A peer answering `{n}`; `drop(k)` says whether to close the connection under request k (counting from 1) without answering. */
async function peer(drop: (request: number, on_connection: number) => boolean = () => false, tls?: ClusterTls): Promise<Peer & { upgraded: () => number }> {
  let upgraded = 0;
  let connections = 0;
  let requests = 0;
  let answered = 0;
  const sockets = new Set<net.Socket>();
  const per = new WeakMap<net.Socket, number>();
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    requests += 1;
    const socket = req.socket;
    const k = (per.get(socket) ?? 0) + 1;
    per.set(socket, k);
    req.resume();
    req.on("end", () => {
      if (drop(requests, k)) {
        socket.destroy();
        return;
      }
      answered += 1;
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ n: requests }));
    });
  };
  const server = tls === undefined ? http.createServer(handler) : https.createServer(tls.serverOptions(), handler);
  server.keepAliveTimeout = 30_000;
  // An upgrade echoes what it reads, after the same drop rule as the requests.
  server.on("upgrade", (req: http.IncomingMessage, socket: net.Socket) => {
    requests += 1;
    const k = (per.get(socket) ?? 0) + 1;
    per.set(socket, k);
    if (drop(requests, k)) {
      socket.destroy();
      return;
    }
    upgraded += 1;
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: ${req.headers.upgrade ?? ""}\r\n\r\n`);
    socket.pipe(socket);
  });
  server.on("connection", (s: net.Socket) => {
    connections += 1;
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    connections: () => connections,
    answered: () => answered,
    upgraded: () => upgraded,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe("the dialer's kept-alive connections", () => {
  const dialers: Dialer[] = [];
  const peers: Peer[] = [];
  after(async () => {
    for (const d of dialers) d.close();
    for (const p of peers) await p.close();
  });
  const dialer = (): Dialer => {
    const d = new Dialer(null);
    dialers.push(d);
    return d;
  };

  it("requests one after another to a peer share one connection", async () => {
    const p = await peer();
    peers.push(p);
    const d = dialer();
    for (let i = 1; i <= 5; i += 1) assert.deepEqual(await requestJson(d, p.address, "POST", "/x", { body: { i } }), { n: i });
    assert.equal(p.connections(), 1, "each request opened a connection of its own");
  });

  it("with TLS, a connection made for any node is not lent to a request that must reach a given one", async () => {
    const ca = await createAuthority("dialer-test");
    const tls = async (name: string): Promise<ClusterTls> => {
      const c = await issue(ca, { role: "node", name, hosts: ["127.0.0.1"] });
      return new ClusterTls({ ca_pem: ca.cert_pem, cert_pem: c.cert_pem, key_pem: c.key_pem as string });
    };
    const p = await peer(undefined, await tls("n2"));
    peers.push(p);
    const d = new Dialer(await tls("n1"));
    dialers.push(d);
    await requestJson(d, p.address, "GET", "/x", { expect: ANY_NODE });
    await requestJson(d, p.address, "GET", "/x", { expect: nodeNamed("n2") });
    await requestJson(d, p.address, "GET", "/x", { expect: nodeNamed("n2") });
    await requestJson(d, p.address, "GET", "/x", { expect: ANY_NODE });
    assert.equal(p.connections(), 2);
  });

  it("without TLS, where no peer is checked, one pool serves every request", async () => {
    const p = await peer();
    peers.push(p);
    const d = dialer();
    await requestJson(d, p.address, "GET", "/x", { expect: ANY_NODE });
    await requestJson(d, p.address, "GET", "/x", { expect: nodeNamed("n2") });
    assert.equal(p.connections(), 1);
  });

  it("a kept-alive connection closed under a request before any answer: the request goes again on a new one, once", async () => {
    // The second request is the first on a reused connection: the peer closes it unanswered, as a peer closing an idle connection does.
    const p = await peer((_n, on_connection) => on_connection === 2);
    peers.push(p);
    const d = dialer();
    assert.deepEqual(await requestJson(d, p.address, "POST", "/x"), { n: 1 });
    assert.deepEqual(await requestJson(d, p.address, "POST", "/x"), { n: 3 }, "the request was not sent again");
    assert.equal(p.connections(), 2);
    assert.equal(p.answered(), 2);
  });

  it("a new connection closed before any answer is the peer's failure, not retried", async () => {
    const p = await peer(() => true);
    peers.push(p);
    const d = dialer();
    await assert.rejects(requestJson(d, p.address, "POST", "/x"), (err: unknown) => err instanceof FerryError && err.code === "ERR_PEER_UNREACHABLE");
    assert.equal(p.connections(), 1, "a request on a connection of its own was sent again");
  });

  it("a call made once goes on a connection of its own and is never sent again", async () => {
    // Its first request on any connection is dropped unanswered.
    const p = await peer((_n, on_connection) => on_connection === 1 && _n > 1);
    peers.push(p);
    const d = dialer();
    assert.deepEqual(await requestJson(d, p.address, "POST", "/x"), { n: 1 });
    await assert.rejects(requestJson(d, p.address, "POST", "/x", { once: true }), (err: unknown) => err instanceof FerryError && err.code === "ERR_PEER_UNREACHABLE");
    assert.equal(p.connections(), 2, "the call made once rode the kept-alive connection");
    assert.equal(p.answered(), 1, "the call made once was sent again");
  });

  it("an upgrade is made of an idle kept-alive connection, which leaves the pool, and works as a connection of its own", async () => {
    const p = await peer();
    peers.push(p);
    const d = dialer();
    await requestJson(d, p.address, "GET", "/x", { expect: nodeNamed("n2") });
    const { socket } = await upgrade(d, p.address, "/up", "test", nodeNamed("n2"));
    assert.equal(p.connections(), 1, "the upgrade opened a connection of its own");
    const echoed = new Promise<string>((r) => socket.once("data", (c: Buffer) => r(c.toString())));
    socket.write("ping");
    assert.equal(await echoed, "ping");
    // The upgraded connection is the upgrade's: the next request needs a new one.
    assert.deepEqual(await requestJson(d, p.address, "GET", "/x", { expect: nodeNamed("n2") }), { n: 3 });
    assert.equal(p.connections(), 2);
    socket.destroy();
  });

  it("an upgrade whose kept-alive connection closes before any answer goes again on a new one, once", async () => {
    const p = await peer((_n, on_connection) => on_connection === 2);
    peers.push(p);
    const d = dialer();
    await requestJson(d, p.address, "GET", "/x");
    const { socket } = await upgrade(d, p.address, "/up", "test");
    assert.equal(p.upgraded(), 1);
    assert.equal(p.connections(), 2);
    socket.destroy();
  });

  it("an upgrade asked fresh never rides a kept-alive connection", async () => {
    const p = await peer();
    peers.push(p);
    const d = dialer();
    await requestJson(d, p.address, "GET", "/x");
    const { socket } = await upgrade(d, p.address, "/up", "test", ANY_NODE, true);
    assert.equal(p.connections(), 2);
    socket.destroy();
  });
});
