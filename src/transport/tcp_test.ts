/** FramedConnection over real TCP on 127.0.0.1: delivery, backpressure end to end, a peer that dies. */
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, connect, type AddressInfo, type Server, type Socket } from "node:net";
import { after, before, test } from "node:test";
import { setImmediate as tick } from "node:timers/promises";

import { TransportError } from "../errors.js";
import { pumpSlowly } from "./_testing.js";
import { FRAME_BYTES_MAX, FramedConnection, encodeFrame } from "./mod.js";

let server: Server;
const sockets: Socket[] = [];
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown): void => void unhandled.push(reason);

before(async () => {
  process.on("unhandledRejection", onUnhandled);
  server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
});

after(async () => {
  for (const socket of sockets) socket.destroy();
  server.close();
  await once(server, "close");
  await tick();
  process.off("unhandledRejection", onUnhandled);
  assert.deepEqual(unhandled, []);
});

/** A connected pair of sockets: [client, accepted]. */
async function tcpPair(): Promise<[Socket, Socket]> {
  const accepted = once(server, "connection") as Promise<[Socket]>;
  const client = connect((server.address() as AddressInfo).port, "127.0.0.1");
  sockets.push(client);
  await once(client, "connect");
  const [peer] = await accepted;
  sockets.push(peer);
  return [client, peer];
}

function isClosed(error: unknown): boolean {
  return error instanceof TransportError && error.code === "ERR_CONNECTION_CLOSED";
}

test("frames of every size up to FRAME_BYTES_MAX cross a socket intact", async () => {
  const [client, peer] = await tcpPair();
  const a = new FramedConnection(client);
  const b = new FramedConnection(peer);
  const sizes = [0, 1, 4095, 65_536, 300_000, FRAME_BYTES_MAX - 1];
  for (const [i, size] of sizes.entries()) await a.send(i, new Uint8Array(size).fill(i + 1));
  for (const [i, size] of sizes.entries()) {
    const frame = await b.next();
    assert.equal(frame.type, i);
    assert.equal(frame.payload.length, size);
    assert.ok(frame.payload.every((byte) => byte === i + 1));
  }
  await b.send(9, Buffer.from("back"));
  assert.equal(Buffer.from((await a.next()).payload).toString(), "back");
  await a.close();
  await assert.rejects(b.next(), isClosed);
});

test("backpressure end to end: a slow reader bounds the sender's unflushed bytes", { timeout: 15_000 }, async () => {
  const [client, peer] = await tcpPair();
  const send_high_water_bytes = 256 * 1024;
  const receive_queue_bytes_max = 256 * 1024;
  const a = new FramedConnection(client, { send_high_water_bytes });
  const b = new FramedConnection(peer, { receive_queue_bytes_max });
  // 24 MiB on average: more than the kernel buffers on both sides can absorb
  // while the reader stalls, so the sender's own buffer must reach the mark.
  const result = await pumpSlowly({ connection: a, stream: client }, b, {
    frame_count: 384,
    payload_bytes_max: 128 * 1024,
    seed: 5,
    stall_ms: 150,
    pause_every: 32,
    pause_ms: 2,
  });
  assert.ok(result.writable_bytes_peak >= send_high_water_bytes, `the sender reached the mark (${result.writable_bytes_peak})`);
  assert.ok(result.writable_bytes_peak <= send_high_water_bytes + result.frame_bytes_peak, `peak ${result.writable_bytes_peak}`);
  // A socket chunk (at most 64 KiB) can complete several frames at once, plus one frame begun before it.
  const queue_bound_bytes = receive_queue_bytes_max + 64 * 1024 + result.frame_bytes_peak;
  assert.ok(result.receive_queue_bytes_peak <= queue_bound_bytes, `queue peak ${result.receive_queue_bytes_peak}`);
  a.destroy();
  b.destroy();
});

test("the peer destroying its socket mid-frame rejects receives with ERR_CONNECTION_CLOSED", async () => {
  const [client, peer] = await tcpPair();
  const b = new FramedConnection(peer);
  const waiting = b.next();
  const [head, payload] = encodeFrame(1, new Uint8Array(10_000));
  client.write(head ?? new Uint8Array(0));
  client.write((payload ?? new Uint8Array(0)).subarray(0, 3000));
  client.destroy();
  await assert.rejects(waiting, isClosed);
  await assert.rejects(b.next(), isClosed);
  await assert.rejects(b.send(1, new Uint8Array(8)), isClosed);
});

test("the peer destroying its socket while the sender is blocked rejects the send", { timeout: 5_000 }, async () => {
  const [client, peer] = await tcpPair();
  const a = new FramedConnection(client, { send_high_water_bytes: 0 });
  new FramedConnection(peer, { receive_queue_bytes_max: 1 }); // reads one chunk, then stops reading
  const chunk = new Uint8Array(FRAME_BYTES_MAX - 1);
  let blocked: Promise<void> | undefined;
  // Fill the kernel buffers until a send has to wait for drain.
  for (let i = 0; i < 64 && blocked === undefined; i++) {
    const sent = a.send(1, chunk);
    if (client.writableLength >= client.writableHighWaterMark) blocked = sent;
    else await sent;
  }
  assert.ok(blocked !== undefined, "a send had to wait");
  peer.destroy();
  await assert.rejects(blocked, isClosed);
  await assert.rejects(a.next(), isClosed);
});
