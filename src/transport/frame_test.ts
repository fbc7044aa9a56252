/** encodeFrame and FrameParser: round trips over random splits, limits, views versus copies. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { TransportError } from "../errors.js";
import { Prng } from "./_testing.js";
import { FRAME_BYTES_MAX, FRAME_HEADER_BYTES, FrameParser, encodeFrame, type Frame } from "./mod.js";

/** A header announcing `length_bytes` (type byte plus payload). */
function header(length_bytes: number, type = 1): Uint8Array {
  const bytes = Buffer.alloc(FRAME_HEADER_BYTES);
  bytes.writeUInt32LE(length_bytes, 0);
  bytes[4] = type;
  return bytes;
}

/** Random cut points: 1-byte chunks, whole-stream, or random sizes, by seed. */
function split(rng: Prng, bytes: Uint8Array, mode: number): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; ) {
    const size = mode === 0 ? 1 : mode === 1 ? bytes.length : 1 + rng.int(mode === 2 ? 16 : 70_000);
    chunks.push(bytes.subarray(at, Math.min(bytes.length, at + size)));
    at += size;
  }
  return chunks;
}

function isTransportError(code: string): (error: unknown) => boolean {
  return (error: unknown) => error instanceof TransportError && error.code === code;
}

test("frames round-trip through any split of the stream, including 1-byte chunks", () => {
  for (let seed = 1; seed <= 300; seed++) {
    const rng = new Prng(seed);
    const mode = seed % 4; // 0: 1-byte chunks, 1: one chunk, 2: tiny chunks, 3: up to 70 kB
    const sent: Frame[] = [];
    const wire: Uint8Array[] = [];
    const count = 1 + rng.int(12);
    for (let i = 0; i < count; i++) {
      const big = mode !== 0 && rng.int(8) === 0;
      const payload = rng.bytes(big ? rng.int(200_000) : rng.int(300));
      const type = rng.int(256);
      sent.push({ type, payload });
      // Sometimes as parts, including empty ones, to cover gathering.
      const cut = rng.int(payload.length + 1);
      const parts = rng.int(2) === 0 ? payload : [payload.subarray(0, cut), new Uint8Array(0), payload.subarray(cut)];
      wire.push(...encodeFrame(type, parts));
    }
    const parser = new FrameParser();
    const received: Frame[] = [];
    for (const chunk of split(rng, Buffer.concat(wire), mode)) received.push(...parser.push(chunk));
    assert.equal(received.length, sent.length, `seed ${seed}`);
    received.forEach((frame, i) => {
      assert.equal(frame.type, sent[i]?.type, `seed ${seed} frame ${i}`);
      assert.deepEqual(Buffer.from(frame.payload), Buffer.from(sent[i]?.payload ?? []), `seed ${seed} frame ${i}`);
    });
    assert.equal(parser.partial_bytes, 0, `seed ${seed}`);
  }
});

test("a payload inside one chunk is a view of it; a split payload is a copy", () => {
  const chunk = Buffer.concat([...encodeFrame(7, Buffer.from("abc")), ...encodeFrame(8, Buffer.from("defg"))]);
  const frames = new FrameParser().push(chunk);
  assert.deepEqual(frames.map((f) => [f.type, Buffer.from(f.payload).toString()]), [[7, "abc"], [8, "defg"]]);
  for (const frame of frames) assert.equal(frame.payload.buffer, chunk.buffer, "a view, not a copy");
  assert.equal(frames[1]?.payload.byteOffset, chunk.byteOffset + 2 * FRAME_HEADER_BYTES + 3);

  const parser = new FrameParser();
  const second = chunk.subarray(6);
  assert.deepEqual(parser.push(chunk.subarray(0, 6)), []);
  assert.equal(parser.partial_bytes, 6);
  const [copied, viewed] = parser.push(second);
  assert.equal(Buffer.from(copied?.payload ?? []).toString(), "abc");
  assert.notEqual(copied?.payload.buffer, chunk.buffer, "split payload is copied");
  assert.equal(viewed?.payload.buffer, chunk.buffer, "next frame in the chunk is a view again");
});

test("a header split from its payload still yields a view when the payload is in one chunk", () => {
  const parser = new FrameParser();
  const payload = Buffer.from("hello");
  assert.deepEqual(parser.push(header(6, 3).subarray(0, 2)), []);
  assert.deepEqual(parser.push(header(6, 3).subarray(2)), []);
  const [frame] = parser.push(payload);
  assert.equal(frame?.payload.buffer, payload.buffer);
  assert.equal(frame?.type, 3);
});

test("a length above FRAME_BYTES_MAX is rejected from the 4 length bytes alone, and stays rejected", () => {
  for (const length of [FRAME_BYTES_MAX + 1, 0xffff_ffff]) {
    const parser = new FrameParser();
    const bytes = header(length);
    assert.deepEqual(parser.push(bytes.subarray(0, 3)), []);
    // The type byte and payload never arrive: the error comes from the length.
    assert.throws(() => parser.push(bytes.subarray(3, 4)), isTransportError("ERR_FRAME_TOO_LARGE"));
    assert.throws(() => parser.push(new Uint8Array(10)), isTransportError("ERR_FRAME_TOO_LARGE"));
  }
});

test("a frame of exactly FRAME_BYTES_MAX is accepted; a lowered limit applies", () => {
  const [frame] = new FrameParser().push(Buffer.concat([header(FRAME_BYTES_MAX, 9), new Uint8Array(FRAME_BYTES_MAX - 1)]));
  assert.equal(frame?.payload.length, FRAME_BYTES_MAX - 1);
  const small = new FrameParser({ frame_bytes_max: 100 });
  assert.equal(small.push(Buffer.concat([header(100), new Uint8Array(99)])).length, 1);
  assert.throws(() => small.push(header(101)), isTransportError("ERR_FRAME_TOO_LARGE"));
  assert.throws(() => new FrameParser({ frame_bytes_max: FRAME_BYTES_MAX + 1 }), RangeError);
});

test("a zero length (no type byte) is malformed, even after good frames in the same chunk", () => {
  const parser = new FrameParser();
  const bytes = Buffer.concat([...encodeFrame(1, Buffer.from("ok")), header(0).subarray(0, 4)]);
  assert.throws(() => parser.push(bytes), isTransportError("ERR_FRAME_MALFORMED"));
  assert.throws(() => parser.push(new Uint8Array(1)), isTransportError("ERR_FRAME_MALFORMED"));
});

test("encodeFrame writes the header and passes payload parts through uncopied", () => {
  const payload = Buffer.from("payload");
  const parts = encodeFrame(0xab, payload);
  assert.equal(parts.length, 2);
  assert.equal(parts[1], payload, "the payload itself, not a copy");
  assert.deepEqual(Buffer.from(parts[0] ?? []), Buffer.from([8, 0, 0, 0, 0xab]));
  assert.deepEqual(encodeFrame(0, new Uint8Array(0)).length, 1, "empty payload: header only");
  assert.throws(() => encodeFrame(256, payload), RangeError);
  assert.throws(() => encodeFrame(1.5, payload), RangeError);
  assert.throws(
    () => encodeFrame(1, [new Uint8Array(FRAME_BYTES_MAX - 1), new Uint8Array(1)]),
    isTransportError("ERR_FRAME_TOO_LARGE"),
  );
  assert.equal(encodeFrame(1, new Uint8Array(FRAME_BYTES_MAX - 1)).length, 2);
});

test("a splittable frame that spans chunks comes out as views of each chunk, in order, adding up to its payload; others are still whole", () => {
  const payload = Buffer.alloc(10_000);
  for (let i = 0; i < payload.length; i += 1) payload[i] = (i * 7) & 0xff;
  const wire = Buffer.concat([...encodeFrame(6, payload), ...encodeFrame(4, payload.subarray(0, 3000)), ...encodeFrame(6, Buffer.from("xy"))]);
  const parser = new FrameParser({ splittable_types: [6] });
  const chunks = [wire.subarray(0, 3), wire.subarray(3, 4000), wire.subarray(4000, 9000), wire.subarray(9000)].map((c) => Buffer.from(c));
  const frames: Frame[] = [];
  for (const c of chunks) {
    for (const f of parser.push(c)) {
      frames.push(f);
      // Every piece of the splittable frame is a view of the chunk it came in.
      if (f.type === 6) assert.equal(f.payload.buffer, c.buffer, "a piece was copied");
    }
  }
  const pieces = frames.filter((f) => f.type === 6);
  assert.ok(pieces.length >= 3, "the spanning frame was not handed on in pieces");
  assert.deepEqual(Buffer.concat(pieces.slice(0, -1).map((f) => f.payload)), payload);
  assert.equal(Buffer.from(pieces.at(-1)?.payload ?? []).toString(), "xy");
  const whole = frames.filter((f) => f.type === 4);
  assert.equal(whole.length, 1);
  assert.deepEqual(Buffer.from(whole[0]?.payload ?? []), payload.subarray(0, 3000));
  assert.equal(parser.partial_bytes, 0);
});
