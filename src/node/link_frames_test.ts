import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as fc from "fast-check";
import { fuzzParameters } from "../_fuzz.js";
import { FerryError } from "../errors.js";
import type { DeliverAnswer } from "../links/mod.js";
import { decodeAnswer, decodeDeliver, encodeAnswer, encodeDeliver } from "./_link_frames.js";

const protocolError = (err: unknown): boolean => err instanceof FerryError && err.code === "ERR_LINK_PROTOCOL";

describe("link frames (ferry-links/2)", () => {
  it("lays a DELIVER out byte by byte as docs/links.md says", () => {
    const body = encodeDeliver(0x0102_0304, "n2-7", { from: "n1-1", messages: [{ seq: 2 ** 32 + 5, data: Buffer.from("hi") }] });
    const expected = Buffer.concat([
      Buffer.from([0x04, 0x03, 0x02, 0x01, 4, 4, 1, 0]),
      Buffer.from("n2-7n1-1"),
      Buffer.from([5, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]),
      Buffer.from("hi"),
    ]);
    assert.deepEqual(body, expected);
    const back = decodeDeliver(body);
    assert.equal(back.id, 0x0102_0304);
    assert.equal(back.pid, "n2-7");
    assert.deepEqual(back.batch, { from: "n1-1", messages: [{ seq: 2 ** 32 + 5, data: Buffer.from("hi") }] });
  });

  it("lays an ANSWER out byte by byte as docs/links.md says", () => {
    assert.deepEqual(encodeAnswer(3, { kind: "gone" }), Buffer.from([3, 0, 0, 0, 4]));
    assert.deepEqual(encodeAnswer(3, { kind: "accepted", upto: 9, at: "n2" }), Buffer.from([3, 0, 0, 0, 1, 0, 2, 9, 0, 0, 0, 0, 0, 0, 0, 0x6e, 0x32]));
    assert.deepEqual(
      encodeAnswer(3, { kind: "accepted", upto: 9, at: "n2", durable: 8 }),
      Buffer.from([3, 0, 0, 0, 1, 1, 2, 9, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0x6e, 0x32]),
    );
  });

  it("round-trips random batches and answers", () => {
    const answer: fc.Arbitrary<DeliverAnswer> = fc.oneof(
      fc.record({ kind: fc.constant("accepted" as const), upto: fc.maxSafeNat(), at: fc.stringMatching(/^[A-Za-z0-9_]{1,32}$/) }),
      fc.record({ kind: fc.constant("accepted" as const), upto: fc.maxSafeNat(), at: fc.constant("n1"), durable: fc.maxSafeNat() }),
      fc.constantFrom<DeliverAnswer>({ kind: "moving" }, { kind: "unknown" }, { kind: "gone" }),
    );
    const messages = fc.array(fc.record({ seq: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), data: fc.uint8Array({ maxLength: 300 }) }), { maxLength: 128 });
    fc.assert(
      fc.property(fc.nat({ max: 0xffff_ffff }), fc.stringMatching(/^[a-z0-9_]{1,32}-[0-9]{1,15}$/), fc.string({ minLength: 1, maxLength: 80 }).filter((s) => !s.includes("\0")), messages, answer, (id, pid, from, msgs, a) => {
        const d = decodeDeliver(encodeDeliver(id, pid, { from, messages: msgs }));
        assert.equal(d.id, id);
        assert.equal(d.pid, pid);
        assert.equal(d.batch.from, from);
        assert.deepEqual(
          d.batch.messages.map((m) => ({ seq: m.seq, data: new Uint8Array(m.data) })),
          msgs.map((m) => ({ seq: m.seq, data: new Uint8Array(m.data) })),
        );
        assert.deepEqual(decodeAnswer(encodeAnswer(id, a)), { id, answer: { ...a } }); // fast-check makes records without a prototype
      }),
      fuzzParameters(500),
    );
  });

  it("refuses what breaks a limit: too many messages, a message too large, a seq past 2^53 - 1 or 0, trailing bytes", () => {
    const one = { from: "n1-1", messages: [{ seq: 1, data: new Uint8Array(1) }] };
    assert.throws(() => encodeDeliver(1, "n2-1", { from: "n1-1", messages: Array.from({ length: 129 }, (_, i) => ({ seq: i + 1, data: new Uint8Array(0) })) }), protocolError);
    assert.throws(() => encodeDeliver(1, "n2-1", { from: "n1-1", messages: [{ seq: 1, data: new Uint8Array(64 * 1024 + 1) }] }), protocolError);
    const body = encodeDeliver(1, "n2-1", one);
    const at = 8 + 4 + 4;
    const big = Buffer.from(body);
    big.writeUInt32LE(0x20_0000, at + 4); // seq's high word: 2^53
    assert.throws(() => decodeDeliver(big), protocolError);
    const zero = Buffer.from(body);
    zero.writeUInt32LE(0, at);
    assert.throws(() => decodeDeliver(zero), protocolError);
    const long = Buffer.from(body);
    long.writeUInt32LE(64 * 1024 + 1, at + 8);
    assert.throws(() => decodeDeliver(long), protocolError);
    const count = Buffer.from(body);
    count.writeUInt16LE(129, 6);
    assert.throws(() => decodeDeliver(count), protocolError);
    assert.throws(() => decodeDeliver(Buffer.concat([body, Buffer.from([0])])), protocolError);
    assert.throws(() => decodeAnswer(Buffer.from([1, 0, 0, 0, 2, 0])), protocolError);
    assert.throws(() => decodeAnswer(Buffer.from([1, 0, 0, 0, 5])), protocolError);
    assert.throws(() => decodeAnswer(Buffer.from([1, 0, 0, 0, 1, 2, 2, 9, 0, 0, 0, 0, 0, 0, 0, 0x6e, 0x32])), protocolError, "an unknown flag");
    assert.throws(() => decodeAnswer(Buffer.from([1, 0, 0, 0, 1, 0, 2, 9, 0, 0, 0, 0, 0, 0, 0, 0x6e, 0x2f])), protocolError, "at is no node name");
  });
});
