/**
 * Compressed PAGES frames (`_compress.ts`): what compresses comes back byte
 * for byte; what does not shrink is left to go as PAGES; a frame whose count,
 * announced size or block is wrong is refused with ERR_MIGRATION_PROTOCOL
 * before it can make this side allocate more than a frame; and `auto`
 * compresses only below the rate it names.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import fc from "fast-check";
import { FerryError } from "../errors.js";
import { COMPRESS_BELOW_BYTES_PER_S, compressPagesPayload, compressRound, decompressPagesPayload } from "./_compress.js";
import { PAGES_PER_FRAME_MAX, WIRE_PAGE_BYTES } from "./_wire.js";

/** A PAGES payload: count, indexes, then the pages, each filled by `fill`. */
function pagesPayload(indexes: number[], fill: (page: Uint8Array, i: number) => void): Buffer {
  const head_bytes = 4 + 4 * indexes.length;
  const out = Buffer.alloc(head_bytes + indexes.length * WIRE_PAGE_BYTES);
  out.writeUInt32LE(indexes.length, 0);
  indexes.forEach((index, i) => {
    out.writeUInt32LE(index, 4 + 4 * i);
    fill(out.subarray(head_bytes + i * WIRE_PAGE_BYTES, head_bytes + (i + 1) * WIRE_PAGE_BYTES), i);
  });
  return out;
}

const textLike = (page: Uint8Array, i: number): void => {
  page.fill(`page ${i} holds a record; `.charCodeAt(i % 7));
  Buffer.from(page.buffer, page.byteOffset, page.length).write(`record ${i}: the same words again and again `.repeat(60), "latin1");
};

function refused(payload: Uint8Array): FerryError {
  try {
    decompressPagesPayload(payload, PAGES_PER_FRAME_MAX);
  } catch (err: unknown) {
    assert.ok(err instanceof FerryError, String(err));
    assert.equal(err.code, "ERR_MIGRATION_PROTOCOL");
    return err;
  }
  assert.fail("the frame was taken");
}

describe("compressed PAGES frames", () => {
  it("pages that shrink come back byte for byte, indexes included", async () => {
    const payload = pagesPayload([3, 9, 1000, 70000], textLike);
    const packed = await compressPagesPayload(payload);
    assert.ok(packed !== null && packed.length < payload.length / 4, `${packed?.length} of ${payload.length}`);
    assert.deepEqual(Buffer.from(decompressPagesPayload(packed, PAGES_PER_FRAME_MAX)), payload);
  });

  it("pages that do not shrink are left to go as they are", async () => {
    assert.equal(await compressPagesPayload(pagesPayload([0, 1], (p) => p.set(randomBytes(p.length)))), null);
  });

  it("a wrong count, a wrong announced size, a cut or damaged block: refused, never decompressed past one frame", async () => {
    const packed = Buffer.from((await compressPagesPayload(pagesPayload([1, 2], textLike))) as Uint8Array);
    const head_bytes = 4 + 4 * 2;
    refused(packed.subarray(0, 6));
    const zero = Buffer.from(packed);
    zero.writeUInt32LE(0, 0);
    refused(zero);
    const many = Buffer.from(packed);
    many.writeUInt32LE(PAGES_PER_FRAME_MAX + 1, 0);
    refused(many);
    // The block's announced size is the only thing an allocation follows: it must be exactly the pages'.
    const huge = Buffer.from(packed);
    huge.writeUInt32LE(0xfffffff0, head_bytes);
    assert.match(refused(huge).message, /announces/);
    const short = Buffer.from(packed);
    short.writeUInt32LE(WIRE_PAGE_BYTES, head_bytes);
    refused(short);
    refused(packed.subarray(0, packed.length - 7));
  });

  it("any bytes at all: a PAGES payload of the count it names, or ERR_MIGRATION_PROTOCOL", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), fc.nat(8), (bytes, count) => {
        const b = Buffer.from(bytes.length >= 4 ? bytes : new Uint8Array(4));
        b.writeUInt32LE(count, 0);
        let out: Uint8Array;
        try {
          out = decompressPagesPayload(b, PAGES_PER_FRAME_MAX);
        } catch (err: unknown) {
          return err instanceof FerryError && err.code === "ERR_MIGRATION_PROTOCOL";
        }
        return out.length === 4 + count * (4 + WIRE_PAGE_BYTES);
      }),
      { seed: 15, numRuns: 2000 },
    );
  });

  it("auto compresses below the rate it names, and only once a rate is known; lz4 and off do as they say", () => {
    assert.equal(compressRound("auto", null), false);
    assert.equal(compressRound("auto", COMPRESS_BELOW_BYTES_PER_S - 1), true);
    assert.equal(compressRound("auto", COMPRESS_BELOW_BYTES_PER_S), false);
    assert.equal(compressRound("lz4", null), true);
    assert.equal(compressRound("off", 1), false);
  });
});
