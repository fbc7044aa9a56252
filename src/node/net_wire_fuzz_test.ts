/**
 * Property tests of the connection relay's wire, ferry-net/2 (fast-check,
 * fixed seed, bounded time): whatever frames either side is sent, the other
 * hands its home or runner only well-typed calls (connections and offsets as
 * safe non-negative integers), and garbage ends the line without an
 * exception escaping. Plus the regression of a pid whose %-escape is
 * malformed, which used to throw out of the upgrade handler.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import { test } from "node:test";
import * as fc from "fast-check";
import { fuzzParameters } from "../_fuzz.js";
import { FerryError } from "../errors.js";
import { pipeDuplexPair } from "../transport/_testing.js";
import { FramedConnection } from "../transport/mod.js";
import type { ConnRef } from "../wasi/mod.js";
import type { NetDownlink, NetHome, NetUplink } from "./net_home.js";
import { NET_PATH, NET_PROTOCOL, acceptNetLine, connectNetLine } from "./_net_wire.js";
import { Dialer } from "./_dialer.js";

/** Frame types of ferry-net/2 (`_net_wire.ts`). */
const F = { hello: 1, send: 2, shutdown: 3, close: 4, unlisten: 5, consumed: 6, flush: 7, attached: 16, arrived: 17, data: 18, end: 19, written: 20, flushed: 21, superseded: 22, error: 23 } as const;

const json = (v: unknown): Uint8Array => Buffer.from(JSON.stringify(v) ?? "null");

/**
 * What the side under test handed on that it should not have. Recorded, not
 * thrown: the calls run inside the wire's own loops, which would take an
 * exception for a broken line and hide it.
 */
const violations: string[] = [];

function assertRef(c: ConnRef): void {
  if (!(Number.isSafeInteger(c.listener) && c.listener >= 0 && Number.isSafeInteger(c.seq) && c.seq >= 0)) violations.push(`connection ${JSON.stringify(c)}`);
}

function assertOffset(n: number): void {
  if (!(Number.isSafeInteger(n) && n >= 0)) violations.push(`offset ${String(n)}`);
}

function assertBytes(b: unknown): void {
  if (!(b instanceof Uint8Array)) violations.push(`bytes ${String(b)}`);
}

/** Fails the run if anything was handed on unchecked. */
function assertNoViolations(): void {
  const seen = violations.splice(0);
  assert.deepEqual(seen, [], "unchecked values reached the other side");
}

/** A data frame: u32 listener, u32 seq, f64 offset, bytes; the offset sometimes not a safe integer. */
const dataPayload = fc
  .tuple(fc.nat(), fc.nat(), fc.oneof(fc.nat(), fc.double(), fc.constant(2 ** 60)), fc.uint8Array({ maxLength: 64 }))
  .map(([listener, seq, offset, bytes]) => {
    const head = Buffer.alloc(16);
    head.writeUInt32LE(listener >>> 0, 0);
    head.writeUInt32LE(seq >>> 0, 4);
    head.writeDoubleLE(offset, 8);
    return Buffer.concat([head, bytes]);
  });

/**
 * Binary bodies of the small frames (`_net_frames.ts`), right or wrong: the
 * lengths of each layout and one byte off, u32 fields, offsets that are
 * sometimes not safe integers, kinds of end that are sometimes not one.
 */
const fieldsPayload = fc
  .tuple(fc.constantFrom(3, 4, 5, 8, 9, 10, 15, 16, 17), fc.nat(), fc.nat(), fc.oneof(fc.nat(), fc.double(), fc.constant(2 ** 60)), fc.nat({ max: 3 }))
  .map(([length, listener, seq, offset, how]) => {
    const body = Buffer.alloc(24);
    body.writeUInt32LE(listener >>> 0, 0);
    body.writeUInt32LE(seq >>> 0, 4);
    if (length === 9) body.writeUInt8(how, 8);
    else body.writeDoubleLE(offset, 8);
    return body.subarray(0, length);
  });

function frames(types: readonly number[]): fc.Arbitrary<[number, Uint8Array][]> {
  return fc.array(
    fc.oneof(
      fc.tuple(fc.constantFrom(...types), fc.oneof(fieldsPayload, fc.uint8Array({ maxLength: 64 }), fc.jsonValue().map(json))),
      fc.tuple(fc.constantFrom(...types), dataPayload),
    ),
    { maxLength: 12 },
  );
}

/** A HELLO, right or wrong. */
const hello = fc.oneof(
  fc.record({ known: fc.array(fc.oneof(fc.nat(), fc.jsonValue()), { maxLength: 3 }), conns: fc.array(fc.oneof(fc.jsonValue(), fc.record({ listener: fc.nat(), seq: fc.nat(), received: fc.oneof(fc.nat(), fc.jsonValue()) })), { maxLength: 3 }) }).map(json),
  fc.jsonValue().map(json),
  fc.uint8Array({ maxLength: 32 }),
);

/** Reads the HTTP answer of an upgrade off `stream`; resolves with its status line and the bytes after it. */
function upgradeAnswer(stream: Duplex): Promise<{ status: string; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      got = Buffer.concat([got, chunk]);
      const end = got.indexOf("\r\n\r\n");
      if (end < 0) return;
      stream.off("data", onData);
      stream.pause();
      resolve({ status: got.subarray(0, got.indexOf("\r\n")).toString(), rest: got.subarray(end + 4) });
    };
    stream.on("data", onData);
    stream.once("error", reject);
  });
}

/** A home that checks every call it gets. */
function checkingHome(): { home: NetHome; attached: () => boolean; detached: () => boolean } {
  let attached = false;
  let detached = false;
  const up: NetUplink = {
    send: (c, offset, bytes) => {
      assertRef(c);
      assertOffset(offset);
      assertBytes(bytes);
    },
    shutdown: (c, offset) => {
      assertRef(c);
      assertOffset(offset);
    },
    close: (c, offset) => {
      assertRef(c);
      assertOffset(offset);
    },
    unlisten: (listener) => assertOffset(listener),
    consumed: (c, offset) => {
      assertRef(c);
      assertOffset(offset);
    },
  };
  const home = {
    attach(h: { known: number[]; conns: (ConnRef & { received: number })[] }, _down: NetDownlink): NetUplink {
      h.known.forEach(assertOffset);
      for (const c of h.conns) {
        assertRef(c);
        assertOffset(c.received);
      }
      attached = true;
      return up;
    },
    detach(u: NetUplink): void {
      if (u !== up) violations.push("detached another uplink");
      detached = true;
    },
  };
  // Only attach and detach are what acceptNetLine uses of a home.
  return { home: home as unknown as NetHome, attached: () => attached, detached: () => detached };
}

test("fuzz: the home side of ferry-net/2 hands its home only checked calls, and garbage ends the line", async () => {
  await fc.assert(
    fc.asyncProperty(hello, frames([F.send, F.shutdown, F.close, F.unlisten, F.consumed, F.flush, 8, 30]), async (first, rest) => {
      const [runner_end, home_end] = pipeDuplexPair();
      const check = checkingHome();
      const req = { url: `${NET_PATH}n1-1`, headers: { upgrade: NET_PROTOCOL } } as unknown as http.IncomingMessage;
      const answer = upgradeAnswer(runner_end);
      acceptNetLine(req, home_end, Buffer.alloc(0), () => check.home);
      const { status, rest: head } = await answer;
      assert.match(status, /^HTTP\/1.1 101/);
      const runner = new FramedConnection(runner_end, { head });
      // Sends fail once the home side has ended the line; what it did until then is what is checked.
      await runner.send(F.hello, first).catch(() => undefined);
      for (const [type, payload] of rest) await runner.send(type, payload).catch(() => undefined);
      // A body of no layout's length: the home side ends the line, whatever came before.
      await runner.send(F.shutdown, Buffer.from("{not json")).catch(() => undefined);
      const end = await (async (): Promise<unknown> => {
        try {
          for await (const f of runner) assert.ok(([F.attached, F.flushed, F.error] as number[]).includes(f.type), `frame ${f.type}`);
        } catch (err: unknown) {
          return err;
        }
        return null;
      })();
      assert.ok(end instanceof FerryError && end.code === "ERR_CONNECTION_CLOSED", String(end));
      // The home gave the line up before closing it: what it attached, it detached.
      assert.equal(check.detached(), check.attached());
      assertNoViolations();
    }),
    fuzzParameters(200),
  );
});

test("a pid with a malformed %-escape is refused with 400, not thrown out of the upgrade handler", async () => {
  const [client, server] = pipeDuplexPair();
  const req = { url: `${NET_PATH}n1-%E0%A4%A`, headers: { upgrade: NET_PROTOCOL } } as unknown as http.IncomingMessage;
  const answer = upgradeAnswer(client);
  acceptNetLine(req, server, Buffer.alloc(0), () => undefined);
  assert.match((await answer).status, /^HTTP\/1.1 400/);
  client.destroy();
});

/** A runner's downlink that checks every call, and says when the line ended. */
function checkingDown(): { down: NetDownlink; ended: Promise<"broken" | "superseded"> ; broken: () => void } {
  let settle!: (how: "broken" | "superseded") => void;
  const ended = new Promise<"broken" | "superseded">((resolve) => (settle = resolve));
  const down: NetDownlink = {
    arrived: assertRef,
    data: (c, offset, bytes) => {
      assertRef(c);
      assertOffset(offset);
      assertBytes(bytes);
    },
    end: (c, how) => {
      assertRef(c);
      if (how !== "eof" && how !== "reset") violations.push(`end ${String(how)}`);
    },
    written: (c, offset) => {
      assertRef(c);
      assertOffset(offset);
    },
    superseded: () => settle("superseded"),
  };
  return { down, ended, broken: () => settle("broken") };
}

test("fuzz: the runner side of ferry-net/2 hands its downlink only checked calls, and garbage breaks the line", async () => {
  // A home that answers HELLO with the frames of the run at hand.
  let script: { first: [number, Uint8Array]; rest: [number, Uint8Array][] } = { first: [F.attached, json({})], rest: [] };
  const server = http.createServer();
  server.on("upgrade", (_req: http.IncomingMessage, socket: Socket, head: Buffer) => {
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: ${NET_PROTOCOL}\r\nconnection: Upgrade\r\n\r\n`);
    const conn = new FramedConnection(socket, { head });
    const { first, rest } = script;
    void (async () => {
      try {
        await conn.next();
        await conn.send(...first);
        for (const [type, payload] of rest) await conn.send(type, payload);
        await conn.send(F.arrived, Buffer.from("{not json"));
      } catch {
        // The runner may have closed the line first: that is one of the outcomes under test.
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.constant<[number, Uint8Array]>([F.attached, json({})]), fc.tuple(fc.constantFrom(F.error, F.data, 40), fc.oneof(fieldsPayload, fc.jsonValue().map(json), fc.uint8Array({ maxLength: 20 })))),
        frames([F.arrived, F.data, F.end, F.written, F.flushed, F.superseded, 24, 99]),
        async (first, rest) => {
          script = { first, rest };
          const check = checkingDown();
          const line = await connectNetLine(new Dialer(null), address, "n1", { pid: "n1-1", hello: { known: [], conns: [] }, down: check.down, broken: check.broken }).catch((err: unknown) => err);
          if (!("send" in (line as object))) {
            assert.ok(line instanceof FerryError, `connectNetLine failed with ${String(line)}`);
            return;
          }
          assert.ok(["broken", "superseded"].includes(await check.ended));
          assertNoViolations();
        },
      ),
      fuzzParameters(150),
    );
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});
