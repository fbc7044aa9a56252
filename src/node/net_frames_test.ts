/**
 * The ferry-net/2 frame bodies (`_net_frames.ts`): every body decodes to
 * what was encoded, over random seeds, and a body of the wrong length or
 * with a field out of range is refused with ERR_NET_PROTOCOL.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as fc from "fast-check";
import { fuzzParameters } from "../_fuzz.js";
import { FerryError } from "../errors.js";
import { decodeBytes, decodeEnd, decodeOffset, decodeRef, decodeU32, encodeEnd, encodeOffset, encodeRef, encodeU32, NET_END_BYTES, NET_OFFSET_BYTES, NET_REF_BYTES } from "./_net_frames.js";

const u32 = fc.nat({ max: 0xffff_ffff });
// Plain objects, as the decoders make (fast-check records have no prototype).
const conn = fc.tuple(u32, u32).map(([listener, seq]) => ({ listener, seq }));
const offset = fc.nat({ max: Number.MAX_SAFE_INTEGER });

function refused(f: () => unknown): void {
  assert.throws(f, (e: unknown) => e instanceof FerryError && e.code === "ERR_NET_PROTOCOL");
}

describe("ferry-net/2 frame bodies", () => {
  it("decode to what was encoded", () => {
    fc.assert(
      fc.property(conn, offset, fc.uint8Array({ maxLength: 64 }), fc.constantFrom("eof" as const, "reset" as const), u32, (c, at, bytes, how, n) => {
        assert.deepEqual(decodeRef(encodeRef(c), "ARRIVED"), c);
        assert.deepEqual(decodeOffset(encodeOffset(c, at), "WRITTEN"), { ...c, offset: at });
        const framed = Buffer.concat([encodeOffset(c, at), bytes]);
        const d = decodeBytes(framed, "DATA");
        assert.deepEqual([d.conn, d.offset, Buffer.from(d.bytes)], [c, at, Buffer.from(bytes)]);
        assert.deepEqual(decodeEnd(encodeEnd(c, how)), { ...c, how });
        assert.equal(decodeU32(encodeU32(n), "FLUSH"), n);
      }),
      fuzzParameters(500),
    );
  });

  it("read a body that is a view into a larger buffer", () => {
    const big = new Uint8Array(40);
    encodeOffset({ listener: 2, seq: 9 }, 1234, big.subarray(8, 8 + NET_OFFSET_BYTES));
    assert.deepEqual(decodeOffset(big.subarray(8, 8 + NET_OFFSET_BYTES), "CONSUMED"), { listener: 2, seq: 9, offset: 1234 });
  });

  it("refuse a body of another length", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 32 }), (body) => {
        if (body.length !== NET_REF_BYTES) refused(() => decodeRef(body, "ARRIVED"));
        if (body.length !== NET_OFFSET_BYTES) refused(() => decodeOffset(body, "WRITTEN"));
        if (body.length !== NET_END_BYTES) refused(() => decodeEnd(body));
        if (body.length !== 4) refused(() => decodeU32(body, "FLUSH"));
        if (body.length < NET_OFFSET_BYTES) refused(() => decodeBytes(body, "SEND"));
      }),
      fuzzParameters(300),
    );
  });

  it("refuse an offset that is not a whole number of bytes exact as a double, and an unknown kind of end", () => {
    for (const bad of [-1, 0.5, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY]) {
      const body = encodeOffset({ listener: 0, seq: 0 }, bad);
      refused(() => decodeOffset(body, "WRITTEN"));
      refused(() => decodeBytes(body, "DATA"));
    }
    for (const how of [0, 3, 255]) {
      const body = encodeEnd({ listener: 0, seq: 0 }, "eof");
      body[8] = how;
      refused(() => decodeEnd(body));
    }
  });
});
