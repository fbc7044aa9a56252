/** The event-stream parser: the same events however the bytes are cut. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { SSE_LINE_CHARS_MAX, SseParser, type SseEvent } from "./sse.js";

/** Every line ending, a comment, multi-line data, a field without a value, non-ASCII text, a BOM. */
const STREAM = Buffer.from(
  "\ufeff: keep-alive\n" +
    "event: output\ndata: {\"a\":1}\n\n" +
    "event: output\r\ndata: first\r\ndata: second\r\nid: 7\r\n\r\n" +
    "data:no space\rdata\r\r" +
    "event: exit\ndata: déjà vu ✓ 𝄞\nretry: 10\nunknown: x\n\n" +
    "event: empty\n\n" +
    "data: incomplete, never dispatched\n",
);

const EXPECTED: SseEvent[] = [
  { event: "output", data: '{"a":1}' },
  { event: "output", data: "first\nsecond" },
  { event: "message", data: "no space\n" },
  { event: "exit", data: "déjà vu ✓ 𝄞" },
];

function parseIn(pieces: readonly Uint8Array[]): SseEvent[] {
  const parser = new SseParser();
  const events = pieces.flatMap((p) => parser.push(p));
  return [...events, ...parser.end()];
}

test("one piece", () => {
  assert.deepEqual(parseIn([STREAM]), EXPECTED);
});

test("cut at every byte, and at every pair of places", () => {
  assert.deepEqual(parseIn([...STREAM].map((b) => Uint8Array.of(b))), EXPECTED);
  for (let i = 0; i <= STREAM.length; i += 1) {
    for (let j = i; j <= STREAM.length; j += 1) {
      const pieces = [STREAM.subarray(0, i), STREAM.subarray(i, j), STREAM.subarray(j)];
      assert.deepEqual(parseIn(pieces), EXPECTED, `cut at ${i} and ${j}`);
    }
  }
});

test("a CR at the end of a piece and the LF starting the next are one line end", () => {
  const parser = new SseParser();
  assert.deepEqual(parser.push(Buffer.from("data: x\r")), []);
  assert.deepEqual(parser.push(Buffer.from("\ndata: y\r")), []);
  // Had the LF counted as a second line end, the event would have ended after "x".
  assert.deepEqual(parser.push(Buffer.from("\r")), [{ event: "message", data: "x\ny" }]);
});

test("a line past the limit is refused, not buffered", () => {
  const parser = new SseParser();
  const piece = Buffer.alloc(1024 * 1024, 0x61);
  assert.throws(
    () => {
      for (let n = 0; n <= SSE_LINE_CHARS_MAX / piece.length; n += 1) parser.push(piece);
    },
    { code: "ERR_CLUSTER_PROTOCOL" },
  );
});
