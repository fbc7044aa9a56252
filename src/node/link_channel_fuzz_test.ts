/**
 * Property tests of the link channel's parsers (fast-check, fixed seed,
 * bounded time): a batch from the network is a checked Batch or
 * ERR_BAD_REQUEST; a serving side fed any frames hands on only well-typed
 * deliveries and closes on garbage; a sending side fed any answers resolves
 * only with a well-formed answer, else fails with a FerryError.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import * as fc from "fast-check";
import { fuzzParameters, thrown } from "../_fuzz.js";
import { FerryError } from "../errors.js";
import type { DeliverAnswer } from "../links/mod.js";
import { MESSAGE_BYTES_MAX } from "../runtime/mod.js";
import { pipeDuplexPair } from "../transport/_testing.js";
import { FramedConnection } from "../transport/mod.js";
import { LinkChannels, serveLinkChannel } from "./_link_channel.js";
import { parseBatch } from "./_links.js";

/** Frame types of the link channel (docs/links.md). */
const DELIVER = 1;
const ANSWER = 2;

const json = (v: unknown): Uint8Array => Buffer.from(JSON.stringify(v) ?? "null");

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
  if (a.kind === "accepted") return Number.isSafeInteger(a.upto) && a.upto >= 0 && typeof a.at === "string" && Object.keys(a).length === 3;
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

/** The id a DELIVER payload names, if it is JSON with a numeric id. */
function deliveryId(payload: Uint8Array): number | undefined {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(payload).toString());
  } catch {
    return undefined; // not JSON: no id, and the channel closes on it
  }
  const id = typeof v === "object" && v !== null ? (v as { id?: unknown }).id : undefined;
  return typeof id === "number" ? id : undefined;
}

/** A frame a peer might send on the link channel. */
const frame: fc.Arbitrary<[number, Uint8Array]> = fc.oneof(
  fc.tuple(fc.nat(4), fc.uint8Array({ maxLength: 200 })),
  fc.tuple(fc.constant(DELIVER), nearly({ id: 1, pid: "n2-3", ...VALID_BATCH }).map(json)),
  fc.tuple(fc.constant(DELIVER), fc.nat(1000).map((id) => json({ id, pid: "n2-3", ...VALID_BATCH }))),
);

test("fuzz: a served channel hands on only typed deliveries, answers them by id, and closes on garbage", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(frame, { maxLength: 10 }), async (frames) => {
      const [a, b] = pipeDuplexPair();
      const peer = new FramedConnection(a);
      const asked = new Set<number>();
      // Recorded, not asserted: the channel takes a failing receive for a busy receiver.
      const bad_pids: unknown[] = [];
      serveLinkChannel(new FramedConnection(b), async (pid, body) => {
        if (typeof pid !== "string") bad_pids.push(pid);
        const batch = parseBatch(body);
        return { kind: "accepted", upto: batch.messages.length, at: pid };
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
            const reply = JSON.parse(Buffer.from(f.payload).toString()) as { id: unknown; answer: unknown };
            assert.ok(typeof reply.id === "number" && asked.has(reply.id), "an answer to nothing asked");
            assert.ok(wellFormed(reply.answer), JSON.stringify(reply.answer));
          }
        } catch (err: unknown) {
          return err;
        }
        return null;
      })();
      assert.ok(closed instanceof FerryError && closed.code === "ERR_CONNECTION_CLOSED", String(closed));
      assert.deepEqual(bad_pids, []);
    }),
    fuzzParameters(200),
  );
});

/** An ANSWER a peer might send: garbage, or shaped like one, for the id asked or another. */
function answerFrame(id: number): fc.Arbitrary<[number, Uint8Array]> {
  return fc.oneof(
    fc.tuple(fc.nat(4), fc.uint8Array({ maxLength: 100 })),
    fc.tuple(fc.constant(ANSWER), nearly({ id, answer: { kind: "accepted", upto: 1, at: "n2" } }).map(json)),
    fc.tuple(fc.constant(ANSWER), nearly({ kind: "accepted", upto: 1, at: "n2" }).map((answer) => json({ id, answer }))),
    fc.tuple(fc.constant(ANSWER), fc.constantFrom("moving", "unknown", "gone", "accepted", "other").map((kind) => json({ id, answer: { kind } }))),
  );
}

test("fuzz: a delivery resolves only with a well-formed answer, else fails with a FerryError", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(answerFrame(1), { maxLength: 6 }), async (answers) => {
      const [a, b] = pipeDuplexPair();
      const peer = new FramedConnection(b);
      const channels = new LinkChannels(() => Promise.resolve(new FramedConnection(a)));
      const delivery = channels.deliver("peer:1", "n2", "n2-3", { from: "n1-1", messages: [{ seq: 1, data: Buffer.from("x") }] });
      const asked = await peer.next();
      assert.equal(asked.type, DELIVER);
      // The sending side may close the channel on a bad answer; later sends then fail, as they may.
      for (const [type, payload] of answers) await peer.send(type, payload).catch(() => undefined);
      // Then the peer goes away: a delivery still waiting fails now, not after its timeout.
      peer.destroy();
      const outcome = await delivery.then(
        (answer) => ({ answer }),
        (error: unknown) => ({ error }),
      );
      if ("error" in outcome) assert.ok(outcome.error instanceof FerryError, String(outcome.error));
      else assert.ok(wellFormed(outcome.answer), JSON.stringify(outcome.answer));
      channels.close();
    }),
    fuzzParameters(200),
  );
});
