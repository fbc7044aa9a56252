import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { describe, it } from "node:test";
import { EVENT_STREAM_BUFFER_BYTES_MAX, EventWriter, type EventSink } from "./_event_stream.js";

/** A response whose backlog the test sets: a reader that stops reading, then catches up. */
function sink(): { sink: EventSink; written: string[]; backlog(bytes: number): void; drain(): void } {
  const emitter = new EventEmitter();
  const written: string[] = [];
  const state = { writableLength: 0 };
  const s = {
    write: (chunk: string) => {
      written.push(chunk);
      return true;
    },
    get writableLength() {
      return state.writableLength;
    },
    writableEnded: false,
    destroyed: false,
    on: (event: string, listener: () => void) => emitter.on(event, listener),
  } as unknown as EventSink;
  return {
    sink: s,
    written,
    backlog: (bytes) => (state.writableLength = bytes),
    drain: () => {
      state.writableLength = 0;
      emitter.emit("drain");
    },
  };
}

describe("event stream to a slow reader", () => {
  it("drops events past its buffer and marks the gap when the reader catches up", () => {
    const s = sink();
    const w = new EventWriter(s.sink);
    w.send("a", "1");
    s.backlog(EVENT_STREAM_BUFFER_BYTES_MAX + 1);
    for (let i = 0; i < 5; i += 1) w.send("b", String(i));
    assert.equal(s.written.length, 1, "events were queued for a reader that does not read");
    s.drain();
    w.send("c", "2");
    assert.deepEqual(s.written, ["event: a\ndata: 1\n\n", 'event: gap\ndata: {"dropped":5,"reason":"the reader fell behind"}\n\n', "event: c\ndata: 2\n\n"]);
  });
});
