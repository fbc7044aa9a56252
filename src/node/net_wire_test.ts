import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pipeDuplexPair } from "../transport/_testing.js";
import { FramedConnection } from "../transport/mod.js";
import { LineOut, NET_ACK_URGENT_BYTES } from "./_net_wire.js";

/** Frame types as ferry-net/1 numbers them (written, data). */
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
    assert.deepEqual(JSON.parse(Buffer.from(first.payload).toString()), { listener: 0, seq: 1, offset: 38 });
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
    assert.deepEqual([f.type, JSON.parse(Buffer.from(f.payload).toString())], [WRITTEN, { listener: 3, seq: 4, offset: 5 }]);
    peer.destroy();
  });
});
