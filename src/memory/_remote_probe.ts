/**
 * Child-process half of remote_test: a worker reads a memory whose pages are
 * all at a "source" (a PageServer on 127.0.0.1 in this same process) and
 * checks every byte. Runs in its own process so a hang can be killed from
 * outside. Mode (argv[2]):
 *   serve    the pages come on demand and by push; report sums and counters
 *   recover  every connection is cut after a few frames; the reader reattaches
 *   wrong-key  sealed, and the first connection's source seals under a key
 *            the threads were not given: they must drop that link, place
 *            nothing, and finish on the next connection
 *   fail     the source stops answering; fail() must wake the waiting worker
 *   sealed   as serve, every frame each way in a sealed record (the
 *            source seals natively, the threads open, and back)
 *   sealed-js  as sealed, the source sealing in JavaScript (a node
 *            without the addon)
 *   tampered sealed, and one bit of the first connection's pages flipped on
 *            the way: the threads must drop that link, place nothing of
 *            the record, and finish on the next connection (new keys)
 *   prepared as serve, with the session opened before its size is known
 *            (as a node does while the source still runs) over memory
 *            already written here: the dropped pages, moved aside rather
 *            than freed in place, must read as the source's, never as the
 *            bytes that were here
 *   sparse   as prepared, with only a few pages written here (a
 *            post-copy standby: what instantiation wrote, the pages sent
 *            before the handover): they must read as the source's too
 *   demand   no push on the page channel, and a demand channel beside
 *            it: the faults are asked for and answered there
 *   demand-cut  as demand, and the demand channel is cut after a few
 *            answers: what it owed is asked for again on the page channel
 */
import { randomBytes } from "node:crypto";
import net from "node:net";
import { Worker } from "node:worker_threads";
import { PageServer } from "../migration/page_server.js";
import type { PageChannelKeys } from "./page_records.js";
import { CHUNK_BYTES, RemotePages } from "./remote.js";

const mode = process.argv[2] ?? "serve";
const CHUNKS = 256;
const bytes = CHUNKS * CHUNK_BYTES;
const source = new WebAssembly.Memory({ initial: CHUNKS, maximum: 65536, shared: true });
const src = new Uint8Array(source.buffer);
// Every other run of 8 chunks is zero, so zero ranges travel too.
for (let i = 0; i < src.length; i += 1) if (((i / CHUNK_BYTES) >> 3) % 2 === 0) src[i] = (i * 31 + (i >> 12)) & 0xff;
let expected = 0;
for (const b of src) expected += b;

const demand = mode === "demand" || mode === "demand-cut";
const sealed = mode === "sealed" || mode === "sealed-js" || mode === "tampered" || mode === "wrong-key";
// Demand modes never push: every chunk comes because it was asked for, so one owed by a cut demand channel arrives only if it is asked for again.
const server = new PageServer(src, { hold_push: demand, push_bytes_per_s: mode === "serve" || mode === "prepared" || mode === "sparse" || mode === "sealed" || mode === "sealed-js" ? Infinity : 4 * 1024 * 1024, native_seal: mode !== "sealed-js" });
const sockets = new Set<net.Socket>();
/** The keys of the connection being opened (connections here are one at a time). */
let keys: PageChannelKeys | undefined;
let demand_answers = 0;
/** The demand channel's source: answers requests only. */
const demand_tcp = net.createServer((socket) => {
  sockets.add(socket);
  socket.on("close", () => sockets.delete(socket));
  if (mode === "demand-cut") {
    // Cut once it has answered a few: the threads must ask again on the page channel.
    socket.on("data", () => {
      demand_answers += 1;
      if (demand_answers === 4) socket.destroy();
    });
  }
  void server.serve(socket, undefined, undefined, { demand: true });
});
const tcp = net.createServer((socket) => {
  sockets.add(socket);
  socket.on("close", () => sockets.delete(socket));
  if (mode === "fail") return; // never answers
  // The first connections are cut mid-transfer.
  if (mode === "recover" && server.stats.connections < 3) setTimeout(() => socket.destroy(), 40);
  void server.serve(socket, undefined, keys);
});
let tampered = 0;
/** In front of the source: flips one bit, inside the first connection's second record (pages), on the way to the destination. */
const tamperer = net.createServer((down) => {
  const up = net.connect(port, "127.0.0.1");
  const first = tampered === 0;
  let seen = 0;
  for (const s of [down, up]) {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    // A probe's own loopback sockets: their failure is the probe's answer (it times out), not news.
    s.on("error", () => undefined);
  }
  up.on("data", (data: Buffer) => {
    const at = 100_000 - seen;
    if (first && at >= 0 && at < data.length) {
      data[at] = (data[at] as number) ^ 0x10;
      tampered += 1;
    }
    seen += data.length;
    down.write(data);
  });
  up.on("close", () => down.destroy());
  down.pipe(up);
  down.on("close", () => up.destroy());
});

const dest = new WebAssembly.Memory({ initial: CHUNKS + 2, maximum: 65536, shared: true });
let downs = 0;
let completed = false;
const attach = (): void => {
  keys = sealed ? { to_destination: randomBytes(32), to_source: randomBytes(32) } : undefined;
  const k = keys === undefined ? undefined : { to_destination: Buffer.from(keys.to_destination), to_source: Buffer.from(keys.to_source) };
  if (mode === "wrong-key" && downs === 0 && k !== undefined) k.to_destination = randomBytes(32);
  const s = net.connect(mode === "tampered" ? tamper_port : port, "127.0.0.1", () => pages.attach(s, k));
};
// A standby's memory, backed and written before the handover (hybrid's first round writes into it).
const prepared = mode === "prepared" || mode === "sparse";
if (mode === "prepared") new Uint8Array(dest.buffer, 0, bytes).fill(0xab);
// A few runs of pages: the first pages, a run across a chunk boundary, the last page.
if (mode === "sparse") for (const [at, n] of [[0, 3 * 4096], [bytes / 2 - 4096, 2 * 4096], [bytes - 4096, 4096]] as const) new Uint8Array(dest.buffer, at, n).fill(0xab);
const pages = new RemotePages(new Uint8Array(dest.buffer), prepared ? 0 : bytes, {
  down: () => {
    downs += 1;
    if (mode === "recover" || mode === "tampered" || mode === "wrong-key") setTimeout(attach, 20);
  },
  complete: () => {
    completed = true;
  },
});
if (prepared) pages.resize(bytes);
pages.drop(0, bytes);
let port = 0;
let tamper_port = 0;
await new Promise<void>((r) => tamperer.listen(0, "127.0.0.1", () => r()));
await new Promise<void>((r) => demand_tcp.listen(0, "127.0.0.1", () => r()));
if (demand) {
  const d = net.connect((demand_tcp.address() as net.AddressInfo).port, "127.0.0.1");
  await new Promise<void>((r) => d.once("connect", () => r()));
  pages.attach(d, undefined, { demand: true });
}
tamper_port = (tamperer.address() as net.AddressInfo).port;
tcp.listen(0, "127.0.0.1", () => {
  port = (tcp.address() as net.AddressInfo).port;
  attach();
  const worker = new Worker(
    `const { parentPort, workerData } = require("node:worker_threads");
     const v = new Uint8Array(workerData.buffer, 0, workerData.bytes);
     let s = 0;
     // Touch a chunk in the middle first, then walk the rest in order.
     s += v[100 * 65536 + 5] - v[100 * 65536 + 5];
     for (let i = 0; i < v.length; i++) s += v[i];
     // Past the source's memory: grown here, zero, served at once.
     s += new Uint8Array(workerData.buffer)[workerData.bytes + 70000];
     parentPort.postMessage(s);`,
    { eval: true, workerData: { buffer: dest.buffer, bytes } },
  );
  const finish = (report: Record<string, unknown>): void => {
    const stats = pages.stats;
    pages.close();
    void worker.terminate().then(() => {
      for (const s of sockets) s.destroy();
      tcp.close();
      tamperer.close();
      demand_tcp.close();
      process.stdout.write(`${JSON.stringify({ ...report, expected, downs, completed, tampered, stats, server: server.stats })}\n`);
    });
  };
  worker.on("message", (sum: number) => {
    const wait = (): void => {
      if (completed || Date.now() > deadline) finish({ sum });
      else setTimeout(wait, 10);
    };
    const deadline = Date.now() + 10_000;
    wait();
  });
  if (mode === "fail") {
    // Failed once the reader waits on a fault (observable in the stats), not after a delay a loaded machine outruns.
    const deadline = Date.now() + 20_000;
    const failWhenWaiting = (): void => {
      if (pages.stats.faults < 1 && Date.now() < deadline) {
        setTimeout(failWhenWaiting, 10);
        return;
      }
      const lost = pages.fail();
      finish({ lost: lost.reduce((n, r) => n + r.bytes, 0) });
    };
    failWhenWaiting();
  }
});
