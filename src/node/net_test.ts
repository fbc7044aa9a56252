import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import type { Duplex } from "node:stream";
import { NetHome, parseListenAddress, type NetDownlink } from "./net_home.js";
import { NetLink, type NetAttach } from "./net_link.js";
import { acceptNetLine, connectNetLine, Frame, openNetChannel } from "./_net_wire.js";
import { FramedConnection } from "../transport/mod.js";
import { ClusterTls, createAuthority, issue } from "../trust/mod.js";
import { Dialer } from "./_dialer.js";
import { client } from "./_lanes_testing.js";

/** The unit test speaks plain HTTP: TLS is tested with real nodes (test/security.test.ts). */
const PLAIN = new Dialer(null);
import { NET_AREA_BYTES, NET_SEND_WINDOW, NetArea, type GuestProcess } from "../runtime/mod.js";

/** The first connection on the first listener. */
const C0 = { listener: 0, seq: 0 };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => boolean, timeout_ms = 5000): Promise<void> {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > timeout_ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** A downlink that writes down what it hears. */
function recorder(): NetDownlink & { events: string[]; bytes: Map<string, string> } {
  const events: string[] = [];
  const bytes = new Map<string, string>();
  return {
    events,
    bytes,
    arrived: (c) => void events.push(`arrived ${c.listener}.${c.seq}`),
    data: (c, offset, b) => {
      events.push(`data ${c.listener}.${c.seq}@${offset} ${Buffer.from(b).toString()}`);
      bytes.set(`${c.listener}.${c.seq}`, (bytes.get(`${c.listener}.${c.seq}`) ?? "") + Buffer.from(b).toString());
    },
    end: (c, how) => void events.push(`end ${c.listener}.${c.seq} ${how}`),
    written: (c, offset) => void events.push(`written ${c.listener}.${c.seq}@${offset}`),
    superseded: () => void events.push("superseded"),
  };
}

describe("TCP relay (home and runner)", () => {
  const homes: NetHome[] = [];
  after(() => {
    for (const h of homes) h.close();
  });

  it("listen addresses are HOST:PORT; a port taken is ERR_LISTEN with nothing left bound", async () => {
    assert.deepEqual(parseListenAddress("127.0.0.1:80"), { host: "127.0.0.1", port: 80 });
    assert.deepEqual(parseListenAddress("[::1]:0"), { host: "::1", port: 0 });
    for (const bad of ["127.0.0.1", ":80", "h:99999", "a b:1"]) assert.throws(() => parseListenAddress(bad), /HOST:PORT/);
    const home = await NetHome.listen("p-1", ["127.0.0.1:0"]);
    homes.push(home);
    await assert.rejects(NetHome.listen("p-2", ["127.0.0.1:0", home.addresses[0] as string]), (e: Error & { code?: string }) => e.code === "ERR_LISTEN");
  });

  it("the home writes each outgoing byte once, resends incoming bytes from the offset a new runner has, and ignores a superseded one", async () => {
    const home = await NetHome.listen("p-3", ["127.0.0.1:0"]);
    homes.push(home);
    const first = recorder();
    const up1 = home.attach({ known: [0], conns: [] }, first);
    const c = await client(home.addresses[0] as string);
    c.socket.write("hello");
    await until("the bytes", () => first.bytes.get("0.0") === "hello");
    assert.equal(first.events[0], "arrived 0.0");
    up1.send(C0, 0, Buffer.from("abc"));
    up1.send(C0, 0, Buffer.from("abc"));
    up1.send(C0, 1, Buffer.from("bcd"));
    up1.send(C0, 9, Buffer.from("gap"));
    await until("the reply", () => c.got() === "abcd");
    up1.consumed(C0, 2);

    // A new runner, holding the connection with 2 bytes taken in (from its image).
    const second = recorder();
    const up2 = home.attach({ known: [1], conns: [{ listener: 0, seq: 0, received: 2 }] }, second);
    assert.deepEqual(first.events.slice(-1), ["superseded"]);
    assert.deepEqual(second.events, ["written 0.0@4", "data 0.0@2 llo"]);
    up1.send(C0, 4, Buffer.from("STALE"));
    up2.send(C0, 4, Buffer.from("ef"));
    up2.shutdown(C0, 6);
    await until("the end of the outgoing stream", () => c.ended());
    assert.equal(c.got(), "abcdef");
    c.socket.end("!");
    await until("the peer's end", () => second.events.includes("end 0.0 eof"));
    assert.deepEqual(second.events.slice(2), ["written 0.0@6", "data 0.0@5 !", "end 0.0 eof"]);

    // A connection not yet accepted when the image was taken is announced again, bytes and all.
    const d = await client(home.addresses[0] as string);
    d.socket.write("early");
    await until("the second connection", () => second.bytes.get("0.1") === "early");
    const third = recorder();
    home.attach({ known: [1], conns: [{ listener: 0, seq: 0, received: 6 }] }, third);
    assert.deepEqual(third.events, ["written 0.0@6", "end 0.0 eof", "arrived 0.1", "data 0.1@0 early"]);
    d.socket.destroy();
    c.socket.destroy();
  });

  it("over ferry-net/2: a broken channel is reattached, and nothing is lost or repeated either way", async () => {
    const home = await NetHome.listen("p-4", ["127.0.0.1:0"]);
    homes.push(home);
    const upgraded = new Set<Duplex>();
    const server = http.createServer();
    server.on("upgrade", (req, socket: Duplex, head: Buffer) => {
      upgraded.add(socket);
      acceptNetLine(req, socket, head, (pid) => (pid === "p-4" ? home : undefined));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const address = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    try {
      // No such process at that home: the attach is refused, with the reason.
      await assert.rejects(
        connectNetLine(PLAIN, address, "n1", { pid: "p-9", hello: { known: [], conns: [] }, down: recorder(), broken: () => undefined }),
        (e: Error & { code?: string }) => e.code === "ERR_NO_SUCH_PROCESS",
      );
      const area = new NetArea(new SharedArrayBuffer(NET_AREA_BYTES));
      let wakes = 0;
      const proc = { net: area, wake: () => (wakes += 1) } as unknown as GuestProcess;
      const link = new NetLink("p-4", (attach) => connectNetLine(PLAIN, address, "n1", { pid: "p-4", ...attach }));
      link.bind(proc);
      link.start({ listeners: [{ listener: 0, accepted: 0 }], conns: [] });
      const c = await client(home.addresses[0] as string);
      await until("the connection's slot", () => area.find(0, 0) >= 0);
      const slot = area.find(0, 0);
      let incoming = "";
      const drain = (): void => {
        const got = area.read(slot, 1 << 20, false);
        if (typeof got !== "string") {
          incoming += Buffer.from(got).toString();
          link.read({ listener: 0, seq: 0 });
        }
      };
      c.socket.write("ping");
      await until("ping", () => (drain(), incoming === "ping"));
      area.sending(slot, 4);
      link.send({ listener: 0, seq: 0 }, 0, Buffer.from("pong"));
      await until("pong", () => c.got() === "pong");
      await link.flush();

      // Cut the channel; both sides keep talking meanwhile.
      for (const s of upgraded) s.destroy();
      area.sending(slot, 3);
      link.send({ listener: 0, seq: 0 }, 4, Buffer.from("xyz"));
      c.socket.write("more");
      await until("the rest, after the reattach", () => (drain(), incoming === "pingmore" && c.got() === "pongxyz"));
      await link.flush();
      assert.equal(area.room(slot), NET_SEND_WINDOW, "every byte sent is confirmed: the window is whole again");
      assert.ok(wakes > 0);
      link.close({ listener: 0, seq: 0 }, 7);
      await until("the close", () => c.ended());
      assert.equal(c.got(), "pongxyz");
      assert.equal(area.find(0, 0), -1, "the slot is free again");
      link.detach();
      c.socket.destroy();
    } finally {
      for (const s of upgraded) s.destroy();
      await new Promise((r) => server.close(r));
    }
  });

  it("a line opened ahead is attached on when the process lands, with no new connection; one closed meanwhile fails as a broken line does", async () => {
    const home = await NetHome.listen("p-5", ["127.0.0.1:0"]);
    homes.push(home);
    const upgraded: Duplex[] = [];
    const server = http.createServer();
    server.on("upgrade", (req, socket: Duplex, head: Buffer) => {
      upgraded.push(socket);
      acceptNetLine(req, socket, head, (pid) => (pid === "p-5" ? home : undefined));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const address = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    try {
      const ahead = await openNetChannel(PLAIN, address, "n1", "p-5");
      assert.equal(upgraded.length, 1);
      // A client arrives while the process is still on its way.
      const c = await client(home.addresses[0] as string);
      c.socket.write("hello");
      const down = recorder();
      const line = await connectNetLine(PLAIN, address, "n1", { pid: "p-5", hello: { known: [0], conns: [] }, down, broken: () => undefined }, ahead);
      assert.equal(upgraded.length, 1, "attached on the line opened ahead");
      await until("the connection and its bytes", () => down.bytes.get("0.0") === "hello");
      line.send({ listener: 0, seq: 0 }, 0, Buffer.from("world"));
      await until("the reply", () => c.got() === "world");
      line.detach();
      c.socket.destroy();

      // Opened ahead, then closed (the home waited for its HELLO too long, say): attaching on it fails.
      const closed = await openNetChannel(PLAIN, address, "n1", "p-5");
      const gone = new Promise((r) => closed.socket.once("close", r));
      (upgraded.at(-1) as Duplex).destroy();
      await gone;
      await assert.rejects(connectNetLine(PLAIN, address, "n1", { pid: "p-5", hello: { known: [1], conns: [] }, down: recorder(), broken: () => undefined }, closed));
    } finally {
      for (const s of upgraded) s.destroy();
      await new Promise((r) => server.close(r));
    }
  });

  it("a move that fails after the destination attached: the source takes its connections up again where they were", async () => {
    const home = await NetHome.listen("p-5", ["127.0.0.1:0"]);
    homes.push(home);
    const local = ({ hello, down }: NetAttach) => {
      const up = home.attach(hello, down);
      return Promise.resolve({ ...up, flush: () => Promise.resolve(), detach: () => home.detach(up) });
    };
    const fake = (): { proc: GuestProcess; area: NetArea } => {
      const area = new NetArea(new SharedArrayBuffer(NET_AREA_BYTES));
      return { area, proc: { net: area, wake: () => undefined } as unknown as GuestProcess };
    };
    const source = fake();
    const a = new NetLink("p-5", local);
    a.bind(source.proc);
    a.start({ listeners: [{ listener: 0, accepted: 0 }], conns: [] });
    const c = await client(home.addresses[0] as string);
    c.socket.write("one");
    await until("the first bytes at the source", () => area_text(source.area, false) === "one");
    // The source stops: flush, freeze; the destination attaches from the image (nothing consumed), then fails.
    await a.flush();
    a.freeze();
    const dest = fake();
    const b = new NetLink("p-5", local);
    b.bind(dest.proc);
    b.start({ listeners: [{ listener: 0, accepted: 1 }], conns: [{ listener: 0, seq: 0, received: 0, sent: 0, shut_wr: false }] });
    await until("the bytes at the destination", () => area_text(dest.area, false) === "one");
    b.detach();
    c.socket.write("two");
    a.resume();
    await until("the source attached again, with everything once", () => area_text(source.area, false) === "onetwo");
    a.send({ listener: 0, seq: 0 }, 0, Buffer.from("ok"));
    await until("the reply", () => c.got() === "ok");
    a.detach();
    c.socket.destroy();
  });

  it("a home that stays unreachable: the guest's connections reset instead of waiting forever", async () => {
    const home = await NetHome.listen("p-6", ["127.0.0.1:0"]);
    homes.push(home);
    let reachable = true;
    let breakLine: (() => void) | null = null;
    const link = new NetLink(
      "p-6",
      ({ hello, down, broken }) => {
        if (!reachable) return Promise.reject(new Error("unreachable"));
        const up = home.attach(hello, down);
        breakLine = () => {
          home.detach(up);
          broken();
        };
        return Promise.resolve({ ...up, flush: () => Promise.resolve(), detach: () => home.detach(up) });
      },
      { home_lost_ms: 300 },
    );
    const area = new NetArea(new SharedArrayBuffer(NET_AREA_BYTES));
    link.bind({ net: area, wake: () => undefined } as unknown as GuestProcess);
    link.start({ listeners: [{ listener: 0, accepted: 0 }], conns: [] });
    const c = await client(home.addresses[0] as string);
    c.socket.write("last words");
    await until("the bytes", () => area_text(area, false) === "last words");
    reachable = false;
    (breakLine as unknown as () => void)();
    const slot = area.find(0, 0);
    assert.equal(area.room(slot), NET_SEND_WINDOW, "not yet: a home may come back");
    await until("the reset", () => area.room(slot) === "reset", 5000);
    assert.equal(area_text(area, true), "last words", "what arrived is still read first");
    assert.equal(area.read(slot, 10, false), "reset");
    link.detach();
    c.socket.destroy();
  });
});

describe("attaching with a net lane wanted at once", () => {
  it("asks for the lane with the HELLO, before ATTACHED, and the line's first lane() takes that grant without asking again", { timeout: 30_000 }, async () => {
    const ca = await createAuthority("net-test");
    const n1 = await issue(ca, { role: "node", name: "n1", hosts: ["127.0.0.1"] });
    const n2 = await issue(ca, { role: "node", name: "n2" });
    const home_tls = new ClusterTls({ ca_pem: ca.cert_pem, cert_pem: n1.cert_pem, key_pem: n1.key_pem as string });
    const dialer = new Dialer(new ClusterTls({ ca_pem: ca.cert_pem, cert_pem: n2.cert_pem, key_pem: n2.key_pem as string }));
    // A stand-in home: it answers ATTACHED only once the frame after the HELLO came, and writes down every frame.
    const seen: number[] = [];
    const upgraded: Duplex[] = [];
    const server = https.createServer(home_tls.serverOptions());
    server.on("upgrade", (_req, socket: Duplex, head: Buffer) => {
      upgraded.push(socket);
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: ferry-net/2\r\nconnection: Upgrade\r\n\r\n`);
      const conn = new FramedConnection(socket, { head });
      void (async () => {
        try {
          for await (const f of conn) {
            seen.push(f.type);
            if (seen.length === 2) {
              await conn.send(Frame.attached, Buffer.from("{}"));
              // No lane to give: the empty grant.
              await conn.send(Frame.lane_grant, new Uint8Array(0));
            }
          }
        } catch {
          // The test ends it.
        }
      })();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const address = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    try {
      const line = await connectNetLine(dialer, address, "n1", { pid: "p-7", hello: { known: [0], conns: [] }, down: recorder(), broken: () => undefined, lane: true });
      assert.deepEqual(seen, [Frame.hello, Frame.lane_ask], "the lane's ask came with the HELLO, before ATTACHED");
      assert.equal(await line.lane(), null, "the home granted none");
      // A later lane is asked for anew; the first took the early grant.
      const again = line.lane();
      await until("the second ask", () => seen.length === 3);
      assert.deepEqual(seen, [Frame.hello, Frame.lane_ask, Frame.lane_ask]);
      line.detach();
      assert.equal(await again, null);
    } finally {
      for (const s of upgraded) s.destroy();
      dialer.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});

/** What a slot's ring holds unread, without consuming it. */
function area_text(area: NetArea, consume: boolean): string {
  const slot = area.find(0, 0);
  if (slot < 0) return "";
  const got = area.read(slot, 1 << 20, !consume);
  return typeof got === "string" ? "" : Buffer.from(got).toString();
}
