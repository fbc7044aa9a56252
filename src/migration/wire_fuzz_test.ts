/**
 * Property tests of the migration protocol's parsers and of the destination
 * fed garbage (fast-check, fixed seed, bounded time): every frame a peer can
 * send is checked before use, and a bad one is a FerryError, answered with
 * ERROR; nothing is restored from it.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { test } from "node:test";
import * as fc from "fast-check";
import { compressSync } from "lz4-napi";
import { fuzzParameters, thrown } from "../_fuzz.js";
import { FerryError } from "../errors.js";
import { encodeImage, sparsePages, trustKeys } from "../image/mod.js";
import { pipeDuplexPair } from "../transport/_testing.js";
import { FramedConnection } from "../transport/mod.js";
import { PeerError as PeerRefusal } from "../errors.js";
import { checkHandover } from "./destination.js";
import { HandoverSchema, OfferSchema } from "./_schemas.js";
import { Msg, PAGES_PER_FRAME_MAX, WIRE_PAGE_BYTES, raiseIfError, readFrame, readPages, type Handover } from "./_wire.js";
import { migrateIn, type Landing, type Offer } from "./mod.js";

const json = (v: unknown): Uint8Array => Buffer.from(JSON.stringify(v) ?? "null");

/** An OFFER payload as the destination reads it. */
const parseOffer = (payload: Uint8Array): Offer => readFrame(OfferSchema, payload, "OFFER");

/** A HANDOVER payload as the destination reads it, for a process of the largest cap. */
const parseHandover = (payload: Uint8Array, strategy: Offer["strategy"]): Handover =>
  checkHandover(readFrame(HandoverSchema, payload, "HANDOVER"), { strategy, memory_max_bytes: 4 * 1024 * 1024 * 1024 });

function isProtocolError(error: unknown): boolean {
  return error instanceof FerryError && error.code === "ERR_MIGRATION_PROTOCOL";
}

const VALID_OFFER: Offer = {
  pid: "n1-7",
  home: "n1",
  module_sha256: "ab".repeat(32),
  module_name: "prog.wasm",
  moves: 1,
  args: ["prog", "1"],
  env: ["A=b"],
  dirs: [{ host: "/tmp/x", guest: "/data" }],
  open_files: [],
  strategy: "pre-copy",
  source: "127.0.0.1:7070",
  memory_bytes: 131072,
  memory_max_bytes: 1 << 30,
};

/** Any JSON value, and objects shaped like the expected ones with a field or two wrong. */
function nearly(valid: Record<string, unknown>): fc.Arbitrary<unknown> {
  const keys = Object.keys(valid);
  return fc.oneof(
    fc.jsonValue(),
    fc.tuple(fc.constantFrom(...keys), fc.oneof(fc.jsonValue(), fc.constant(undefined))).map(([k, v]) => ({ ...valid, [k]: v })),
    fc.tuple(fc.constantFrom(...keys), fc.constantFrom(...keys)).map(([a, b]) => ({ ...valid, [a]: valid[b] })),
  );
}

test("fuzz: readPages gives whole pages in a frame of the right size, or ERR_MIGRATION_PROTOCOL", () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 10_000 }),
        fc.tuple(fc.nat(PAGES_PER_FRAME_MAX + 3), fc.integer({ min: -6, max: 6 })).map(([count, skew]) => {
          const out = Buffer.alloc(Math.max(0, 4 + count * (4 + WIRE_PAGE_BYTES) + skew));
          if (out.length >= 4) out.writeUInt32LE(count, 0);
          return out;
        }),
      ),
      (payload) => {
        let pages: ReturnType<typeof readPages> = [];
        const error = thrown(() => (pages = readPages(payload)));
        if (error !== undefined) {
          assert.ok(isProtocolError(error), String(error));
          return;
        }
        assert.equal(payload.length, 4 + pages.length * (4 + WIRE_PAGE_BYTES));
        for (const p of pages) {
          assert.equal(p.data.length, WIRE_PAGE_BYTES);
          assert.ok(Number.isInteger(p.index) && p.index >= 0 && p.index < 2 ** 32);
        }
      },
    ),
    fuzzParameters(2000),
  );
});

test("fuzz: a HANDOVER is a checked one (runs in order, inside the memory) or ERR_MIGRATION_PROTOCOL", () => {
  const valid = { session: "p.1.x", remote_bytes: 4 * 65536, missing: [[0, 1], [2, 2]] };
  fc.assert(
    fc.property(
      fc.oneof(nearly(valid), fc.uint8Array({ maxLength: 200 })),
      fc.constantFrom("post-copy", "hybrid", "pre-copy", "stop-copy"),
      (value, strategy) => {
        const payload = value instanceof Uint8Array ? value : json(value);
        let h: ReturnType<typeof parseHandover> | undefined;
        const error = thrown(() => (h = parseHandover(payload, strategy)));
        if (error !== undefined) {
          assert.ok(isProtocolError(error), String(error));
          return;
        }
        assert.ok(h !== undefined && (strategy === "post-copy" || strategy === "hybrid"));
        let end = 0;
        for (const [first, count] of h.missing) {
          assert.ok(first >= end && count > 0 && (first + count) * 65536 <= h.remote_bytes);
          end = first + count;
        }
      },
    ),
    fuzzParameters(2000),
  );
  assert.deepEqual(parseHandover(json(valid), "hybrid"), valid);
});

test("fuzz: an OFFER is one that passed its schema, or ERR_MIGRATION_PROTOCOL", () => {
  fc.assert(
    fc.property(fc.oneof(nearly(VALID_OFFER as unknown as Record<string, unknown>), fc.uint8Array({ maxLength: 300 })), (value) => {
      const payload = value instanceof Uint8Array ? value : json(value);
      let offer: Offer | undefined;
      const error = thrown(() => (offer = parseOffer(payload)));
      if (error !== undefined) {
        assert.ok(isProtocolError(error), String(error));
        return;
      }
      assert.ok(offer !== undefined);
      assert.match(offer.module_sha256, /^[0-9a-f]{64}$/);
      assert.ok(Array.isArray(offer.args) && offer.args.every((a) => typeof a === "string"));
      assert.ok(Number.isSafeInteger(offer.memory_bytes) && offer.memory_bytes >= 0);
    }),
    fuzzParameters(2000),
  );
  assert.deepEqual(parseOffer(json(VALID_OFFER)), VALID_OFFER);
});

test("fuzz: an ERROR frame is always a PeerRefusal with a code that looks like one", () => {
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }), nearly({ code: "ERR_X", message: "m" }).map(json)), (payload) => {
      const error = thrown(() => raiseIfError({ type: Msg.error, payload }, "the peer"));
      if (isProtocolError(error)) return; // not JSON at all
      assert.ok(error instanceof PeerRefusal, String(error));
      assert.match(error.code, /^ERR_[A-Z0-9_]{1,64}$/);
    }),
    fuzzParameters(2000),
  );
});

/** A frame a hostile source might send after OFFER: anything, or something almost right. */
const frame = fc.oneof(
  fc.tuple(fc.oneof(fc.nat(12), fc.constant(Msg.pages_lz4)), fc.uint8Array({ maxLength: 300 })),
  fc.constant([Msg.round_end, json({ round: 1 })] as [number, Uint8Array]),
  fc.tuple(fc.constant(Msg.pages), fc.nat(40)).map(([type, index]) => {
    const p = Buffer.alloc(4 + 4 + WIRE_PAGE_BYTES, 1);
    p.writeUInt32LE(1, 0);
    p.writeUInt32LE(index, 4);
    return [type, p] as [number, Uint8Array];
  }),
  // A compressed page, whole or cut anywhere (its block then fails to decompress or rebuilds a page the signed digest refuses).
  fc.tuple(fc.nat(40), fc.nat(64)).map(([index, cut]) => {
    const p = compressSync(Buffer.alloc(WIRE_PAGE_BYTES, 1));
    const head = Buffer.alloc(8);
    head.writeUInt32LE(1, 0);
    head.writeUInt32LE(index, 4);
    const whole = Buffer.concat([head, p]);
    return [Msg.pages_lz4, whole.subarray(0, Math.max(8, whole.length - cut))] as [number, Uint8Array];
  }),
  fc.constant([Msg.handover, json({ session: "s", remote_bytes: 65536, missing: [[0, 1]] })] as [number, Uint8Array]),
  fc.constant([Msg.image_end, new Uint8Array(0)] as [number, Uint8Array]),
);

/** An image signed by a key the destination trusts, always cut short: garbage around it must never run. */
const SIGNER = { key: generateKeyPairSync("ed25519").privateKey };
const IMAGE = Buffer.concat([
  ...encodeImage(
    {
      module_sha256: Buffer.from(VALID_OFFER.module_sha256, "hex"),
      instrumenter: "x",
      memory: sparsePages(new Uint8Array(65536)),
      globals: [],
      stack: { entry: "_start", asyncify: new Uint8Array(4) },
      wasi: {},
      streams: { stdout_bytes: 0, stderr_bytes: 0, stdin_pending: new Uint8Array(0), stdin_eof: true },
      meta: { module_path: "prog.wasm", created_unix_ms: 0 },
    },
    { signer: SIGNER },
  ),
]);

test("fuzz: a destination fed garbage after a valid OFFER answers READY, then ERROR with a code, and restores nothing", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.oneof(frame, fc.nat(IMAGE.length - 1).map((n) => [Msg.image, IMAGE.subarray(0, n)] as [number, Uint8Array])), { maxLength: 8 }), async (frames) => {
      const [a, b] = pipeDuplexPair();
      const source = new FramedConnection(a);
      const calls = { finish: 0, abort: 0, writes_outside: 0 };
      const landing: Landing = {
        write: (offset, data) => {
          if (offset < 0 || offset + data.length > 2 ** 32) calls.writes_outside += 1;
        },
        finish: async () => {
          calls.finish += 1;
          return undefined;
        },
        abort: async () => {
          calls.abort += 1;
        },
      };
      // Its outcome is taken at once: it may fail while the frames below are still being sent (a send may give the
      // event loop a turn).
      const incoming = migrateIn(new FramedConnection(b, { splittable_types: [Msg.image, Msg.bulk] }), { prepare: async () => landing, trust: trustKeys([SIGNER.key]) }).then(
        () => null,
        (err: unknown) => err,
      );
      await source.send(Msg.offer, json(VALID_OFFER));
      const ready = await source.next();
      assert.equal(ready.type, Msg.ready);
      // Sent until the destination stops listening; a refusal may come before the last.
      for (const [type, payload] of frames) await source.send(type, payload).catch(() => undefined);
      // A complete image would need IMAGE_END after every byte of a valid image; this may end without one.
      await source.send(Msg.image_end, new Uint8Array(0)).catch(() => undefined);
      const outcome = await incoming;
      assert.ok(outcome instanceof FerryError, `migrateIn ended with ${String(outcome)}`);
      // Each ROUND_END it took is confirmed; its one answer to the rest is ERROR.
      let answer = await source.next();
      while (answer.type === Msg.round_ack) answer = await source.next();
      assert.equal(answer.type, Msg.error);
      assert.ok(thrown(() => raiseIfError(answer, "the destination")) instanceof PeerRefusal);
      assert.equal(calls.finish, 0, "a process was restored from garbage");
      assert.equal(calls.abort, 1);
      assert.equal(calls.writes_outside, 0);
      source.destroy();
    }),
    fuzzParameters(200),
  );
});
