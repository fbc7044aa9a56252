/**
 * Property tests of the frame parser (fast-check, fixed seed, bounded time):
 * any bytes, cut anywhere, give frames or a TransportError, the same however
 * they are cut, within the length limit; frames round-trip.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import * as fc from "fast-check";
import { chunkSizes, cut, fuzzParameters, thrown } from "../_fuzz.js";
import { TransportError } from "../errors.js";
import { FRAME_BYTES_MAX, FrameParser, encodeFrame, type Frame } from "./mod.js";

/** Everything a parser makes of `bytes` cut at `sizes`: its frames, and the error that stopped it. */
function parse(bytes: Uint8Array, sizes: readonly number[], frame_bytes_max?: number): { frames: Frame[]; error: unknown; partial: number } {
  const parser = new FrameParser(frame_bytes_max === undefined ? {} : { frame_bytes_max });
  const frames: Frame[] = [];
  let error: unknown;
  for (const piece of cut(bytes, sizes)) {
    error = thrown(() => frames.push(...parser.push(piece)));
    if (error !== undefined) {
      // The failure sticks.
      assert.equal(thrown(() => parser.push(Uint8Array.of(0))), error);
      break;
    }
  }
  return { frames, error, partial: parser.partial_bytes };
}

/** Bytes that look like frames often enough: plausible lengths, then random payloads. */
const frameish = fc
  .array(
    fc.oneof(
      fc.uint8Array({ maxLength: 64 }),
      fc.tuple(fc.integer({ min: 0, max: 600 }), fc.nat(255)).map(([length, type]) => {
        const head = Buffer.alloc(5);
        head.writeUInt32LE(length, 0);
        head[4] = type;
        return Buffer.concat([head, Buffer.alloc(Math.max(0, length - 1), 0x61)]);
      }),
    ),
    { maxLength: 12 },
  )
  .map((parts) => Buffer.concat(parts));

test("fuzz: any bytes give frames within the limit or a TransportError, the same for every cut", () => {
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 4096 }), frameish), chunkSizes, fc.option(fc.integer({ min: 1, max: 1024 }), { nil: undefined }), (bytes, sizes, max) => {
      const whole = parse(bytes, [bytes.length + 1], max);
      const pieces = parse(bytes, sizes, max);
      for (const r of [whole, pieces]) {
        if (r.error !== undefined) assert.ok(r.error instanceof TransportError, `not a TransportError: ${String(r.error)}`);
        for (const f of r.frames) {
          assert.ok(Number.isInteger(f.type) && f.type >= 0 && f.type <= 255);
          assert.ok(f.payload.length + 1 <= (max ?? FRAME_BYTES_MAX));
        }
      }
      // However the bytes were cut, the same frames (up to where a failure stops a whole-buffer parse) and the same verdict.
      assert.equal((pieces.error as TransportError | undefined)?.code, (whole.error as TransportError | undefined)?.code);
      if (whole.error === undefined) {
        assert.deepEqual(pieces.frames.map((f) => [f.type, Buffer.from(f.payload)]), whole.frames.map((f) => [f.type, Buffer.from(f.payload)]));
        assert.equal(pieces.partial, whole.partial);
      }
    }),
    fuzzParameters(3000),
  );
});

test("fuzz: frames round-trip through any cut", () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(255), fc.uint8Array({ maxLength: 3000 })), { maxLength: 10 }), chunkSizes, (sent, sizes) => {
      const wire = Buffer.concat(sent.flatMap(([type, payload]) => encodeFrame(type, payload)));
      const got = parse(wire, sizes);
      assert.equal(got.error, undefined);
      assert.equal(got.partial, 0);
      assert.deepEqual(got.frames.map((f) => [f.type, Buffer.from(f.payload)]), sent.map(([t, p]) => [t, Buffer.from(p)]));
    }),
    fuzzParameters(1500),
  );
});
