import assert from "node:assert/strict";
import https from "node:https";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { ClusterTls, createAuthority, issue, peerIdentity } from "../trust/mod.js";
import { createFront, type Front } from "./_front.js";
import { PAGE_DATA_MAGIC, TICKET_BYTES } from "./_page_tickets.js";

/** Sorting limit of the front under test: small, so the slow-sender cases end quickly. */
const SNIFF_MS = 150;

/** What a raw client got before the front closed its connection. */
function rawExchange(port: number, send: (s: net.Socket) => void): Promise<{ got: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1", () => send(s));
    const parts: Buffer[] = [];
    s.on("data", (c: Buffer) => parts.push(c));
    // A reset is how some of these end; the test looks only at what arrived.
    s.on("error", () => undefined);
    s.on("close", () => resolve({ got: Buffer.concat(parts), closed: true }));
  });
}

// Both ways of sorting: looking at the first bytes in place (the native
// addon's peek, where it is built) and reading them and putting them back.
for (const [how, peek] of [["peeking", undefined], ["reading and putting back", null]] as const) describe(`the node's front, ${how}`, () => {
  let front: Front;
  let server: https.Server;
  let port = 0;
  let client: ClusterTls;
  const pageData: { ticket: Buffer; paused: boolean }[] = [];
  const held: net.Socket[] = [];

  before(async () => {
    const ca = await createAuthority("front-test");
    const n1 = await issue(ca, { role: "node", name: "n1", hosts: ["127.0.0.1"] });
    const probe = await issue(ca, { role: "node", name: "probe" });
    const node = new ClusterTls({ ca_pem: ca.cert_pem, cert_pem: n1.cert_pem, key_pem: n1.key_pem as string });
    client = new ClusterTls({ ca_pem: ca.cert_pem, cert_pem: probe.cert_pem, key_pem: probe.key_pem as string });
    server = https.createServer(node.serverOptions(), (req, res) => res.end(`hello ${peerIdentity(req.socket)?.name ?? "nobody"}`));
    front = createFront(
      {
        tls: (socket) => void server.emit("connection", socket),
        pageData: (socket, ticket) => {
          pageData.push({ ticket: Buffer.from(ticket), paused: socket.isPaused() });
          held.push(socket);
        },
      },
      { sniff_ms: SNIFF_MS, ...(peek === null ? { peek: null } : {}) },
    );
    await new Promise<void>((r) => front.server.listen(0, "127.0.0.1", () => r()));
    server.emit("listening");
    port = (front.server.address() as net.AddressInfo).port;
  });

  after(async () => {
    for (const s of held) s.destroy();
    server.closeAllConnections();
    server.close();
    front.dropSorting();
    await new Promise((r) => front.server.close(r));
  });

  it("serves TLS as before, the client's certificate included", async () => {
    const body = await new Promise<string>((resolve, reject) => {
      https
        .get({ host: "127.0.0.1", port, path: "/", agent: false, ...client.clientOptions({ role: "node", name: "n1" }) }, (res) => {
          let text = "";
          res.on("data", (c: Buffer) => (text += c.toString()));
          res.on("end", () => resolve(text));
        })
        .on("error", reject);
    });
    assert.equal(body, "hello probe");
  });

  it("hands a page-data connection over with its ticket, even when the ticket comes in pieces", async () => {
    const ticket = Buffer.alloc(TICKET_BYTES, 7);
    const s = net.connect(port, "127.0.0.1");
    s.on("error", () => undefined);
    let closed = false;
    s.on("close", () => (closed = true));
    await new Promise((r) => s.once("connect", r));
    // Pauses so the pieces likely arrive as separate reads; the test holds either way.
    s.write(PAGE_DATA_MAGIC.subarray(0, 3));
    await new Promise((r) => setTimeout(r, 20));
    s.write(Buffer.concat([PAGE_DATA_MAGIC.subarray(3), ticket.subarray(0, 5)]));
    await new Promise((r) => setTimeout(r, 20));
    s.write(ticket.subarray(5));
    // Bounded, and over at once if the front closed the connection instead of handing it over.
    for (const deadline = Date.now() + 30_000; pageData.length === 0; await new Promise((r) => setTimeout(r, 10))) {
      assert.ok(!closed, "the front closed the page-data connection instead of handing it over");
      assert.ok(Date.now() < deadline, "no page-data connection handed over within 30 s");
    }
    assert.deepEqual(pageData.shift(), { ticket, paused: true });
    s.destroy();
  });

  it("closes, unanswered, plain HTTP, a wrong magic, and bytes past the ticket", async () => {
    for (const bytes of [Buffer.from("GET / HTTP/1.1\r\nhost: x\r\n\r\n"), Buffer.from("FRYPGS02"), Buffer.concat([PAGE_DATA_MAGIC, Buffer.alloc(TICKET_BYTES + 1)])]) {
      const r = await rawExchange(port, (s) => s.write(bytes));
      assert.equal(r.got.length, 0, `answered ${JSON.stringify(bytes.toString("latin1"))}`);
    }
    assert.equal(pageData.length, 0);
  });

  it("closes a connection that says nothing, or too little, within its limit", async () => {
    const silent = await rawExchange(port, () => undefined);
    assert.ok(silent.closed && silent.got.length === 0);
    const partial = await rawExchange(port, (s) => s.write(Buffer.concat([PAGE_DATA_MAGIC, Buffer.alloc(TICKET_BYTES - 1)])));
    assert.ok(partial.closed && partial.got.length === 0);
    assert.equal(pageData.length, 0);
  });

  it("keeps serving TLS after all of that", async () => {
    const status = await new Promise<number>((resolve, reject) => {
      https.get({ host: "127.0.0.1", port, path: "/", agent: false, ...client.clientOptions({ role: "node" }) }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      }).on("error", reject);
    });
    assert.equal(status, 200);
  });
});
