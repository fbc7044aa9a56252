import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pipeDuplexPair } from "../transport/_testing.js";
import { FramedConnection } from "../transport/mod.js";
import { LineOut, NET_ACK_URGENT_BYTES } from "./_net_wire.js";
import { decodeOffset } from "./_net_frames.js";

/** Frame types as ferry-net/2 numbers them (written, data). */
const WRITTEN = 20;
const DATA = 18;

/** A line's sending side on one end of a pipe, with a hold far past the test's length, and a reader of what it wrote. */
function line(): { out: LineOut; peer: FramedConnection; turns(): Promise<void> } {
  const [a, b] = pipeDuplexPair();
  const out = new LineOut(new FramedConnection(a), 600_000);
  const turns = async (): Promise<void> => {
    for (let i = 0; i < 5; i += 1) await new Promise((r) => setImmediate(r));
  };
  return { out, peer: new FramedConnection(b), turns };
}

describe("connection relay line", () => {
  it("holds a confirmation until a frame goes its way, then sends both in one write, in order", async () => {
    const { out, peer, turns } = line();
    out.ack(WRITTEN, { listener: 0, seq: 1 }, 38);
    await turns();
    assert.equal(out.counts.writes, 0, "a confirmation alone waits");
    out.frame(DATA, [Buffer.from("request")]);
    const [first, second] = [await peer.next(), await peer.next()];
    assert.deepEqual([first.type, second.type], [WRITTEN, DATA]);
    assert.deepEqual(decodeOffset(first.payload, "WRITTEN"), { listener: 0, seq: 1, offset: 38 });
    assert.deepEqual(out.counts, { writes: 1, acks: 1, acks_riding: 1 });
    peer.destroy();
  });

  it("sends at once a confirmation that moves its connection far, and one of many held", async () => {
    const { out, peer, turns } = line();
    out.ack(WRITTEN, { listener: 0, seq: 1 }, NET_ACK_URGENT_BYTES);
    assert.equal((await peer.next()).type, WRITTEN);
    assert.equal(out.counts.writes, 1);
    // Small steps on several connections: held until eight wait.
    for (let seq = 2; seq < 9; seq += 1) out.ack(WRITTEN, { listener: 0, seq }, 10);
    await turns();
    assert.equal(out.counts.writes, 1);
    out.ack(WRITTEN, { listener: 0, seq: 9 }, 10);
    for (let i = 0; i < 8; i += 1) assert.equal((await peer.next()).type, WRITTEN);
    assert.deepEqual(out.counts, { writes: 2, acks: 9, acks_riding: 0 });
    peer.destroy();
  });

  it("writes what it holds when flushed before a close", async () => {
    const { out, peer } = line();
    out.ack(WRITTEN, { listener: 3, seq: 4 }, 5);
    out.flush();
    const f = await peer.next();
    assert.deepEqual([f.type, decodeOffset(f.payload, "WRITTEN")], [WRITTEN, { listener: 3, seq: 4, offset: 5 }]);
    peer.destroy();
  });

  it("keeps one confirmation per connection, the newest, in the place of the first", async () => {
    const { out, peer, turns } = line();
    out.ack(WRITTEN, { listener: 0, seq: 1 }, 10);
    out.ack(WRITTEN, { listener: 0, seq: 2 }, 7);
    out.ack(WRITTEN, { listener: 0, seq: 1 }, 25);
    await turns();
    assert.equal(out.counts.writes, 0);
    out.frame(DATA, [Buffer.from("reply")]);
    const got = [await peer.next(), await peer.next(), await peer.next()];
    assert.deepEqual(
      got.map((f) => f.type),
      [WRITTEN, WRITTEN, DATA],
    );
    assert.deepEqual(decodeOffset((got[0] as { payload: Uint8Array }).payload, "WRITTEN"), { listener: 0, seq: 1, offset: 25 });
    assert.deepEqual(decodeOffset((got[1] as { payload: Uint8Array }).payload, "WRITTEN"), { listener: 0, seq: 2, offset: 7 });
    assert.deepEqual(out.counts, { writes: 1, acks: 3, acks_riding: 2 });
    peer.destroy();
  });

  it("sends at once a confirmation that moves its connection far past the last one written, though each step is small", async () => {
    const { out, peer, turns } = line();
    const step = NET_ACK_URGENT_BYTES / 4;
    for (let i = 1; i < 4; i += 1) out.ack(WRITTEN, { listener: 0, seq: 1 }, i * step);
    await turns();
    assert.equal(out.counts.writes, 0, "held: a quarter at a time, less than urgent in all");
    out.ack(WRITTEN, { listener: 0, seq: 1 }, 4 * step);
    const f = await peer.next();
    assert.deepEqual(decodeOffset(f.payload, "WRITTEN"), { listener: 0, seq: 1, offset: NET_ACK_URGENT_BYTES });
    assert.deepEqual(out.counts, { writes: 1, acks: 4, acks_riding: 0 });
    peer.destroy();
  });

  it("writes a confirmation held alone once its hold has passed", async () => {
    const [a, b] = pipeDuplexPair();
    const out = new LineOut(new FramedConnection(a), 5);
    const peer = new FramedConnection(b);
    // The hold's timer does not keep a process alive (a real line's socket does; this pipe has no handle to).
    const alive = setInterval(() => undefined, 1000);
    out.ack(WRITTEN, { listener: 1, seq: 2 }, 3);
    const f = await peer.next();
    clearInterval(alive);
    assert.deepEqual([f.type, decodeOffset(f.payload, "WRITTEN")], [WRITTEN, { listener: 1, seq: 2, offset: 3 }]);
    assert.deepEqual(out.counts, { writes: 1, acks: 1, acks_riding: 0 });
    peer.destroy();
  });
});
