/**
 * Property tests of the event-stream parser (fast-check, fixed seed, bounded
 * time): any bytes (broken UTF-8, stray CRs included) give the same events
 * however they are cut and never throw below its limits; events written
 * with any line endings and comments come back as they were.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import * as fc from "fast-check";
import { chunkSizes, cut, fuzzParameters, thrown } from "./_fuzz.js";
import { SseParser, type SseEvent } from "./sse.js";

function parse(bytes: Uint8Array, sizes: readonly number[]): SseEvent[] {
  const parser = new SseParser();
  const events = cut(bytes, sizes).flatMap((piece) => parser.push(piece));
  return [...events, ...parser.end()];
}

/** Bytes rich in what the parser reacts to: line ends, colons, spaces, field names, multi-byte and broken UTF-8. */
const streamish = fc
  .array(
    fc.oneof(
      fc.constantFrom("\n", "\r", "\r\n", ":", " ", "data", "event", "id", "retry", "\ufeff", "é", "𝄞"),
      fc.string({ maxLength: 8 }),
      fc.uint8Array({ maxLength: 4 }).map((b) => Buffer.from(b).toString("latin1")),
    ),
    { maxLength: 60 },
  )
  .chain((parts) => fc.constant(Buffer.from(parts.join(""))));

test("fuzz: any bytes give the same events however they are cut, and never throw below the limits", () => {
  fc.assert(
    fc.property(fc.oneof(streamish, fc.uint8Array({ maxLength: 2048 })), chunkSizes, (bytes, sizes) => {
      let whole: SseEvent[] = [];
      const error = thrown(() => (whole = parse(bytes, [bytes.length + 1])));
      assert.equal(error, undefined, `the parser threw ${String(error)}`);
      assert.deepEqual(parse(bytes, sizes), whole);
      assert.deepEqual(parse(bytes, [1]), whole);
      for (const e of whole) assert.ok(typeof e.event === "string" && typeof e.data === "string");
    }),
    fuzzParameters(3000),
  );
});

/** Text that cannot end or start a line or a field: what a server puts in a value. */
const value = fc.string({ maxLength: 30 }).map((s) => s.replace(/[\r\n]/g, "_"));

test("fuzz: events written with any line endings, comments and unknown fields come back as written", () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ event: fc.option(value.filter((v) => v !== "" && !v.startsWith(" ")), { nil: undefined }), lines: fc.array(value, { minLength: 1, maxLength: 4 }) }), { maxLength: 8 }),
      fc.constantFrom("\n", "\r", "\r\n"),
      fc.boolean(),
      chunkSizes,
      (events, eol, noise, sizes) => {
        let text = noise ? `\ufeff: hello${eol}` : "";
        for (const e of events) {
          if (noise) text += `: keep-alive${eol}id: 7${eol}`;
          if (e.event !== undefined) text += `event: ${e.event}${eol}`;
          for (const line of e.lines) text += `data: ${line}${eol}`;
          if (noise) text += `retry: 10${eol}x-unknown${eol}`;
          text += eol;
        }
        const expected = events.map((e) => ({ event: e.event ?? "message", data: e.lines.join("\n") }));
        assert.deepEqual(parse(Buffer.from(text), sizes), expected);
      },
    ),
    fuzzParameters(2000),
  );
});
