/**
 * Property tests of the link channel's parsers (fast-check, fixed seed,
 * bounded time): a batch from the network (JSON, `POST
 * /v1/internal/deliver`) is a checked Batch or ERR_BAD_REQUEST; a binary
 * DELIVER or ANSWER body (`_link_frames.ts`) decodes to a checked value that
 * encodes back to the same bytes, or fails with ERR_LINK_PROTOCOL; a serving
 * side fed any frames hands on only well-typed deliveries and closes on
 * garbage; a sending side fed any answers resolves only with a well-formed
 * answer, else fails with a FerryError.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import * as fc from "fast-check";
import { fuzzParameters, thrown } from "../_fuzz.js";
import { FerryError } from "../errors.js";
import { BATCH_MESSAGES_MAX, type DeliverAnswer } from "../links/mod.js";
import { PID_PATTERN } from "../process_spec.js";
import { MESSAGE_BYTES_MAX } from "../runtime/mod.js";
import { pipeDuplexPair } from "../transport/_testing.js";
import { FramedConnection } from "../transport/mod.js";
import { LinkChannels, serveLinkChannel } from "./_link_channel.js";
import { decodeAnswer, decodeDeliver, encodeAnswer, encodeDeliver } from "./_link_frames.js";
import { parseBatch } from "./_links.js";

/** Frame types of the link channel (docs/links.md). */
const DELIVER = 1;
const ANSWER = 2;

const VALID_BATCH = { from: "n1-1", messages: [{ seq: 1, data: "aGk=" }, { seq: 2, data: "" }] };

/** Any JSON, or a valid value with one field replaced by anything. */
function nearly(valid: Record<string, unknown>): fc.Arbitrary<unknown> {
  return fc.oneof(
    fc.jsonValue(),
    fc.tuple(fc.constantFrom(...Object.keys(valid)), fc.jsonValue()).map(([k, v]) => ({ ...valid, [k]: v })),
    fc.array(fc.oneof(fc.jsonValue(), fc.record({ seq: fc.oneof(fc.integer(), fc.double()), data: fc.oneof(fc.base64String(), fc.jsonValue()) })), { maxLength: 4 }).map((messages) => ({ ...valid, messages })),
  );
}

function wellFormed(answer: unknown): boolean {
  const a = answer as DeliverAnswer;
  if (a.kind === "accepted") {
    const durable = a.durable === undefined || (Number.isSafeInteger(a.durable) && a.durable >= 0);
    return Number.isSafeInteger(a.upto) && a.upto >= 0 && typeof a.at === "string" && durable && Object.keys(a).length === (a.durable === undefined ? 3 : 4);
  }
  return (a.kind === "moving" || a.kind === "unknown" || a.kind === "gone") && Object.keys(a).length === 1;
}

test("fuzz: parseBatch gives a checked batch or ERR_BAD_REQUEST", () => {
  fc.assert(
    fc.property(nearly(VALID_BATCH), (body) => {
      let batch: ReturnType<typeof parseBatch> | undefined;
      const error = thrown(() => (batch = parseBatch(body)));
      if (error !== undefined) {
        assert.ok(error instanceof FerryError && error.code === "ERR_BAD_REQUEST", String(error));
        return;
      }
      assert.ok(batch !== undefined && typeof batch.from === "string" && batch.from.length > 0 && batch.from.length <= 255);
      for (const m of batch.messages) {
        assert.ok(Number.isSafeInteger(m.seq) && m.seq >= 1);
        assert.ok(m.data instanceof Uint8Array && m.data.length <= MESSAGE_BYTES_MAX);
      }
    }),
    fuzzParameters(3000),
  );
});

/** A well-formed batch: what a sender may put in a DELIVER. */
const validBatch = fc.record({
  from: fc.oneof(fc.constant("n1-1"), fc.string({ minLength: 1, maxLength: 60 }).filter((s) => !s.includes("\0"))),
  messages: fc.array(fc.record({ seq: fc.oneof(fc.integer({ min: 1, max: 1000 }), fc.constant(Number.MAX_SAFE_INTEGER)), data: fc.uint8Array({ maxLength: 40 }) }), { maxLength: 6 }),
});

/** A valid DELIVER body for `id`. */
const validDeliver = (id: number): fc.Arbitrary<Uint8Array> => validBatch.map((batch) => new Uint8Array(encodeDeliver(id, "n2-3", batch)));

/** A body with a few bytes changed, cut short, or extended: close to valid, so the checks past the first bytes are reached. */
function mutated(valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  return fc.tuple(valid, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }), fc.integer({ min: -4, max: 4 })).map(([bytes, edits, grow]) => {
    const out = new Uint8Array(Math.max(0, bytes.length + grow));
    out.set(bytes.subarray(0, out.length));
    for (const [at, value] of edits) if (out.length > 0) out[at % out.length] = value;
    return out;
  });
}

/** Decodes `bytes` with `decode`: a value whose encoding is `bytes` again, or ERR_LINK_PROTOCOL. */
function decodesExactly<T>(bytes: Uint8Array, decode: (b: Uint8Array) => T, encode: (v: T) => Uint8Array): T | undefined {
  let value: T | undefined;
  const error = thrown(() => (value = decode(bytes)));
  if (error !== undefined) {
    assert.ok(error instanceof FerryError && error.code === "ERR_LINK_PROTOCOL", String(error));
    return undefined;
  }
  assert.deepEqual(new Uint8Array(encode(value as T)), new Uint8Array(bytes), "a decoded body encodes back to its bytes");
  return value;
}

test("fuzz: a DELIVER body decodes to a checked batch that encodes back to it, or fails with ERR_LINK_PROTOCOL", () => {
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 80 }), validDeliver(7), mutated(validDeliver(7))), (bytes) => {
      const frame = decodesExactly(bytes, decodeDeliver, (f) => encodeDeliver(f.id, f.pid, f.batch));
      if (frame === undefined) return;
      assert.ok(PID_PATTERN.test(frame.pid));
      const from = Buffer.byteLength(frame.batch.from);
      assert.ok(from >= 1 && from <= 255 && !frame.batch.from.includes("\0"));
      assert.ok(frame.batch.messages.length <= BATCH_MESSAGES_MAX);
      for (const m of frame.batch.messages) assert.ok(Number.isSafeInteger(m.seq) && m.seq >= 1 && m.data.length <= MESSAGE_BYTES_MAX);
    }),
    fuzzParameters(3000),
  );
});

/** A valid ANSWER body for `id`. */
const validAnswer = (id: number): fc.Arbitrary<Uint8Array> =>
  fc
    .oneof(
      fc.record({ kind: fc.constant("accepted" as const), upto: fc.oneof(fc.nat(), fc.constant(Number.MAX_SAFE_INTEGER)), at: fc.constantFrom("n2", "node_7") }),
      fc.record({ kind: fc.constant("accepted" as const), upto: fc.nat(), at: fc.constant("n2"), durable: fc.nat() }),
      fc.constantFrom("moving", "unknown", "gone").map((kind) => ({ kind }) as DeliverAnswer),
    )
    .map((answer) => new Uint8Array(encodeAnswer(id, answer)));

test("fuzz: an ANSWER body decodes to a well-formed answer that encodes back to it, or fails with ERR_LINK_PROTOCOL", () => {
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 40 }), validAnswer(9), mutated(validAnswer(9))), (bytes) => {
      const frame = decodesExactly(bytes, decodeAnswer, (f) => encodeAnswer(f.id, f.answer));
      if (frame !== undefined) assert.ok(wellFormed(frame.answer), JSON.stringify(frame.answer));
    }),
    fuzzParameters(3000),
  );
});

/** The id a DELIVER body names, if it decodes. */
function deliveryId(payload: Uint8Array): number | undefined {
  try {
    return decodeDeliver(payload).id;
  } catch {
    return undefined; // not a DELIVER: no id, and the channel closes on it
  }
}

/** A frame a peer might send on the link channel. */
const frame: fc.Arbitrary<[number, Uint8Array]> = fc.oneof(
  fc.tuple(fc.nat(4), fc.uint8Array({ maxLength: 200 })),
  fc.tuple(fc.constant(DELIVER), mutated(validDeliver(1))),
  fc.tuple(fc.constant(DELIVER), fc.nat(1000).chain((id) => validDeliver(id))),
);

test("fuzz: a served channel hands on only typed deliveries, answers them by id, and closes on garbage", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(frame, { maxLength: 10 }), async (frames) => {
      const [a, b] = pipeDuplexPair();
      const peer = new FramedConnection(a);
      const asked = new Set<number>();
      // Recorded, not asserted: the channel takes a failing receive for a busy receiver.
      const bad: unknown[] = [];
      serveLinkChannel(new FramedConnection(b), async (pid, batch) => {
        if (!PID_PATTERN.test(pid) || !batch.messages.every((m) => Number.isSafeInteger(m.seq) && m.seq >= 1 && m.data instanceof Uint8Array)) bad.push(pid);
        return { kind: "accepted", upto: batch.messages.length, at: "n2" };
      });
      // Sends fail once the channel has closed on garbage; what it did until then is what is checked.
      for (const [type, payload] of frames) {
        const id = type === DELIVER ? deliveryId(payload) : undefined;
        if (id !== undefined) asked.add(id);
        await peer.send(type, payload).catch(() => undefined);
      }
      // A frame type the channel does not have: it must close, whatever came before.
      await peer.send(99, new Uint8Array(0)).catch(() => undefined);
      const closed = await (async (): Promise<unknown> => {
        try {
          for await (const f of peer) {
            assert.equal(f.type, ANSWER);
            const reply = decodeAnswer(f.payload);
            assert.ok(asked.has(reply.id), "an answer to nothing asked");
            assert.ok(wellFormed(reply.answer), JSON.stringify(reply.answer));
          }
        } catch (err: unknown) {
          return err;
        }
        return null;
      })();
      assert.ok(closed instanceof FerryError && closed.code === "ERR_CONNECTION_CLOSED", String(closed));
      assert.deepEqual(bad, []);
    }),
    fuzzParameters(200),
  );
});

/** An ANSWER a peer might send: garbage, or shaped like one, for the id asked or another. */
function answerFrame(id: number): fc.Arbitrary<[number, Uint8Array]> {
  return fc.oneof(
    fc.tuple(fc.nat(4), fc.uint8Array({ maxLength: 100 })),
    fc.tuple(fc.constant(ANSWER), validAnswer(id)),
    fc.tuple(fc.constant(ANSWER), mutated(validAnswer(id))),
    fc.tuple(fc.constant(ANSWER), fc.nat(3).chain((other) => validAnswer(other))),
  );
}

test("fuzz: a delivery resolves only with a well-formed answer, else fails with a FerryError", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(answerFrame(1), { maxLength: 6 }), async (answers) => {
      const [a, b] = pipeDuplexPair();
      const peer = new FramedConnection(b);
      const channels = new LinkChannels(() => Promise.resolve(new FramedConnection(a)), async () => ({ kind: "unknown" }));
      // Its outcome is taken at once: it may fail while the answers below are still being sent (a send may give the
      // event loop a turn).
      const delivery = channels.deliver("peer:1", "n2", "n2-3", { from: "n1-1", messages: [{ seq: 1, data: Buffer.from("x") }] }).then(
        (answer) => ({ answer }),
        (error: unknown) => ({ error }),
      );
      const asked = await peer.next();
      assert.equal(asked.type, DELIVER);
      // The sending side may close the channel on a bad answer; later sends then fail, as they may.
      for (const [type, payload] of answers) await peer.send(type, payload).catch(() => undefined);
      // Then the peer goes away: a delivery still waiting fails now, not after its timeout.
      peer.destroy();
      const outcome = await delivery;
      if ("error" in outcome) assert.ok(outcome.error instanceof FerryError, String(outcome.error));
      else assert.ok(wellFormed(outcome.answer), JSON.stringify(outcome.answer));
      channels.close();
    }),
    fuzzParameters(200),
  );
});
