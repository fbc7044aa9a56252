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
    const channels = new LinkChannels(open);
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
    const p = await peer(async () => {
      while (hold) await new Promise((r) => setTimeout(r, 5));
      return { kind: "gone" };
    });
    const channels = new LinkChannels(open);
    const waiting = channels.deliver(p.address, "n2", SLOW, batch);
    await new Promise((r) => setTimeout(r, 30));
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
    const channels = new LinkChannels(open);
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
});
