import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { nativeRecordSealer, RecordDirection, RecordSealer } from "../memory/mod.js";
import { allocateControl, LaneState, SLOT_NET_LANE_BROKEN, SLOT_NET_LANE_FD, SLOT_NET_LANE_GEN, SLOT_NET_LANE_STATE, NET_LANE_KEY_OFFSET } from "../runtime/_control.js";
import { LANE_FRAME_HEAD_BYTES } from "../runtime/_lane_writer.js";
import { NetLaneFrame, NetLaneWriter } from "../runtime/_net_lane_writer.js";
import { encodeOffset } from "./_net_frames.js";
import { dialNetLane, NetLaneDoors } from "./_net_lanes.js";
import { client, ticketFront } from "./_lanes_testing.js";
import { NET_HOME_HELD_BYTES_MAX, NetHome, type NetDownlink } from "./net_home.js";
import { NetLink, type NetLine } from "./net_link.js";
import { NET_AREA_BYTES, NetArea, type GuestProcess } from "../runtime/mod.js";

/** The first connection on the first listener. */
const C0 = { listener: 0, seq: 0 };
const NATIVE = nativeRecordSealer(new Uint8Array(32), RecordDirection.to_destination) !== null;

async function until(what: string, check: () => boolean, timeout_ms = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > timeout_ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A downlink that hears nothing of interest here. */
function quiet(): NetDownlink {
  return { arrived: () => undefined, data: () => undefined, end: () => undefined, written: () => undefined, superseded: () => undefined };
}

/** A SEND frame as the worker writes it: u32 body length, u8 type, `ferry-net/2`'s BYTES body. */
function sendFrame(offset: number, text: string): Buffer {
  const body = Buffer.concat([encodeOffset(C0, offset), Buffer.from(text, "latin1")]);
  const head = Buffer.alloc(LANE_FRAME_HEAD_BYTES);
  head.writeUInt32LE(body.length, 0);
  head.writeUInt8(NetLaneFrame.send, 4);
  return Buffer.concat([head, body]);
}

const closed = (socket: net.Socket): Promise<void> => new Promise((r) => (socket.destroyed ? r() : socket.once("close", () => r())));

describe("the home writes outgoing bytes by offset, whichever way they came", () => {
  const homes: NetHome[] = [];
  after(() => {
    for (const h of homes) h.close();
  });

  it("bytes past a gap wait for it to fill; each byte is written once; no more than NET_HOME_HELD_BYTES_MAX is held", async () => {
    const home = await NetHome.listen("p-1", ["127.0.0.1:0"]);
    homes.push(home);
    const up = home.attach({ known: [0], conns: [] }, quiet());
    const c = await client(home.addresses[0] as string);
    await until("the connection", () => home.connections === 1);
    up.send(C0, 6, Buffer.from("ghi"));
    up.send(C0, 3, Buffer.from("def"));
    up.send(C0, 6, Buffer.from("ghi")); // the same bytes again, both held
    up.send(C0, 0, Buffer.from("abc"));
    await until("the bytes in order", () => c.got() === "abcdefghi");
    up.send(C0, 3, Buffer.from("defghijkl"));
    await until("only the new bytes of a resend", () => c.got() === "abcdefghijkl");
    // Held past the bound: dropped (the runner sends them again at its next resend).
    up.send(C0, 100, Buffer.alloc(NET_HOME_HELD_BYTES_MAX + 1, "x"));
    up.send(C0, 50, Buffer.from("Y"));
    up.send(C0, 12, Buffer.alloc(38, "-"));
    up.shutdown(C0, 51);
    await until("the end of the stream", () => c.ended());
    assert.equal(c.got(), `abcdefghijkl${"-".repeat(38)}Y`);
    c.socket.destroy();
  });
});

describe("net lanes: the home's doors and server", () => {
  const doors = new NetLaneDoors();
  const homes: NetHome[] = [];
  let front: net.Server;
  let address = "";
  before(async () => {
    ({ server: front, address } = await ticketFront((socket, ticket) => doors.accept(socket, ticket)));
  });
  after(async () => {
    doors.close();
    for (const h of homes) h.close();
    await new Promise((r) => front.close(r));
  });

  /** A lane of session `session` through a fresh door: its socket, and a writer of sealed records as the worker's. */
  async function open(home: NetHome, session: number): Promise<{ socket: net.Socket; write: (frame: Buffer) => void; ticket: Buffer }> {
    const grant = doors.issue(home, session);
    assert.ok(grant !== null);
    const socket = await dialNetLane(address, grant.ticket);
    const sealer = new RecordSealer(grant.keys.to_destination, RecordDirection.to_destination);
    return { socket, write: (frame) => socket.write(Buffer.concat(sealer.seal([frame]))), ticket: grant.ticket };
  }

  it("writes a lane's bytes as the channel's, in offset order across both; a ticket opens one lane", { timeout: 30_000 }, async () => {
    const home = await NetHome.listen("p-2", ["127.0.0.1:0"]);
    homes.push(home);
    const up = home.attach({ known: [0], conns: [] }, quiet());
    const c = await client(home.addresses[0] as string);
    await until("the connection", () => home.connections === 1);
    const lane = await open(home, up.id);
    const before = doors.bytes;
    lane.write(sendFrame(0, "hello "));
    // The lane ahead of the channel: held until the channel's bytes come.
    lane.write(sendFrame(11, "!!"));
    await until("the lane's first bytes", () => c.got() === "hello ");
    up.send(C0, 6, Buffer.from("world"));
    await until("both, in order", () => c.got() === "hello world!!");
    // Sent again on the channel (the runner's resend): nothing is written twice.
    up.send(C0, 0, Buffer.from("hello world!!"));
    lane.write(sendFrame(13, "."));
    await until("the next byte", () => c.got() === "hello world!!.");
    assert.equal(doors.bytes - before, 9);
    await assert.rejects(dialNetLane(address, lane.ticket), "a ticket is spent on its first use");
    lane.socket.destroy();
    c.socket.destroy();
  });

  it("closes a lane whose session is over, unwritten, and drops one that is not authentic", { timeout: 30_000 }, async () => {
    const home = await NetHome.listen("p-3", ["127.0.0.1:0"]);
    homes.push(home);
    const up1 = home.attach({ known: [0], conns: [] }, quiet());
    const c = await client(home.addresses[0] as string);
    await until("the connection", () => home.connections === 1);
    const old = await open(home, up1.id);
    old.write(sendFrame(0, "one"));
    await until("the first session's bytes", () => c.got() === "one");
    // A new runner attached (the process moved): what comes on the old session's lane is not written, and the lane closes.
    const up2 = home.attach({ known: [1], conns: [{ listener: 0, seq: 0, received: 0 }] }, quiet());
    old.write(sendFrame(3, "STALE"));
    await closed(old.socket);
    up2.send(C0, 3, Buffer.from("two"));
    await until("the new session's bytes", () => c.got() === "onetwo");

    // Records under another key are not authentic: the lane is dropped, and nothing of them is written.
    const forged = await open(home, up2.id);
    const wrong = new RecordSealer(new Uint8Array(32).fill(9), RecordDirection.to_destination);
    forged.socket.write(Buffer.concat(wrong.seal([sendFrame(6, "FORGED")])));
    await closed(forged.socket);
    up2.shutdown(C0, 6);
    await until("the end of the stream", () => c.ended());
    assert.equal(c.got(), "onetwo");
    c.socket.destroy();
  });

  it("serves a bounded number of lanes: past it, no door is opened", { timeout: 30_000 }, async () => {
    const home = await NetHome.listen("p-4", ["127.0.0.1:0"]);
    homes.push(home);
    const up = home.attach({ known: [0], conns: [] }, quiet());
    const small = new NetLaneDoors({ served_max: 1 });
    const grant = small.issue(home, up.id);
    assert.ok(grant !== null);
    // Served through a front of its own: the small doors take the connection instead of the shared ones.
    const { server, address: small_address } = await ticketFront((s, ticket) => small.accept(s, ticket));
    const socket = await dialNetLane(small_address, grant.ticket);
    await until("the lane served", () => small.size === 1);
    assert.equal(small.issue(home, up.id), null);
    socket.destroy();
    await until("the lane gone", () => small.size === 0);
    assert.ok(small.issue(home, up.id) !== null);
    small.close();
    await new Promise((r) => server.close(r));
  });

  it("the worker's writer: writes only under an offer it took, gives a revoked lane up, and will not write on one an earlier worker took", { timeout: 30_000, skip: NATIVE ? false : "the native addon is not built" }, async () => {
    const home = await NetHome.listen("p-5", ["127.0.0.1:0"]);
    homes.push(home);
    const up = home.attach({ known: [0], conns: [] }, quiet());
    const c = await client(home.addresses[0] as string);
    await until("the connection", () => home.connections === 1);
    const grant = doors.issue(home, up.id);
    assert.ok(grant !== null);
    const socket = await dialNetLane(address, grant.ticket);
    const buffers = allocateControl();
    const control = new Int32Array(buffers.control);
    const writer = new NetLaneWriter(buffers.control);
    const write = (w: NetLaneWriter, offset: number, text: string): number => w.write(0, 0, offset, Buffer.from(text));
    assert.equal(write(writer, 0, "no lane"), 0);
    // Offered as GuestProcess.offerNetLane does: key, generation, socket, then the state.
    new Uint8Array(buffers.control, NET_LANE_KEY_OFFSET, 32).set(grant.keys.to_destination);
    Atomics.store(control, SLOT_NET_LANE_GEN, 7);
    Atomics.store(control, SLOT_NET_LANE_FD, (socket as unknown as { _handle: { fd: number } })._handle.fd);
    Atomics.store(control, SLOT_NET_LANE_STATE, LaneState.offered);
    assert.equal(write(writer, 0, "abc"), 7);
    assert.equal(Atomics.load(control, SLOT_NET_LANE_STATE), LaneState.active);
    assert.equal(write(writer, 3, "def"), 7);
    await until("the lane's bytes", () => c.got() === "abcdef");
    // A new worker of the same process (it hibernated): it does not know how many records the first sealed.
    const next = new NetLaneWriter(buffers.control);
    assert.equal(write(next, 6, "ghi"), 0);
    assert.equal(Atomics.load(control, SLOT_NET_LANE_BROKEN), 7);
    // Revoked: neither writes.
    Atomics.store(control, SLOT_NET_LANE_STATE, LaneState.none);
    assert.equal(write(writer, 6, "ghi"), 0);
    up.send(C0, 6, Buffer.from("ghi"));
    up.shutdown(C0, 9);
    await until("the end of the stream", () => c.ended());
    assert.equal(c.got(), "abcdefghi");
    socket.destroy();
    c.socket.destroy();
  });
});

describe("net lanes: the runner's side", () => {
  it("bytes a lane carried go on the line too before a FLUSH and before the close of their connection, and at once when the worker's lane is not the open one", { timeout: 30_000 }, async () => {
    // A socket for the lane (nothing is read from it here), and a line that writes down what it is told.
    const sink = net.createServer((s) => s.resume());
    await new Promise<void>((r) => sink.listen(0, "127.0.0.1", () => r()));
    const port = (sink.address() as net.AddressInfo).port;
    const told: string[] = [];
    const line: NetLine = {
      send: (c, offset, bytes) => void told.push(`send ${c.seq}@${offset} ${Buffer.from(bytes).toString()}`),
      shutdown: (c, offset) => void told.push(`shutdown ${c.seq}@${offset}`),
      close: (c, offset) => void told.push(`close ${c.seq}@${offset}`),
      unlisten: () => undefined,
      consumed: () => undefined,
      flush: () => {
        told.push("flush");
        return Promise.resolve();
      },
      detach: () => undefined,
      lane: async () => {
        const socket = net.connect({ host: "127.0.0.1", port });
        await new Promise<void>((r) => socket.once("connect", () => r()));
        return { socket, key: new Uint8Array(32) };
      },
    };
    let gen = 0;
    const area = new NetArea(new SharedArrayBuffer(NET_AREA_BYTES));
    const proc = {
      net: area,
      wake: () => undefined,
      offerNetLane: (lane: { gen: number }) => {
        gen = lane.gen;
        return true;
      },
      revokeNetLane: () => true,
      netLaneBroken: 0,
    } as unknown as GuestProcess;
    // The descriptor is the socket's own: closing the lane's socket closes it.
    const link = new NetLink("p-9", () => Promise.resolve(line), { lanes: { dup: (fd) => fd, closeFd: () => undefined } });
    link.bind(proc);
    link.start({
      listeners: [{ listener: 0, accepted: 2 }],
      conns: [
        { listener: 0, seq: 0, received: 0, sent: 0, shut_wr: false },
        { listener: 0, seq: 1, received: 0, sent: 0, shut_wr: false },
      ],
    });
    await until("the lane offered", () => gen !== 0);
    link.send({ listener: 0, seq: 0 }, 0, Buffer.from("a0"), gen);
    link.send({ listener: 0, seq: 1 }, 0, Buffer.from("b0"), gen);
    assert.deepEqual(told, [], "on the lane only");
    link.send({ listener: 0, seq: 1 }, 2, Buffer.from("b1"), gen + 1000);
    assert.deepEqual(told, ["send 1@2 b1"], "written on another lane than the open one: on the line at once");
    link.close({ listener: 0, seq: 1 }, 4);
    assert.deepEqual(told.slice(1), ["send 1@0 b0", "close 1@4"], "a closed connection's laned bytes go before its close");
    told.length = 0;
    await link.flush();
    assert.deepEqual(told, ["send 0@0 a0", "flush"], "the rest before the FLUSH");
    link.detach();
    await new Promise((r) => sink.close(r));
  });
});
