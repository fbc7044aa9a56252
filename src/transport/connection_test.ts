/** FramedConnection over an in-memory duplex pair: delivery, backpressure, errors, timeouts, close. */
import assert from "node:assert/strict";
import { Duplex as DuplexStream, type Duplex } from "node:stream";
import { after, before, test } from "node:test";
import { setImmediate as tick, setTimeout as sleep } from "node:timers/promises";

import { TransportError } from "../errors.js";
import { Prng, instantLink, pipeDuplexPair, pumpSlowly } from "./_testing.js";
import { FRAME_HEADER_BYTES, FramedConnection, encodeFrame, type Frame, type FramedConnectionOptions } from "./mod.js";

function isTransportError(code: string): (error: unknown) => boolean {
  return (error: unknown) => error instanceof TransportError && error.code === code;
}

interface Connected {
  a: FramedConnection;
  b: FramedConnection;
  raw_a: Duplex;
  raw_b: Duplex;
}

/** Two FramedConnections over an in-memory pair, and their streams. */
function connected(options: FramedConnectionOptions = {}): Connected {
  const [raw_a, raw_b] = pipeDuplexPair();
  return { a: new FramedConnection(raw_a, options), b: new FramedConnection(raw_b, options), raw_a, raw_b };
}

// Every test here must leave no rejection unhandled.
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
before(() => process.on("unhandledRejection", onUnhandled));
after(async () => {
  await tick();
  process.off("unhandledRejection", onUnhandled);
  assert.deepEqual(unhandled, []);
});

test("frames flow both ways in order, through next() and for await", async () => {
  const { a, b } = connected();
  const rng = new Prng(7);
  const sent = Array.from({ length: 50 }, (_, i): Frame => ({ type: i % 256, payload: rng.bytes(rng.int(5000)) }));
  for (const frame of sent) await a.send(frame.type, frame.payload);
  for (const frame of sent) assert.deepEqual(await b.next(), { type: frame.type, payload: Buffer.from(frame.payload) });

  await b.send(1, [Buffer.from("gathered "), Buffer.from("parts")]);
  await b.send(2, new Uint8Array(0));
  const seen: string[] = [];
  for await (const frame of a) {
    seen.push(`${frame.type}:${Buffer.from(frame.payload).toString()}`);
    if (seen.length === 2) break;
  }
  assert.deepEqual(seen, ["1:gathered parts", "2:"]);
  a.destroy();
});

test("head bytes read before the handover are parsed first", async () => {
  const [raw_a, raw_b] = pipeDuplexPair();
  const [first, second] = [Buffer.concat(encodeFrame(1, Buffer.from("one"))), Buffer.concat(encodeFrame(2, Buffer.from("two")))];
  const b = new FramedConnection(raw_b, { head: Buffer.concat([first, second.subarray(0, 3)]) });
  raw_a.write(second.subarray(3));
  assert.equal(Buffer.from((await b.next()).payload).toString(), "one");
  assert.equal(Buffer.from((await b.next()).payload).toString(), "two");
  b.destroy();
});

test("backpressure: an awaiting sender never holds more than the high-water mark plus one frame", { timeout: 10_000 }, async () => {
  const send_high_water_bytes = 64 * 1024;
  const [raw_a, raw_b] = pipeDuplexPair();
  const a = new FramedConnection(raw_a, { send_high_water_bytes });
  const b = new FramedConnection(raw_b, { receive_queue_bytes_max: 32 * 1024 });
  const result = await pumpSlowly({ connection: a, stream: raw_a }, b, {
    frame_count: 300,
    payload_bytes_max: 20_000,
    seed: 11,
    stall_ms: 30,
    pause_every: 20,
    pause_ms: 2,
  });
  assert.ok(result.writable_bytes_peak >= send_high_water_bytes, `the sender reached the mark (${result.writable_bytes_peak})`);
  assert.ok(result.writable_bytes_peak <= send_high_water_bytes + result.frame_bytes_peak, `peak ${result.writable_bytes_peak}`);
  // The pair delivers one written part per chunk, so the queue overshoots by at most one frame.
  assert.ok(result.receive_queue_bytes_peak <= 32 * 1024 + result.frame_bytes_peak, `queue peak ${result.receive_queue_bytes_peak}`);
  a.destroy();
  b.destroy();
});

test("a consumer that falls behind pauses the stream, and reading resumes it", { timeout: 5_000 }, async () => {
  const receive_queue_bytes_max = 10_000;
  const { a, b, raw_b } = connected({ receive_queue_bytes_max, send_high_water_bytes: 0 });
  const payload = new Uint8Array(1000);
  const sending = (async () => {
    for (let i = 0; i < 200; i++) await a.send(i % 256, payload);
  })();
  // Waits for the pause itself, not a fixed time: the sender may take more turns than a sleep allows on a busy machine.
  for (const deadline = Date.now() + 4_000; !raw_b.isPaused() && Date.now() < deadline; ) await sleep(5);
  assert.ok(raw_b.isPaused(), "stream paused");
  const frame_bytes = FRAME_HEADER_BYTES + payload.length;
  assert.ok(b.receive_queue_bytes >= receive_queue_bytes_max && b.receive_queue_bytes < receive_queue_bytes_max + frame_bytes);
  for (let i = 0; i < 200; i++) assert.equal((await b.next()).type, i % 256);
  await sending;
  assert.equal(raw_b.isPaused(), false);
  a.destroy();
});

test("the peer closing mid-frame rejects the waiting and later receives with ERR_CONNECTION_CLOSED", async () => {
  const { raw_a, b } = connected();
  const waiting = b.next();
  const [head, payload] = encodeFrame(3, new Uint8Array(100));
  raw_a.write(Buffer.concat([head ?? new Uint8Array(0), (payload ?? new Uint8Array(0)).subarray(0, 40)]));
  await tick();
  raw_a.destroy();
  await assert.rejects(waiting, (error: unknown) => {
    assert.ok(error instanceof TransportError);
    assert.equal(error.code, "ERR_CONNECTION_CLOSED");
    assert.match(error.message, /middle of a frame \(45 bytes/);
    return true;
  });
  await assert.rejects(b.next(), isTransportError("ERR_CONNECTION_CLOSED"));
  await assert.rejects(b.send(1, new Uint8Array(1)), isTransportError("ERR_CONNECTION_CLOSED"));
});

test("frames queued before the peer closed are delivered first", async () => {
  const { a, b, raw_a } = connected();
  await a.send(1, Buffer.from("last words"));
  raw_a.destroy();
  a.destroy(); // already closed underneath: must not throw or leave a rejection
  assert.equal(Buffer.from((await b.next()).payload).toString(), "last words");
  await assert.rejects(b.next(), isTransportError("ERR_CONNECTION_CLOSED"));
});

test("a stream error rejects receives with ERR_CONNECTION_CLOSED and the error as cause", async () => {
  const { b, raw_b } = connected();
  const waiting = b.next();
  const reset = Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" });
  raw_b.destroy(reset);
  await assert.rejects(waiting, (error: unknown) => {
    assert.ok(error instanceof TransportError);
    assert.equal(error.code, "ERR_CONNECTION_CLOSED");
    assert.equal(error.cause, reset);
    return true;
  });
});

test("a sender waiting for drain is rejected when the peer goes away", async () => {
  const { a, raw_b } = connected({ send_high_water_bytes: 0 });
  const waiting = a.send(1, new Uint8Array(100_000)); // above the pair's 16 KiB mark: must wait
  raw_b.destroy();
  await assert.rejects(waiting, isTransportError("ERR_CONNECTION_CLOSED"));
});

test("a bad header from the peer destroys the stream and rejects with the parser's code", async () => {
  for (const [length, code] of [[0xffff_ffff, "ERR_FRAME_TOO_LARGE"], [0, "ERR_FRAME_MALFORMED"]] as const) {
    const { raw_a, b, raw_b } = connected();
    const good = Buffer.concat(encodeFrame(1, Buffer.from("fine")));
    const bad = Buffer.alloc(4);
    bad.writeUInt32LE(length, 0);
    const waiting = b.next();
    raw_a.write(Buffer.concat([good, bad])); // one chunk: the good frame is dropped with it
    await assert.rejects(waiting, isTransportError(code));
    await assert.rejects(b.next(), isTransportError(code));
    assert.ok(raw_b.destroyed);
    raw_a.destroy();
  }
});

test("a receive timeout rejects with ERR_TRANSPORT_TIMEOUT and leaves the connection usable", async () => {
  const { a, b } = connected({ receive_timeout_ms: 20 });
  await assert.rejects(b.next(), isTransportError("ERR_TRANSPORT_TIMEOUT"));
  await assert.rejects(b.next({ timeout_ms: 5 }), isTransportError("ERR_TRANSPORT_TIMEOUT"));
  await a.send(4, Buffer.from("late"));
  assert.equal((await b.next()).type, 4);
  a.destroy();
});

test("close() flushes what was sent, ends local iteration, and the peer sees ERR_CONNECTION_CLOSED after the data", async () => {
  const { a, b, raw_a } = connected();
  const iterated: Frame[] = [];
  const iterating = (async () => {
    for await (const frame of a) iterated.push(frame);
  })();
  const waiting = a.next();
  await a.send(1, new Uint8Array(50_000)); // larger than the pair's buffers: close must flush it
  await a.close();
  assert.ok(raw_a.destroyed);
  await iterating;
  assert.deepEqual(iterated, []);
  await assert.rejects(waiting, isTransportError("ERR_CONNECTION_CLOSED"));
  await assert.rejects(a.send(1, new Uint8Array(1)), isTransportError("ERR_CONNECTION_CLOSED"));
  assert.equal((await b.next()).payload.length, 50_000);
  await assert.rejects(b.next(), isTransportError("ERR_CONNECTION_CLOSED"));
  await a.close(); // twice is fine
});

test("a sender that never waits on its own still lets queued bytes go while it makes more, over a stream whose writes complete a turn later", async () => {
  // As a TLS socket: each write completes only in a later turn of the event loop, and the stream queues what follows meanwhile.
  const taken: number[] = [];
  const stream = new DuplexStream({
    read() {},
    writev(chunks, done) {
      taken.push(chunks.reduce((n, c) => n + (c.chunk as Buffer).length, 0));
      setImmediate(done);
    },
  });
  const conn = new FramedConnection(stream);
  const frame = new Uint8Array(64 * 1024);
  const seen: number[] = [];
  // 4 MiB, under the high-water mark, each send awaited (it resolves at once below the mark).
  for (let i = 0; i < 64; i += 1) {
    await conn.send(1, frame);
    seen.push(taken.reduce((n, b) => n + b, 0));
  }
  // Without a turn of the loop every 256 KiB the stream would have taken its first write only, until the loop ended.
  assert.ok((seen[31] ?? 0) >= 1024 * 1024, `taken after 2 MiB made: ${seen[31]}`);
  conn.destroy();
});

test("a sender on a stream that takes every write at once gives the event loop turns", async () => {
  // As a plain socket on a fast link: each write completes at once and nothing is ever queued, so the byte count that
  // makes a sender wait over TLS never does. What the thread has to do meanwhile (an immediate) must not wait for the end.
  const { link, written, immediate_at } = instantLink();
  const conn = new FramedConnection(link);
  const frame = new Uint8Array(64 * 1024).fill(1);
  // 64 MiB: more than may be sent between two turns on any machine (TURN_MS), each send awaited.
  for (let i = 0; i < 1024; i += 1) await conn.send(1, frame);
  assert.ok(immediate_at() >= 0 && immediate_at() < written(), `the immediate ran after ${immediate_at()} of ${written()} bytes`);
  conn.destroy();
});

test("frames sent inside gather() go out in one write when it returns, however long it takes and past the high-water mark", async () => {
  // As a TLS socket: each write completes a turn later, and without gather the frames after the first wait for that turn.
  const writes: number[][] = [];
  const stream = new DuplexStream({
    read() {},
    writev(chunks, done) {
      writes.push(chunks.map((c) => (c.chunk as Buffer).length));
      setImmediate(done);
    },
  });
  const conn = new FramedConnection(stream, { send_high_water_bytes: 64 * 1024 });
  const big = new Uint8Array(64 * 1024);
  const sent = await conn.gather(async () => {
    await conn.send(1, big);
    // Something asynchronous between two frames (a post-copy source's image encoding), then more than the mark.
    await tick();
    await conn.send(2, new Uint8Array(10));
    for (let i = 0; i < 3; i += 1) await conn.send(3, big);
    assert.deepEqual(writes, [], "a frame went out before gather() returned");
    return "done";
  });
  assert.equal(sent, "done");
  assert.equal(writes.length, 1, `frames went out in ${writes.length} writes`);
  const total = (writes[0] ?? []).reduce((n, b) => n + b, 0);
  assert.equal(total, 4 * (FRAME_HEADER_BYTES + big.length) + FRAME_HEADER_BYTES + 10);
  // A gather that throws still lets go of what it sent.
  await assert.rejects(conn.gather(async () => {
    await conn.send(4, new Uint8Array(3));
    throw new Error("the caller failed");
  }), /the caller failed/);
  // Written once the first write completes (a turn later).
  await tick();
  assert.deepEqual(writes[1], [FRAME_HEADER_BYTES, 3]);
  conn.destroy();
});
