import assert from "node:assert/strict";
import net from "node:net";
import { describe, it } from "node:test";
import type { Batch, DeliverAnswer } from "../links/mod.js";
import { FramedConnection } from "../transport/mod.js";
import { FerryError } from "../errors.js";
import { LinkChannels, serveLinkChannel } from "./_link_channel.js";
import { encodeDeliver } from "./_link_frames.js";

/** A peer on 127.0.0.1 serving link channels with `receive`; `cut()` breaks every open one. */
async function peer(receive: (pid: string, batch: Batch) => Promise<DeliverAnswer>): Promise<{ address: string; opened: () => number; cut(): void; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let opened = 0;
  const server = net.createServer((socket) => {
    opened += 1;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    serveLinkChannel(new FramedConnection(socket), receive);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    opened: () => opened,
    cut: () => sockets.forEach((s) => s.destroy()),
    close: () => new Promise((r) => server.close(() => r())),
  };
}

function open(address: string): Promise<FramedConnection> {
  const i = address.lastIndexOf(":");
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(address.slice(i + 1)), address.slice(0, i), () => resolve(new FramedConnection(s)));
    s.once("error", reject);
  });
}

const batch = { from: "a", messages: [{ seq: 1, data: Buffer.from("x") }] };
/** The receiving side of a channel that only sends: no peer delivers to it here. */
const refuse = (): Promise<DeliverAnswer> => Promise.reject(new Error("nothing is delivered to this side in this test"));
/** Pids as the channel takes them (a frame naming anything else is a protocol error). */
const SLOW = "n1-1";
const FAST = "n1-2";

describe("link channel", () => {
  it("answers deliveries out of order by id, over one connection", async () => {
    const p = await peer(async (pid, body) => {
      // The first one answers last.
      await new Promise((r) => setTimeout(r, pid === SLOW ? 50 : 1));
      return { kind: "accepted", upto: body.messages.length, at: pid === SLOW ? "slow" : "fast" };
    });
    const channels = new LinkChannels(open, refuse);
    const slow = channels.deliver(p.address, "n2", SLOW, batch);
    const fast = channels.deliver(p.address, "n2", FAST, batch);
    assert.deepEqual(await fast, { kind: "accepted", upto: 1, at: "fast" });
    assert.deepEqual(await slow, { kind: "accepted", upto: 1, at: "slow" });
    assert.equal(p.opened(), 1);
    channels.close();
    await p.close();
  });

  it("fails what waits when the connection breaks, and opens a new one for the next delivery", async () => {
    let hold = true;
    let arrived = (): void => undefined;
    const taken = new Promise<void>((r) => (arrived = r));
    const p = await peer(async () => {
      arrived();
      while (hold) await new Promise((r) => setTimeout(r, 5));
      return { kind: "gone" };
    });
    const channels = new LinkChannels(open, refuse);
    const waiting = channels.deliver(p.address, "n2", SLOW, batch);
    // Cut once the delivery is at the peer: before it, there is no connection to cut.
    await taken;
    p.cut();
    await assert.rejects(waiting, /closed/);
    hold = false;
    assert.deepEqual(await channels.deliver(p.address, "n2", SLOW, batch), { kind: "gone" });
    assert.equal(p.opened(), 2);
    channels.close();
    await p.close();
  });

  it("refuses to send to what is not a pid, and drops a channel whose DELIVER fails its checks", async () => {
    const p = await peer(async () => ({ kind: "gone" }));
    const channels = new LinkChannels(open, refuse);
    try {
      await assert.rejects(channels.deliver(p.address, "n2", "not a pid", batch), (err: unknown) => err instanceof FerryError && err.code === "ERR_LINK_PROTOCOL");
      // A peer that sends a malformed DELIVER anyway (here: a receiver that is no pid) loses its channel.
      const raw = await open(p.address);
      const good = encodeDeliver(1, "n1-1", batch);
      const bad = Buffer.concat([good.subarray(0, 8), Buffer.from("n1+1"), good.subarray(12)]);
      await raw.send(1, bad);
      await assert.rejects(raw.next(), (err: unknown) => err instanceof FerryError && err.code === "ERR_CONNECTION_CLOSED");
    } finally {
      channels.close();
      await p.close();
    }
  });
  it("writes the deliveries made in one turn together, and the answers to deliveries that arrived together too", async () => {
    /** Counts the writes a socket hands to the system (one per write or writev call of the stream). */
    const counted = (s: net.Socket): { writes: number } => {
      const count = { writes: 0 };
      const w = s as unknown as { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void };
      const [write, writev] = [w._write.bind(s), w._writev.bind(s)];
      w._write = (...a) => ((count.writes += 1), write(...a));
      w._writev = (...a) => ((count.writes += 1), writev(...a));
      return count;
    };
    const server = { writes: 0, sockets: [] as net.Socket[] };
    const srv = net.createServer((socket) => {
      server.sockets.push(socket);
      const count = counted(socket);
      Object.defineProperty(server, "writes", { get: () => count.writes });
      serveLinkChannel(new FramedConnection(socket), (_pid, b) => Promise.resolve({ kind: "accepted", upto: b.messages.length, at: "there" }));
    });
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
    let client = { writes: 0 };
    const channels = new LinkChannels(
      (address) =>
        new Promise((resolve, reject) => {
          const i = address.lastIndexOf(":");
          const s = net.connect(Number(address.slice(i + 1)), address.slice(0, i), () => resolve(new FramedConnection(s)));
          client = counted(s);
          s.once("error", reject);
        }),
      refuse,
    );
    const address = `127.0.0.1:${(srv.address() as net.AddressInfo).port}`;
    // The channel is opened first, so that the deliveries below are all made while it stands.
    assert.equal((await channels.deliver(address, "n2", FAST, batch)).kind, "accepted");
    const [client_before, server_before] = [client.writes, server.writes];
    const n = 20;
    const answers = await Promise.all(Array.from({ length: n }, (_, i) => channels.deliver(address, "n2", `n1-${i + 1}`, batch)));
    assert.ok(answers.every((a) => a.kind === "accepted"));
    assert.equal(client.writes - client_before, 1, `${n} deliveries made in one turn, in one write`);
    // They arrive in one read, or a few: their answers go out as they are read, not one write each.
    assert.ok(server.writes - server_before < n / 2, `${n} answers in ${server.writes - server_before} writes`);
    channels.close();
    for (const s of server.sockets) s.destroy();
    await new Promise((r) => srv.close(r));
  });

  it("uses one connection per pair of nodes both ways: the node that was opened to sends its own deliveries back on it", async () => {
    const got: string[] = [];
    let b_opened = 0;
    const receive =
      (at: string) =>
      async (pid: string, b: Batch, peer: string | null): Promise<DeliverAnswer> => {
        got.push(`${at}:${pid}<-${peer}`);
        return { kind: "accepted", upto: b.messages.length, at };
      };
    const b = new LinkChannels(() => {
      b_opened += 1;
      return Promise.reject(new Error("node b must not open a connection of its own"));
    }, receive("b"));
    const a_server = net.createServer(() => assert.fail("node a must not be connected to"));
    const b_server = net.createServer((socket) => b.accept("a", new FramedConnection(socket)));
    for (const s of [a_server, b_server]) await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
    const a = new LinkChannels(open, receive("a"));
    const address = (s: net.Server): string => `127.0.0.1:${(s.address() as net.AddressInfo).port}`;
    try {
      assert.deepEqual(await a.deliver(address(b_server), "b", "b-1", batch), { kind: "accepted", upto: 1, at: "b" });
      assert.deepEqual(await b.deliver(address(a_server), "a", "a-1", batch), { kind: "accepted", upto: 1, at: "a" });
      assert.deepEqual(await a.deliver(address(b_server), "b", "b-2", batch), { kind: "accepted", upto: 1, at: "b" });
      assert.deepEqual(got, ["b:b-1<-a", "a:a-1<-b", "b:b-2<-a"]);
      assert.equal(b_opened, 0);
    } finally {
      a.close();
      b.close();
      for (const s of [a_server, b_server]) await new Promise((r) => s.close(r));
    }
  });

  it("an answer rides with the next delivery going its way, or goes once enough answers wait", async () => {
    // A hold far past the test's length: an answer leaves only with a delivery or with ANSWERS_HELD_MAX others.
    const options = { answer_hold_ms: 600_000 };
    /** Resolves once the delivery for `pid` has been handed to its receiver. */
    const arrivals = new Map<string, { seen: Promise<void>; see: () => void }>();
    const arrival = (pid: string): { seen: Promise<void>; see: () => void } => {
      let a = arrivals.get(pid);
      if (a === undefined) {
        let see = (): void => undefined;
        const seen = new Promise<void>((r) => (see = r));
        a = { seen, see };
        arrivals.set(pid, a);
      }
      return a;
    };
    const taken = (pid: string): Promise<void> => arrival(pid).seen;
    const receive = async (pid: string, b: Batch): Promise<DeliverAnswer> => {
      arrival(pid).see();
      return { kind: "accepted", upto: b.messages.length, at: "here" };
    };
    const b = new LinkChannels(() => Promise.reject(new Error("not used")), receive, options);
    const b_server = net.createServer((socket) => b.accept("a", new FramedConnection(socket)));
    await new Promise<void>((r) => b_server.listen(0, "127.0.0.1", () => r()));
    const a = new LinkChannels(open, receive, options);
    const address = `127.0.0.1:${(b_server.address() as net.AddressInfo).port}`;
    try {
      let answered = false;
      const first = a.deliver(address, "b", "b-1", batch).then((x) => ((answered = true), x));
      await taken("b-1");
      // Taken, and its answer held: nothing written by b yet.
      // A few turns of the event loop pass, and the answer is still held.
      for (let i = 0; i < 5; i += 1) await new Promise((r) => setImmediate(r));
      assert.equal(await b.writes("a"), 0);
      assert.equal(answered, false);
      // b's reply carries the answer: one write for both.
      const reply = b.deliver("unused", "a", "a-1", batch);
      assert.deepEqual(await first, { kind: "accepted", upto: 1, at: "here" });
      assert.equal(await b.writes("a"), 1);
      // ...and a's answer to the reply is held in turn, until a's next delivery.
      await taken("a-1");
      const second = a.deliver(address, "b", "b-2", batch);
      assert.deepEqual(await reply, { kind: "accepted", upto: 1, at: "here" });
      await taken("b-2");
      // One way only: answers leave in fours (the fourth delivery's answer sends all four held).
      const more = ["b-3", "b-4", "b-5"].map((pid) => a.deliver(address, "b", pid, batch));
      for (const x of await Promise.all([second, ...more])) assert.equal(x.kind, "accepted");
      assert.equal(await b.writes("a"), 2);
    } finally {
      a.close();
      b.close();
      await new Promise((r) => b_server.close(r));
    }
  });
  it("an answer a sender may be waiting on goes at once, however long the hold: one that took less than its batch, one of many messages", async () => {
    const options = { answer_hold_ms: 600_000 };
    // b takes every message, but only two of those for b-1 (its inbox is full, say).
    const receive = async (pid: string, b: Batch): Promise<DeliverAnswer> => ({ kind: "accepted", upto: pid === "b-1" ? 2 : b.messages.length, at: "here" });
    const b = new LinkChannels(() => Promise.reject(new Error("not used")), receive, options);
    const b_server = net.createServer((socket) => b.accept("a", new FramedConnection(socket)));
    await new Promise<void>((r) => b_server.listen(0, "127.0.0.1", () => r()));
    const a = new LinkChannels(open, refuse, options);
    const address = `127.0.0.1:${(b_server.address() as net.AddressInfo).port}`;
    const messages = (n: number): Batch => ({ from: "a", messages: Array.from({ length: n }, (_, i) => ({ seq: i + 1, data: Buffer.from("x") })) });
    try {
      // Three messages, two taken: the sender stops until it hears, so b answers alone, now.
      assert.deepEqual(await a.deliver(address, "b", "b-1", messages(3)), { kind: "accepted", upto: 2, at: "here" });
      assert.equal(await b.writes("a"), 1);
      // A batch answered in full is held (a few turns pass: still held)...
      let answered = false;
      const small = a.deliver(address, "b", "b-2", messages(2)).then((x) => ((answered = true), x));
      for (let i = 0; i < 20; i += 1) await new Promise((r) => setImmediate(r));
      assert.equal(answered, false);
      // ...until answers of as many messages as a streaming sender may be waiting on are held.
      assert.deepEqual(await a.deliver(address, "b", "b-3", messages(62)), { kind: "accepted", upto: 62, at: "here" });
      assert.deepEqual(await small, { kind: "accepted", upto: 2, at: "here" });
      assert.equal(await b.writes("a"), 2);
    } finally {
      a.close();
      b.close();
      await new Promise((r) => b_server.close(r));
    }
  });
});
