import assert from "node:assert/strict";
import net from "node:net";
import { Duplex } from "node:stream";
import { describe, it } from "node:test";
import { CHUNK_BYTES, PAGE_FRAME_HEAD_BYTES, pageFrameHead, PageFrame, PAGES_FLAG_DEMAND } from "../memory/mod.js";
import { PageServer, type ServeEnd } from "./page_server.js";

/** A destination played by hand: it sends frames and reads what the server answers. */
async function pair(server: PageServer): Promise<{ dest: net.Socket; served: Promise<ServeEnd>; frames: Frame[]; next(): Promise<Frame>; close(): void }> {
  const listener = net.createServer();
  await new Promise<void>((r) => listener.listen(0, "127.0.0.1", () => r()));
  const accepted = new Promise<net.Socket>((r) => listener.once("connection", r));
  const dest = net.connect((listener.address() as net.AddressInfo).port, "127.0.0.1");
  const source = await accepted;
  listener.close();
  const served = server.serve(source);
  const frames: Frame[] = [];
  const waiting: ((f: Frame) => void)[] = [];
  let input = Buffer.alloc(0);
  dest.on("data", (data: Buffer) => {
    input = Buffer.concat([input, data]);
    for (;;) {
      if (input.length < PAGE_FRAME_HEAD_BYTES) return;
      const kind = input.readUInt32LE(0);
      const a = input.readUInt32LE(4);
      const b = input.readUInt32LE(8);
      const c = input.readUInt32LE(12);
      const payload = kind === PageFrame.pages ? b * CHUNK_BYTES : 0;
      if (input.length < PAGE_FRAME_HEAD_BYTES + payload) return;
      const frame = { kind, a, b, c, data: input.subarray(PAGE_FRAME_HEAD_BYTES, PAGE_FRAME_HEAD_BYTES + payload) };
      input = input.subarray(PAGE_FRAME_HEAD_BYTES + payload);
      const w = waiting.shift();
      if (w !== undefined) w(frame);
      else frames.push(frame);
    }
  });
  return {
    dest,
    served,
    frames,
    next: () => {
      const f = frames.shift();
      return f !== undefined ? Promise.resolve(f) : new Promise((r) => waiting.push(r));
    },
    close: () => dest.destroy(),
  };
}

interface Frame {
  kind: number;
  a: number;
  b: number;
  c: number;
  data: Buffer;
}


function hello(chunks: number, present: number[] = []): Buffer {
  const bitmap = Buffer.alloc(Math.ceil(chunks / 8));
  for (const c of present) bitmap[c >> 3]! |= 1 << (c & 7);
  return Buffer.concat([pageFrameHead(PageFrame.hello, CHUNK_BYTES, chunks, bitmap.length), bitmap]);
}

/** 40 chunks: chunk i holds byte i+1 everywhere, except chunks 10..29, which are zero. */
function memory(): Uint8Array {
  const m = new Uint8Array(40 * CHUNK_BYTES);
  for (let c = 0; c < 40; c += 1) if (c < 10 || c >= 30) m.fill(c + 1, c * CHUNK_BYTES, (c + 1) * CHUNK_BYTES);
  return m;
}

describe("post-copy page server", () => {
  it("before the push starts it answers only requests; then it pushes what the destination lacks, zero runs as ranges, until DONE", async () => {
    const server = new PageServer(memory(), { hold_push: true });
    const p = await pair(server);
    p.dest.write(hello(40, [0, 1, 2, 3]));
    p.dest.write(pageFrameHead(PageFrame.req, 35));
    const answer = await p.next();
    assert.deepEqual([answer.kind, answer.a, answer.b, answer.c], [PageFrame.pages, 35, 1, PAGES_FLAG_DEMAND]);
    assert.ok(answer.data.every((b) => b === 36));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(p.frames.length, 0, "nothing may be pushed before startPush");
    server.startPush();
    const got = new Uint8Array(40);
    for (const c of [0, 1, 2, 3, 35]) got[c] = 1;
    while (got.includes(0)) {
      const f = await p.next();
      for (let c = f.a; c < f.a + f.b; c += 1) {
        assert.equal(got[c], 0, `chunk ${c} sent twice`);
        got[c] = 1;
        if (f.kind === PageFrame.pages) assert.ok(f.data.subarray((c - f.a) * CHUNK_BYTES, (c - f.a + 1) * CHUNK_BYTES).every((b) => b === c + 1));
        else assert.ok(c >= 10 && c < 30, `chunk ${c} is not zero`);
      }
    }
    assert.equal(server.stats.zero_chunks, 20);
    p.dest.write(pageFrameHead(PageFrame.done));
    assert.equal(await p.served, "done");
    p.close();
  });

  it("sends the prefetched chunks first, and the chunks after an answer before resuming the address-order push", async () => {
    const server = new PageServer(memory(), { hold_push: true });
    server.prefetch([39, 38]);
    const p = await pair(server);
    p.dest.write(hello(40));
    assert.deepEqual([(await p.next()).a, (await p.next()).a], [39, 38]);
    p.dest.write(pageFrameHead(PageFrame.req, 5));
    assert.equal((await p.next()).a, 5);
    server.startPush();
    const after = await p.next();
    assert.equal(after.a, 6, "the chunks after a fault come next");
    p.dest.write(pageFrameHead(PageFrame.abort));
    assert.equal(await p.served, "abort");
    p.close();
  });

  it("in the clear, pages reach the socket copied into the connection's own buffers, never as views of the guest's memory", async () => {
    // The kernel's first read of a guest page is what made the plain push slow (FRAME_BUFFERS in page_server.ts).
    const guest = new WebAssembly.Memory({ initial: 40, maximum: 64, shared: true });
    const view = new Uint8Array(guest.buffer);
    view.set(memory());
    // Copied as written: the connection reuses a frame buffer once the socket has taken it.
    const written: Buffer[] = [];
    const views: boolean[] = [];
    const socket = new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        written.push(Buffer.from(chunk));
        views.push(chunk.buffer === guest.buffer);
        callback();
      },
    });
    const server = new PageServer(view);
    const served = server.serve(socket);
    socket.push(hello(40));
    // Until every chunk is on the wire (counted as sent before it is written).
    const onWire = (): number => {
      const wire = Buffer.concat(written);
      let chunks = 0;
      for (let at = 0; at + PAGE_FRAME_HEAD_BYTES <= wire.length; ) {
        const [kind, b] = [wire.readUInt32LE(at), wire.readUInt32LE(at + 8)];
        chunks += b;
        at += PAGE_FRAME_HEAD_BYTES + (kind === PageFrame.pages ? b * CHUNK_BYTES : 0);
      }
      return chunks;
    };
    while (onWire() < 40) await new Promise((r) => setImmediate(r));
    socket.push(pageFrameHead(PageFrame.done));
    assert.equal(await served, "done");
    const wire = Buffer.concat(written);
    assert.ok(written.filter((w) => w.length > PAGE_FRAME_HEAD_BYTES).length >= 2, "pages were pushed");
    assert.ok(!views.includes(true), "a frame was written straight from guest memory");
    // Still the right bytes: chunk c holds c+1 (or a ZERO range).
    const got = new Uint8Array(40);
    for (let at = 0; at < wire.length; ) {
      const [kind, a, b] = [wire.readUInt32LE(at), wire.readUInt32LE(at + 4), wire.readUInt32LE(at + 8)];
      at += PAGE_FRAME_HEAD_BYTES;
      for (let c = a; c < a + b; c += 1) {
        got[c] = 1;
        if (kind === PageFrame.pages) {
          assert.ok(wire.subarray(at, at + CHUNK_BYTES).every((x) => x === c + 1), `chunk ${c}'s bytes`);
          at += CHUNK_BYTES;
        } else assert.ok(c >= 10 && c < 30, `chunk ${c} is not zero`);
      }
    }
    assert.ok(!got.includes(0), "every chunk was sent");
  });

  it("reads a request that comes while it pushes and answers it before the push ends, though every write is taken at once", async () => {
    // A link the kernel always keeps up with: every write is taken at once. A request is delivered as I/O is, on a
    // later turn of the event loop; the push must give it one. 64 MiB: more than the push may send between turns
    // on any machine (TURN_MS).
    const chunks = 1024;
    const m = new Uint8Array(chunks * CHUNK_BYTES);
    for (let c = 0; c < chunks; c += 1) m.fill((c % 250) + 1, c * CHUNK_BYTES, (c + 1) * CHUNK_BYTES);
    const server = new PageServer(m, { hold_push: true });
    const written: { a: number; b: number; c: number }[] = [];
    const here = new Set<number>();
    let asked = false;
    const link: Duplex = new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, done) {
        const frame = { a: chunk.readUInt32LE(4), b: chunk.readUInt32LE(8), c: chunk.readUInt32LE(12) };
        written.push(frame);
        if (!asked) {
          asked = true;
          setImmediate(() => link.push(pageFrameHead(PageFrame.req, chunks - 1)));
        }
        for (let c = frame.a; c < frame.a + frame.b; c += 1) here.add(c);
        if (here.size === chunks) link.push(pageFrameHead(PageFrame.done, 0));
        done();
      },
    });
    link.push(hello(chunks));
    const served = server.serve(link);
    server.startPush();
    assert.equal(await served, "done");
    const answer = written.findIndex((f) => f.a === chunks - 1 && f.c === PAGES_FLAG_DEMAND);
    assert.ok(answer > 0, `the last chunk was answered (${written.length} frames written)`);
    assert.ok(written.slice(answer + 1).some((f) => f.c === 0), "the push went on after the answer");
  });

  it("a destination expecting another memory size is cut off", async () => {
    const server = new PageServer(memory());
    const p = await pair(server);
    p.dest.write(hello(41));
    assert.equal(await p.served, "closed");
    p.close();
  });
});
