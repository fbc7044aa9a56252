import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import fc from "fast-check";
import { nativeRecordSealer, RECORD_WIRE_BYTES_MAX, type NativeRecordSealer } from "./native_seal.js";
import { RECORD_BYTES_MAX, RECORD_HEAD_BYTES, RECORD_TAG_BYTES, RecordDirection, RecordOpener, RecordSealer } from "./page_records.js";

const probe = nativeRecordSealer(randomBytes(32), RecordDirection.to_destination);
probe?.close();
const skip = probe === null && "the native addon is not built";
if (skip !== false) console.log(`# skipping native sealer tests: ${skip}`);

const key = (): Buffer => randomBytes(32);
const code = (c: string) => (err: unknown): boolean => (err as { code?: string }).code === c;

function sealer(k: Uint8Array, direction: RecordDirection = RecordDirection.to_destination): NativeRecordSealer {
  const s = nativeRecordSealer(k, direction);
  assert.ok(s !== null);
  return s;
}

/** The wire bytes of one natively sealed record (a fresh copy: the buffer is reused). */
function wire(s: NativeRecordSealer, head: Uint8Array, body: Uint8Array | null, out = Buffer.alloc(RECORD_WIRE_BYTES_MAX)): Buffer {
  return Buffer.from(out.subarray(0, s.sealInto(head, body, out)));
}

describe("page records sealed natively (the source's push)", { skip }, () => {
  it("seals byte for byte as the JavaScript sealer does, and the JavaScript opener opens them, over random seeds", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.option(fc.uint8Array({ maxLength: 5000 }))), { minLength: 1, maxLength: 6 }),
        fc.constantFrom(RecordDirection.to_destination, RecordDirection.to_source),
        (records, direction) => {
          const k = key();
          const native = sealer(k, direction);
          const js = new RecordSealer(k, direction);
          const opener = new RecordOpener(k, direction);
          // One output buffer for every record, as the page server reuses its buffers.
          const out = Buffer.alloc(RECORD_WIRE_BYTES_MAX);
          for (const [head, body] of records) {
            const bytes = wire(native, head, body, out);
            const parts = body === null ? [head] : [head, body];
            assert.ok(bytes.equals(Buffer.concat(js.seal(parts))), "native and JavaScript records differ");
            assert.deepEqual(opener.push(bytes), [Buffer.concat(parts)]);
          }
          assert.equal(native.sealed, records.length);
          native.close();
        },
      ),
      { numRuns: 100 },
    );
  });

  it("seals a record of the largest size straight from shared memory, encrypted", () => {
    const k = key();
    const memory = new Uint8Array(new SharedArrayBuffer(RECORD_BYTES_MAX));
    memory.set(randomBytes(RECORD_BYTES_MAX));
    const bytes = wire(sealer(k), memory.subarray(0, 16), memory.subarray(16));
    assert.equal(bytes.length, RECORD_HEAD_BYTES + RECORD_BYTES_MAX + RECORD_TAG_BYTES);
    assert.ok(!bytes.subarray(RECORD_HEAD_BYTES, RECORD_HEAD_BYTES + 64).equals(Buffer.from(memory.subarray(0, 64))), "the payload travels encrypted");
    const [got] = new RecordOpener(k, RecordDirection.to_destination).push(bytes);
    assert.ok(got?.equals(Buffer.from(memory)));
  });

  it("a natively sealed record with any bit flipped, or opened under another key or direction, is refused", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 500 }), fc.nat(), fc.integer({ min: 0, max: 7 }), (plain, at, bit) => {
        const k = key();
        const bytes = wire(sealer(k), plain.subarray(0, 1), plain.subarray(1));
        const flipped = Buffer.from(bytes);
        // Ciphertext or tag (a longer length field only makes an opener wait for more; a shorter one is tested with the JavaScript sealer).
        const i = RECORD_HEAD_BYTES + (at % (flipped.length - RECORD_HEAD_BYTES));
        flipped[i] = (flipped[i] as number) ^ (1 << bit);
        assert.throws(() => new RecordOpener(k, RecordDirection.to_destination).push(flipped), code("ERR_PAGE_RECORD_AUTH"));
        assert.throws(() => new RecordOpener(key(), RecordDirection.to_destination).push(bytes), code("ERR_PAGE_RECORD_AUTH"));
        assert.throws(() => new RecordOpener(k, RecordDirection.to_source).push(bytes), code("ERR_PAGE_RECORD_AUTH"));
      }),
      { numRuns: 200 },
    );
  });

  it("refuses what cannot be one record, without spending a record number", () => {
    const k = key();
    const s = sealer(k);
    const out = Buffer.alloc(RECORD_WIRE_BYTES_MAX);
    assert.throws(() => s.sealInto(new Uint8Array(0), null, out), code("ERR_SEAL_ARGS"));
    assert.throws(() => s.sealInto(new Uint8Array(16), new Uint8Array(RECORD_BYTES_MAX), out), code("ERR_SEAL_ARGS"));
    assert.throws(() => s.sealInto(new Uint8Array(16), new Uint8Array(100), Buffer.alloc(100 + 16 + 19)), code("ERR_SEAL_ARGS"), "out one byte short");
    assert.throws(() => s.sealInto(out.subarray(10, 26), null, out), code("ERR_SEAL_ARGS"), "out overlapping the plaintext");
    assert.throws(() => s.sealInto(new Uint8Array(16), null, new Uint8Array(0)), code("ERR_SEAL_ARGS"));
    assert.equal(s.sealed, 0);
    const opener = new RecordOpener(k, RecordDirection.to_destination);
    assert.deepEqual(opener.push(wire(s, Buffer.from("first"), null)), [Buffer.from("first")], "the first record sealed is number 0");
    s.close();
    s.close();
    assert.throws(() => s.sealInto(new Uint8Array(16), null, out), RangeError, "a closed sealer seals nothing");
    assert.throws(() => nativeRecordSealer(new Uint8Array(31), RecordDirection.to_destination), RangeError);
  });

  it("never repeats a nonce: equal frames seal differently, record after record", () => {
    const s = sealer(key(), RecordDirection.to_source);
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i += 1) {
      const body = wire(s, Buffer.from("same frame"), null).subarray(RECORD_HEAD_BYTES).toString("hex");
      assert.ok(!seen.has(body), `record ${i} repeats an earlier one`);
      seen.add(body);
    }
  });
});
