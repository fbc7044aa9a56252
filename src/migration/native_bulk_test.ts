/**
 * Stop-copy's record stream in native threads (`_native_bulk.ts`), over real
 * loopback TCP (the threads take the socket's file descriptor): sealed
 * records (nodes with TLS) and tagged cleartext records (nodes without)
 * land byte for byte, growing the memory as runs need; a changed, dropped or
 * replayed record, another key or a cut connection are refused; and a whole
 * stop-copy through them moves a process intact, or leaves it running at the
 * source when a record is changed or the connection is cut.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import net from "node:net";
import type { Duplex } from "node:stream";
import { describe, it } from "node:test";
import { FerryError } from "../errors.js";
import { trustKeys } from "../image/mod.js";
import { GuestProcess } from "../runtime/mod.js";
import { pipeDuplexPair } from "../transport/_testing.js";
import { FramedConnection } from "../transport/mod.js";
import { Msg } from "./_wire.js";
import { migrateIn, migrateOut } from "./mod.js";
import { nativeBulkAvailable, NativeBulkReceiver, sendNativeBulk, type BulkCipher } from "./_native_bulk.js";
import { destination, EXIT_INTACT, GUEST, io, source } from "./_testing.js";
import { SMALL_MEMORY_BYTES_MAX } from "./_small.js";

const PAGE = 4096;
const PAGES = 700;

/** A memory with a few runs of non-zero pages, one longer than a record holds, and a last page that needs a grow. */
function memory(): Uint8Array {
  const m = new Uint8Array(new SharedArrayBuffer(PAGES * PAGE));
  for (const [first, count] of [[0, 1], [5, 3], [40, 300], [699, 1]] as const) {
    for (let p = first; p < first + count; p += 1) m.fill((p % 251) + 1, p * PAGE, (p + 1) * PAGE - 7);
  }
  return m;
}

/**
 * A loopback TCP connection from `a` to `b` through a relay whose bytes from
 * `a` pass through `change` (all of them, once `a` ended); it ends `b` after.
 */
async function tcpPair(change: (wire: Buffer) => Buffer = (w) => w): Promise<{ a: net.Socket; b: Promise<net.Socket>; close(): void }> {
  let arrived!: (s: net.Socket) => void;
  const b = new Promise<net.Socket>((r) => (arrived = r));
  const target = net.createServer((s) => arrived(s));
  await new Promise<void>((r) => target.listen(0, "127.0.0.1", r));
  const relay = net.createServer((from) => {
    const to = net.connect((target.address() as net.AddressInfo).port, "127.0.0.1");
    const got: Buffer[] = [];
    from.on("data", (c: Buffer) => got.push(c));
    from.on("end", () => to.end(change(Buffer.concat(got))));
    from.on("error", () => to.destroy());
    to.on("error", () => from.destroy());
  });
  await new Promise<void>((r) => relay.listen(0, "127.0.0.1", r));
  const a = net.connect((relay.address() as net.AddressInfo).port, "127.0.0.1");
  await new Promise<void>((r) => a.on("connect", r));
  return {
    a,
    b,
    close: () => {
      target.close();
      relay.close();
    },
  };
}

/** Sends `m` under `key` through a relay that applies `change`; the receiver's memory (starting at 100 pages) and digest, or its error. */
async function stream(m: Uint8Array, key: Uint8Array, cipher: BulkCipher, change?: (wire: Buffer) => Buffer, rx_key: Uint8Array = key): Promise<{ sent: { records: number; tags: string | null }; got: { memory: Uint8Array; tags: string | null } | { error: string } }> {
  const pair = await tcpPair(change);
  const target = new Uint8Array(new SharedArrayBuffer(PAGES * PAGE));
  let grown = 100 * PAGE;
  const rx = new NativeBulkReceiver(rx_key, cipher, (at, length) => {
    grown = Math.max(grown, at + length);
    return target.subarray(at, at + length);
  }, target.length, 100 * PAGE);
  try {
    const sending = sendNativeBulk(pair.a, m, key, cipher);
    rx.attach(await pair.b);
    const sent = await sending;
    assert.ok(sent !== null);
    assert.ok(sent.syscalls > 0 && sent.bytes > 0);
    let got: { memory: Uint8Array; tags: string | null } | { error: string };
    try {
      got = { memory: target, tags: await rx.opened(sent.records) };
      assert.equal(grown, PAGES * PAGE, "the last run grew the memory");
    } catch (err: unknown) {
      got = { error: err instanceof FerryError ? err.code : String(err) };
    }
    return { sent: { records: sent.records, tags: sent.tags_sha256 }, got };
  } finally {
    rx.close();
    pair.close();
  }
}

const ciphers: BulkCipher[] = ["gmac", "aes-256-gcm"];

describe("native record stream", { skip: nativeBulkAvailable() ? false : "the native addon is not built" }, () => {
  for (const cipher of ciphers) {
    it(`${cipher}: every page lands where it was, the memory grown as runs need; both sides agree on the tags`, async () => {
      const key = randomBytes(32);
      const m = memory();
      const { sent, got } = await stream(m, key, cipher);
      assert.equal(sent.records, 5, "runs of at most 256 pages, one a record");
      assert.ok("memory" in got, "error" in got ? got.error : "");
      assert.ok(Buffer.from(got.memory).equals(Buffer.from(m)), "memory differs");
      assert.equal(got.tags, sent.tags);
      assert.match(sent.tags ?? "", /^[0-9a-f]{64}$/);
    });

    it(`${cipher}: a changed byte, a dropped or replayed record, another key or a cut stream are refused`, async () => {
      const key = randomBytes(32);
      const m = memory();
      const first = (w: Buffer): number => 4 + w.readUInt32LE(0) + 16;
      const cases: [string, (w: Buffer) => Buffer, Uint8Array, string][] = [
        [
          "a page byte changed",
          (w) => {
            const c = Buffer.from(w);
            c[first(c) + 100] = (c[first(c) + 100] as number) ^ 1;
            return c;
          },
          key,
          "ERR_PAGE_RECORD_AUTH",
        ],
        ["a record dropped", (w) => w.subarray(first(w)), key, "ERR_PAGE_RECORD_AUTH"],
        ["a record replayed", (w) => Buffer.concat([w.subarray(0, first(w)), w]), key, "ERR_PAGE_RECORD_AUTH"],
        ["cut inside a record", (w) => w.subarray(0, w.length - 3), key, "ERR_CONNECTION_CLOSED"],
        ["cut between records", (w) => w.subarray(0, first(w)), key, "ERR_CONNECTION_CLOSED"],
        ["a bad length", (w) => Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0x7f]), w]), key, "ERR_PAGE_RECORD_LIMIT"],
        ["another key", (w) => w, randomBytes(32), "ERR_PAGE_RECORD_AUTH"],
      ];
      for (const [what, change, rx_key, code] of cases) {
        const { got } = await stream(m, key, cipher, change, rx_key);
        assert.deepEqual(got, { error: code }, what);
      }
    });
  }

  it("a memory as large as the standby already is lands without a single stop to grow it, and small records cost fewer receive calls than records", async () => {
    const pair = await tcpPair();
    const m = memory();
    // Many records of one page each (every other page), on top of memory()'s runs: each record's head, run and tag were a receive call each.
    for (let p = 400; p < 690; p += 2) m.fill(p % 13 + 1, p * PAGE, (p + 1) * PAGE);
    const target = new Uint8Array(new SharedArrayBuffer(PAGES * PAGE));
    let placed = 0;
    const rx = new NativeBulkReceiver(randomBytes(32).fill(7), "gmac", (at, length) => {
      placed += 1;
      return target.subarray(at, at + length);
    }, target.length, target.length);
    try {
      const sending = sendNativeBulk(pair.a, m, Buffer.alloc(32, 7), "gmac");
      rx.attach(await pair.b);
      const sent = await sending;
      assert.ok(sent !== null);
      assert.equal(await rx.opened(sent.records), sent.tags_sha256);
      assert.deepEqual([rx.grows, placed], [0, 1], "grown during the stream");
      assert.ok(Buffer.from(target).equals(Buffer.from(m)));
      // Heads, runs and tags are taken from what one receive brought, not read a few bytes at a time (that was 4 calls a record at least).
      assert.ok(sent.records > 100);
      assert.ok(rx.received.syscalls < sent.records, `${rx.received.syscalls} receive calls for ${sent.records} records`);
    } finally {
      rx.close();
      pair.close();
    }
  });

  it("gmac: the pages travel in the clear, and the tags differ from the sealed ones", async () => {
    const key = randomBytes(32);
    const m = memory();
    let wire_gmac: Buffer = Buffer.alloc(0);
    const plain = await stream(m, key, "gmac", (w) => (wire_gmac = w));
    let wire_gcm: Buffer = Buffer.alloc(0);
    const sealed = await stream(m, key, "aes-256-gcm", (w) => (wire_gcm = w));
    assert.ok(wire_gmac.subarray(4 + 8, 4 + 8 + PAGE - 7).equals(Buffer.from(m.subarray(0, PAGE - 7))), "tagged records carry the page as it is");
    assert.ok(!wire_gcm.subarray(4 + 8, 4 + 8 + PAGE - 7).equals(Buffer.from(m.subarray(0, PAGE - 7))), "sealed records do not");
    assert.notEqual(plain.sent.tags, sealed.sent.tags);
  });

  it("an abort stops a send that cannot finish (the destination does not read): it resolves null, and the peer sees the end", async () => {
    let arrived!: (s: net.Socket) => void;
    const b = new Promise<net.Socket>((r) => (arrived = r));
    const server = net.createServer((s) => {
      // Never read: 64 MiB do not fit the socket's buffers, so the send waits in a write until it is stopped.
      s.pause();
      arrived(s);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const a = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
    await new Promise<void>((r) => a.on("connect", r));
    const peer = await b;
    // Watched from the start: the end can come before the send resolves.
    const closed = new Promise<void>((r) => peer.on("close", () => r()).on("error", () => r()));
    try {
      const m = new Uint8Array(new SharedArrayBuffer(64 * 1024 * 1024)).fill(1);
      const stopping = new AbortController();
      const sending = sendNativeBulk(a, m, randomBytes(32), "gmac", stopping.signal);
      stopping.abort();
      assert.equal(await sending, null);
      // The thread shut its socket down: the peer sees the end.
      peer.resume();
      await closed;
    } finally {
      peer.destroy();
      server.close();
    }
  });

  it("an empty memory sends no record and has no digest", async () => {
    const pair = await tcpPair();
    try {
      const sent = await sendNativeBulk(pair.a, new Uint8Array(new SharedArrayBuffer(4 * PAGE)), randomBytes(32), "gmac");
      assert.deepEqual([sent?.records, sent?.tags_sha256], [0, null]);
      (await pair.b).destroy();
    } finally {
      pair.close();
    }
  });
});

describe("stop-copy through the native record stream", { skip: nativeBulkAvailable() ? false : "the native addon is not built" }, () => {
  /** A stop-copy whose record connection (cipher `cipher`) goes through a relay applying `change`. */
  async function move(cipher: BulkCipher, change?: (wire: Buffer) => Buffer): Promise<{ ok: boolean; code_out?: string; code_in?: string; source: GuestProcess; stdin: Duplex; out: () => string; landed: ReturnType<ReturnType<typeof destination>["landed"]> }> {
    const signer = { key: generateKeyPairSync("ed25519").privateKey };
    const s = io();
    const proc = await GuestProcess.start({ wasm: GUEST, module_path: "guest.wasm", args: ["guest"], env: [], preopens: [] }, s.io);
    // Past the small-memory limit, whose pages would go inside the image instead (`_small.ts`).
    proc.growTo(SMALL_MEMORY_BYTES_MAX + 2 * 65536);
    const pair = await tcpPair(change);
    const key = randomBytes(32);
    const ticket = randomBytes(32);
    let used = 0;
    const dest = destination(trustKeys([signer.key]), GUEST);
    // As a node's door does, the key is wiped once the connection came through: the receiver must hold its own copy by then.
    let dialed!: () => void;
    const socket = new Promise<void>((r) => (dialed = r))
      .then(() => pair.b)
      .then((s) => {
        key.fill(0);
        return s;
      });
    dest.side.sealedDoor = () => ({ ticket, key, cipher, socket, close: () => key.fill(0) });
    const [a, b] = pipeDuplexPair();
    const side = source(proc, "stop-copy", signer, () => new FramedConnection(a));
    side.connectSealed = (t) => {
      assert.ok(Buffer.from(t).equals(ticket));
      used += 1;
      dialed();
      return Promise.resolve(pair.a);
    };
    try {
      const [out, inn] = await Promise.allSettled([migrateOut(side, { strategy: "stop-copy" }), migrateIn(new FramedConnection(b, { splittable_types: [Msg.image, Msg.bulk] }), dest.side)]);
      assert.equal(used, 1, "the record connection was used");
      const code = (r: PromiseSettledResult<unknown>): string | undefined => (r.status === "rejected" ? (r.reason as FerryError).code : undefined);
      return { ok: out.status === "fulfilled" && inn.status === "fulfilled", code_out: code(out), code_in: code(inn), source: proc, stdin: s.stdin, out: s.out, landed: dest.landed() };
    } finally {
      pair.close();
    }
  }

  for (const cipher of ciphers) {
    it(`${cipher}: the process lands intact, byte for byte`, async () => {
      const run = await move(cipher);
      assert.equal(run.ok, true, `${run.code_out} / ${run.code_in}`);
      assert.ok(run.landed !== null);
      run.landed.stdin.end("go\n");
      assert.deepEqual(await run.landed.proc.exited, { kind: "exit", code: EXIT_INTACT });
      await run.source.terminate();
    });
  }

  // What the destination found, and what the source says (a closed connection is a failed migration to it).
  const failures: [string, (w: Buffer) => Buffer, string, string][] = [
    [
      "a record changed on the way",
      (w) => {
        const c = Buffer.from(w);
        c[c.length - 1000] = (c[c.length - 1000] as number) ^ 1;
        return c;
      },
      "ERR_PAGE_RECORD_AUTH",
      "ERR_PAGE_RECORD_AUTH",
    ],
    ["the connection cut inside a record", (w) => w.subarray(0, Math.floor(w.length / 2)), "ERR_CONNECTION_CLOSED", "ERR_MIGRATION_FAILED"],
  ];
  for (const [what, change, code, code_out] of failures) {
    it(`gmac: ${what}: refused (${code}) before anything runs, and the process keeps running at the source`, async () => {
      const run = await move("gmac", change);
      assert.equal(run.ok, false);
      assert.equal(run.code_in, code);
      assert.equal(run.code_out, code_out);
      assert.equal(run.landed, null, "the destination ran the process");
      run.stdin.end("go\n");
      assert.deepEqual(await run.source.exited, { kind: "exit", code: EXIT_INTACT });
      assert.equal(run.out(), "ok\n");
    });
  }
});
