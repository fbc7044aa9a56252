/**
 * Stop-copy's sealed BULK stream on its own: what the source seals from
 * memory, the destination opens into memory, byte for byte; a record changed,
 * replayed, dropped or under another key is refused (natively and with
 * node:crypto alike).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { PassThrough } from "node:stream";
import { describe, it } from "node:test";
import { FerryError } from "../errors.js";
import { nativeAddon } from "../native.js";
import { instantLink } from "../transport/_testing.js";
import { sendSealedBulk, SealedBulkReceiver } from "./_sealed_bulk.js";

const PAGE = 4096;

/** A memory with a few runs of non-zero pages, one longer than a record holds. */
function memory(): Uint8Array {
  const m = new Uint8Array(new SharedArrayBuffer(600 * PAGE));
  for (const [first, count] of [[0, 1], [5, 3], [40, 300], [599, 1]] as const) {
    for (let p = first; p < first + count; p += 1) m.fill((p % 251) + 1, p * PAGE, (p + 1) * PAGE - 7);
  }
  return m;
}

/** The sealed stream of `m` under `key`, as the records the source wrote. */
async function seal(m: Uint8Array, key: Uint8Array): Promise<{ wire: Buffer; records: number; tags: string | null }> {
  const socket = new PassThrough();
  const chunks: Buffer[] = [];
  socket.on("data", (c: Buffer) => chunks.push(Buffer.from(c)));
  const sent = await sendSealedBulk(socket, m, key);
  assert.ok(sent !== null);
  return { wire: Buffer.concat(chunks), records: sent.records, tags: sent.tags_sha256 };
}

/** Feeds `wire` in pieces of `cut` bytes to a receiver placing into a fresh memory; its digest, or the error. */
async function open(wire: Buffer, key: Uint8Array, records: number, cut: number, native: boolean): Promise<{ memory: Uint8Array; tags: string | null } | { error: string }> {
  const target = new Uint8Array(new SharedArrayBuffer(600 * PAGE));
  const rx = new SealedBulkReceiver(key, (at, length) => target.subarray(at, at + length), target.length, { native });
  const socket = new PassThrough();
  rx.attach(socket);
  const done = rx.opened(records);
  for (let at = 0; at < wire.length; at += cut) socket.write(wire.subarray(at, at + cut));
  socket.end();
  try {
    return { memory: target, tags: await done };
  } catch (err: unknown) {
    return { error: err instanceof FerryError ? err.code : String(err) };
  }
}

const ways = "addon" in nativeAddon() ? [true, false] : [false];

describe("sealed BULK stream", () => {
  for (const native of ways) {
    const how = native ? "opened natively" : "opened with node:crypto";
    it(`${how}: every page lands where it was, whatever the read sizes; both sides agree on the tags`, async () => {
      const key = randomBytes(32);
      const m = memory();
      const { wire, records, tags } = await seal(m, key);
      assert.equal(records, 5, "runs of at most 256 pages, one a record");
      for (const cut of [1 << 20, 65536, 4099, 13]) {
        const got = await open(wire, key, records, cut, native);
        assert.ok("memory" in got, `cut ${cut}: ${"error" in got ? got.error : ""}`);
        assert.ok(Buffer.from(got.memory).equals(Buffer.from(m)), `cut ${cut}: memory differs`);
        assert.equal(got.tags, tags);
      }
    });

    it(`${how}: a changed byte, a replayed record, a dropped record, a cut stream or another key are refused`, async () => {
      const key = randomBytes(32);
      const { wire, records, tags } = await seal(memory(), key);
      const first = 4 + wire.readUInt32LE(0) + 16;
      const flipped = Buffer.from(wire);
      flipped[first + 100] = (flipped[first + 100] as number) ^ 1;
      const cases: [string, Buffer, Uint8Array, number, string][] = [
        ["changed", flipped, key, records, "ERR_PAGE_RECORD_AUTH"],
        ["replayed", Buffer.concat([wire.subarray(0, first), wire]), key, records, "ERR_PAGE_RECORD_AUTH"],
        ["dropped", wire.subarray(first), key, records, "ERR_PAGE_RECORD_AUTH"],
        ["cut between records", wire.subarray(0, first), key, records, "ERR_CONNECTION_CLOSED"],
        ["cut inside a record", wire.subarray(0, wire.length - 3), key, records, "ERR_CONNECTION_CLOSED"],
        ["another key", wire, randomBytes(32), records, "ERR_PAGE_RECORD_AUTH"],
        ["a bad length", Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0x7f]), wire]), key, records, "ERR_PAGE_RECORD_LIMIT"],
      ];
      for (const [what, bytes, k, n, code] of cases) {
        const got = await open(bytes, k, n, 65536, native);
        assert.deepEqual(got, { error: code }, what);
      }
      // Told of fewer records than came: it stops at that many, and their tags are not the ones the image vouches for.
      const short = await open(wire, key, records - 1, 65536, native);
      assert.ok("tags" in short && short.tags !== tags);
    });
  }

  it("gives the event loop turns while it sends, though every write is taken at once", async () => {
    // A link the kernel always keeps up with (the records' plain TCP on loopback): nothing in the send waits for I/O.
    // What the node's thread has to do meanwhile (here an immediate set at the first write) must not wait for the end.
    // 64 MiB of pages: more than may be sealed between two turns on any machine (TURN_MS).
    const m = new Uint8Array(new SharedArrayBuffer(64 * 1024 * 1024)).fill(7);
    const { link, written, immediate_at } = instantLink();
    const sent = await sendSealedBulk(link, m, randomBytes(32));
    assert.ok(sent !== null && sent.bytes === written());
    assert.ok(immediate_at() >= 0 && immediate_at() < written(), `the immediate ran after ${immediate_at()} of ${written()} bytes`);
  });

  it("an empty memory sends no record and has no digest", async () => {
    const { wire, records, tags } = await seal(new Uint8Array(new SharedArrayBuffer(4 * PAGE)), randomBytes(32));
    assert.deepEqual([wire.length, records, tags], [0, 0, null]);
  });
});
