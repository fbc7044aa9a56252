import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { CONTROL_SLOTS, INBOX_RING_BYTES, OUTBOX_RING_BYTES } from "./_control.js";
import { inboxRing, MessageRing, outboxRing } from "./_inbox.js";

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

describe("message rings", () => {
  it("keeps records in order across many wraps, drained in bursts of any size", () => {
    const control = new Int32Array(new SharedArrayBuffer(CONTROL_SLOTS * 4));
    const ring = new MessageRing(new Uint8Array(new SharedArrayBuffer(256)), control, 0, 1);
    let written = 0;
    let read = 0;
    for (let round = 0; round < 500; round += 1) {
      // Sizes that are not multiples of 4, so records pad and straddle the end of the ring.
      for (let k = 0; k < (round % 5) + 1; k += 1) {
        const data = new Uint8Array((written * 7) % 23).fill(written & 0xff);
        if (!ring.write(bytes(`n1-${written}`), data)) break;
        written += 1;
      }
      for (const m of ring.drain()) {
        assert.equal(m.from, `n1-${read}`);
        assert.deepEqual(m.data, new Uint8Array((read * 7) % 23).fill(read & 0xff));
        read += 1;
      }
    }
    assert.ok(read === written && written > 500);
    assert.ok(ring.empty);
  });

  it("gives back what was written, in order, whatever the sizes, the peers and where the ring wraps (written from parts or from a larger buffer, taken one by one into one or drained)", () => {
    // Peers of one length that differ (the drain's last-pid check compares bytes), and of other lengths; data on both
    // sides of the bytewise copy's limit.
    const peers = ["n1-1", "n1-2", "n2-1", "n10-33", "é-1"];
    const record = fc.record({ peer: fc.constantFrom(...peers), data: fc.uint8Array({ maxLength: 100 }), take: fc.boolean() });
    fc.assert(
      fc.property(fc.integer({ min: 7, max: 40 }), fc.array(fc.array(record, { maxLength: 12 }), { maxLength: 40 }), (quarter, bursts) => {
        const control = new Int32Array(new SharedArrayBuffer(CONTROL_SLOTS * 4));
        const ring = new MessageRing(new Uint8Array(new SharedArrayBuffer(quarter * 4 * 4)), control, 0, 1);
        const sent: { from: string; data: Uint8Array }[] = [];
        const got: { from: string; data: Uint8Array }[] = [];
        for (const burst of bursts) {
          for (const r of burst) {
            // Half of them as the guest sends: both parts from one larger buffer, at offsets.
            const peer = bytes(r.peer);
            let ok: boolean;
            if (r.take) {
              const memory = new Uint8Array(7 + peer.length + 5 + r.data.length);
              memory.set(peer, 7);
              memory.set(r.data, 7 + peer.length + 5);
              ok = ring.writeFrom(memory, 7, peer.length, memory, 7 + peer.length + 5, r.data.length);
            } else ok = ring.write(peer, r.data);
            if (ok) sent.push({ from: r.peer, data: r.data });
          }
          if (burst[0]?.take === true) {
            // The guest's way: one at a time, into its memory at offsets, room for the sizes peek() gives.
            for (let next = ring.peek(); next !== null; next = ring.peek()) {
              const memory = new Uint8Array(3 + next.from_len + 9 + next.data_len + 4);
              ring.takeInto(memory, 3, memory, 3 + next.from_len + 9);
              got.push({ from: new TextDecoder().decode(memory.subarray(3, 3 + next.from_len)), data: memory.slice(3 + next.from_len + 9, 3 + next.from_len + 9 + next.data_len) });
            }
          } else got.push(...ring.drain().map(({ from, data }) => ({ from, data })));
        }
        got.push(...ring.drain().map(({ from, data }) => ({ from, data })));
        assert.deepEqual(got, sent);
      }),
    );
  });

  it("carries a lane's numbered records among plain ones, and counts the records to one peer written since a position (a lane's lease, `_lane_writer.ts`)", () => {
    const peers = ["n1-1", "n1-2", "n2-1"];
    const record = fc.record({ peer: fc.constantFrom(...peers), data: fc.uint8Array({ maxLength: 60 }), seq: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER })), lane: fc.nat() });
    fc.assert(
      fc.property(fc.integer({ min: 16, max: 64 }), fc.array(fc.array(record, { maxLength: 10 }), { maxLength: 30 }), fc.constantFrom(...peers), (quarter, bursts, counted) => {
        const control = new Int32Array(new SharedArrayBuffer(CONTROL_SLOTS * 4));
        const ring = new MessageRing(new Uint8Array(new SharedArrayBuffer(quarter * 4 * 4)), control, 0, 1);
        const sent: { from: string; data: Uint8Array; seq: number; lane: number }[] = [];
        const got: typeof sent = [];
        for (const burst of bursts) {
          // The consumer's position now: what is written from here on, to `counted`, the producer can count.
          const mark = ring.taken;
          let since = 0;
          for (const r of burst) {
            const peer = bytes(r.peer);
            const memory = new Uint8Array(3 + peer.length + r.data.length);
            memory.set(peer, 3);
            memory.set(r.data, 3 + peer.length);
            const lane = r.seq === 0 ? 0 : r.lane;
            if (!ring.writeFrom(memory, 3, peer.length, memory, 3 + peer.length, r.data.length, r.seq, lane)) continue;
            sent.push({ from: r.peer, data: r.data, seq: r.seq, lane });
            if (r.peer === counted) since += 1;
          }
          assert.equal(ring.countSince(mark, bytes(counted)), since);
          got.push(...ring.drain());
        }
        assert.deepEqual(got, sent);
      }),
    );
  });

  it("says it cannot count past a whole ring written since the position", () => {
    const control = new Int32Array(new SharedArrayBuffer(CONTROL_SLOTS * 4));
    const ring = new MessageRing(new Uint8Array(new SharedArrayBuffer(64)), control, 0, 1);
    const mark = ring.taken;
    for (let i = 0; i < 5; i += 1) {
      assert.ok(ring.write(bytes("n1-1"), new Uint8Array(20)));
      ring.drain();
    }
    assert.equal(ring.countSince(mark, bytes("n1-1")), null);
    assert.equal(ring.countSince(ring.taken, bytes("n1-1")), 0);
  });

  it("refuses a record that does not fit until the consumer makes room", () => {
    const control = new Int32Array(new SharedArrayBuffer(CONTROL_SLOTS * 4));
    const ring = new MessageRing(new Uint8Array(new SharedArrayBuffer(64)), control, 0, 1);
    assert.ok(ring.write(bytes("a"), new Uint8Array(30)));
    assert.ok(!ring.fits(1, 30) && !ring.write(bytes("b"), new Uint8Array(30)));
    assert.equal(ring.unread().length, 1, "unread leaves it there");
    assert.equal(ring.drain().length, 1);
    assert.ok(ring.fits(1, 30) && ring.write(bytes("b"), new Uint8Array(30)));
  });

  it("gives the inbox and the outbox of one links buffer apart", () => {
    const control = new Int32Array(new SharedArrayBuffer(CONTROL_SLOTS * 4));
    const links = new SharedArrayBuffer(INBOX_RING_BYTES + OUTBOX_RING_BYTES);
    const inbox = inboxRing(links, control);
    const outbox = outboxRing(links, control);
    assert.ok(inbox.write(bytes("n1-1"), bytes("in")) && outbox.write(bytes("n2-1"), bytes("out")));
    assert.deepEqual(outbox.drain(), [{ from: "n2-1", data: bytes("out"), seq: 0, lane: 0 }]);
    assert.deepEqual(inbox.unread(), [{ from: "n1-1", data: bytes("in"), seq: 0, lane: 0 }]);
    assert.ok(outbox.empty && !inbox.empty);
  });
});
