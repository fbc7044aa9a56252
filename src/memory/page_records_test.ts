import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import fc from "fast-check";
import { RECORD_BYTES_MAX, RECORD_HEAD_BYTES, RECORD_TAG_BYTES, recordNonce, RecordDirection, RecordOpener, RecordSealer } from "./page_records.js";

const key = (): Buffer => randomBytes(32);

/** The wire bytes of one record. */
function wire(sealer: RecordSealer, parts: Uint8Array[]): Buffer {
  return Buffer.concat(sealer.seal(parts));
}

/** Cuts `bytes` at the given points (any order, any count). */
function cut(bytes: Buffer, points: number[]): Buffer[] {
  const at = [...new Set(points.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const p of [...at, bytes.length]) {
    pieces.push(bytes.subarray(from, p));
    from = p;
  }
  return pieces;
}

const code = (c: string) => (err: unknown): boolean => (err as { code?: string }).code === c;

describe("page-channel records", () => {
  it("round-trip over random seeds: any records, in any number of parts, cut anywhere on the wire", () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.uint8Array({ minLength: 1, maxLength: 3000 }), { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (records, points) => {
          const k = key();
          const sealer = new RecordSealer(k, RecordDirection.to_destination);
          const bytes = Buffer.concat(records.map((parts) => wire(sealer, parts)));
          const opener = new RecordOpener(k, RecordDirection.to_destination);
          const got = cut(bytes, points).flatMap((piece) => opener.push(piece));
          assert.deepEqual(got.map((b) => Buffer.from(b)), records.map((parts) => Buffer.concat(parts)));
          assert.equal(opener.opened, records.length);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("carries a record of the largest size, and its length and tag cost 20 bytes", () => {
    const k = key();
    const plain = randomBytes(RECORD_BYTES_MAX);
    const bytes = wire(new RecordSealer(k, RecordDirection.to_destination), [plain.subarray(0, 16), plain.subarray(16)]);
    assert.equal(bytes.length, RECORD_HEAD_BYTES + RECORD_BYTES_MAX + RECORD_TAG_BYTES);
    assert.ok(!bytes.subarray(RECORD_HEAD_BYTES, RECORD_HEAD_BYTES + 64).equals(plain.subarray(0, 64)), "the payload travels encrypted");
    const [got] = new RecordOpener(k, RecordDirection.to_destination).push(bytes);
    assert.ok(got?.equals(plain));
  });

  it("refuses a record with any bit of its ciphertext or tag flipped, and returns none of it", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 500 }), fc.nat(), fc.integer({ min: 0, max: 7 }), (plain, at, bit) => {
        const k = key();
        const bytes = wire(new RecordSealer(k, RecordDirection.to_destination), [plain]);
        const i = RECORD_HEAD_BYTES + (at % (bytes.length - RECORD_HEAD_BYTES));
        bytes[i] = (bytes[i] as number) ^ (1 << bit);
        assert.throws(() => new RecordOpener(k, RecordDirection.to_destination).push(bytes), code("ERR_PAGE_RECORD_AUTH"));
      }),
      { numRuns: 200 },
    );
  });

  it("refuses a record whose length field was shortened (the length is authenticated too)", () => {
    const k = key();
    const bytes = wire(new RecordSealer(k, RecordDirection.to_destination), [randomBytes(100)]);
    bytes.writeUInt32LE(100 - 1, 0);
    assert.throws(() => new RecordOpener(k, RecordDirection.to_destination).push(bytes), code("ERR_PAGE_RECORD_AUTH"));
  });

  it("refuses a length past the limit from the length field alone, before buffering the record", () => {
    const head = Buffer.alloc(RECORD_HEAD_BYTES);
    head.writeUInt32LE(RECORD_BYTES_MAX + 1, 0);
    assert.throws(() => new RecordOpener(key(), RecordDirection.to_destination).push(head), code("ERR_PAGE_RECORD_LIMIT"));
    assert.throws(() => new RecordOpener(key(), RecordDirection.to_destination).push(Buffer.alloc(RECORD_HEAD_BYTES)), code("ERR_PAGE_RECORD_LIMIT"));
    assert.throws(() => new RecordSealer(key(), RecordDirection.to_destination).seal([Buffer.alloc(RECORD_BYTES_MAX + 1)]), RangeError);
  });

  it("refuses a replayed, a reordered, a reflected record and one under another key; once refused, stays closed", () => {
    const k = key();
    const sealer = new RecordSealer(k, RecordDirection.to_destination);
    const [r0, r1] = [wire(sealer, [Buffer.from("zero")]), wire(sealer, [Buffer.from("one")])];
    const replay = new RecordOpener(k, RecordDirection.to_destination);
    assert.equal(replay.push(r0).length, 1);
    assert.throws(() => replay.push(r0), code("ERR_PAGE_RECORD_AUTH"));
    assert.throws(() => replay.push(r1), code("ERR_PAGE_RECORD_AUTH"), "a refused connection opens nothing more");
    assert.throws(() => new RecordOpener(k, RecordDirection.to_destination).push(r1), code("ERR_PAGE_RECORD_AUTH"));
    // The same key the other way: the direction in the nonce tells them apart.
    assert.throws(() => new RecordOpener(k, RecordDirection.to_source).push(r0), code("ERR_PAGE_RECORD_AUTH"));
    assert.throws(() => new RecordOpener(key(), RecordDirection.to_destination).push(r0), code("ERR_PAGE_RECORD_AUTH"));
  });

  it("never repeats a nonce: every record gets the next number, and equal plaintexts seal differently", () => {
    const sealer = new RecordSealer(key(), RecordDirection.to_source);
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i += 1) {
      assert.equal(sealer.sealed, i);
      const body = wire(sealer, [Buffer.from("same frame")]).subarray(RECORD_HEAD_BYTES).toString("hex");
      assert.ok(!seen.has(body), `record ${i} repeats an earlier one`);
      seen.add(body);
    }
    const nonces = new Set<string>();
    for (const d of [RecordDirection.to_destination, RecordDirection.to_source]) {
      for (const seq of [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 52]) nonces.add(recordNonce(d, seq).toString("hex"));
    }
    assert.equal(nonces.size, 12, "nonces differ by direction and by every bit of the number");
  });
});
