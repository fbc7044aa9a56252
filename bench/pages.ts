/**
 * Post-copy page pipeline benchmark: a PageServer pushes a whole memory over
 * a loopback TCP connection to RemotePages (native threads placing each chunk
 * with UFFDIO_COPY), in this one process and with no guest running, against
 * two references measured in the same run: a raw loopback TCP transfer of the
 * same bytes (the link) and a memcpy of them into fresh memory (placement:
 * each page allocated and written once, as a placed page is). The push runs
 * in the clear (a node without TLS) and sealed (a node with TLS: each frame
 * an AES-GCM record, opened by the threads), so what TLS costs the push is
 * read off one table. The process's CPU time shows how much of it the
 * kernel spends.
 */
import { randomBytes } from "node:crypto";
import net from "node:net";
import { CHUNK_BYTES, RemotePages, remotePagesAvailability, type PageChannelKeys } from "../src/memory/mod.js";
import { PageServer } from "../src/migration/mod.js";
import { nativeAddon } from "../src/native.js";
import { discardPages } from "../src/runtime/_backing.js";
import { median, rawTcpTransfer } from "./_measure.js";

interface Run {
  ms: number;
  user_ms: number;
  system_ms: number;
}

/** A memory of `bytes`, every page non-zero (nothing travels as a zero range). */
function sourceMemory(bytes: number): Uint8Array {
  const source = new WebAssembly.Memory({ initial: bytes / CHUNK_BYTES, maximum: 65536, shared: true });
  const src = new Uint8Array(source.buffer);
  for (let i = 0; i < src.length; i += 4096) src[i] = 1 + ((i >> 12) % 200);
  return src;
}

/** Copies `src` into a fresh memory of its size (placement without a link: allocate and write each page once). */
function memcpy(src: Uint8Array): number {
  const dest = new WebAssembly.Memory({ initial: src.length / CHUNK_BYTES, maximum: 65536, shared: true });
  const t0 = performance.now();
  new Uint8Array(dest.buffer).set(src);
  const ms = performance.now() - t0;
  discardPages(new Uint8Array(dest.buffer));
  return ms;
}

/** Pushes `src` through the pipeline (sealed when `sealed`); ms and CPU ms (user, system). */
async function push(src: Uint8Array, sealed: boolean): Promise<Run> {
  const bytes = src.length;
  const server = new PageServer(src, {});
  const keys: PageChannelKeys | undefined = sealed ? { to_destination: randomBytes(32), to_source: randomBytes(32) } : undefined;
  const tcp = net.createServer((socket) => {
    socket.setNoDelay(true);
    void server.serve(socket, undefined, keys);
  });
  await new Promise<void>((r) => tcp.listen(0, "127.0.0.1", () => r()));
  const dest = new WebAssembly.Memory({ initial: bytes / CHUNK_BYTES, maximum: 65536, shared: true });
  let complete!: () => void;
  const completed = new Promise<void>((r) => (complete = r));
  const pages = new RemotePages(new Uint8Array(dest.buffer), bytes, { down: () => undefined, complete: () => complete() });
  pages.drop(0, bytes);
  const socket = net.connect((tcp.address() as net.AddressInfo).port, "127.0.0.1");
  await new Promise<void>((r) => socket.once("connect", () => r()));
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  // The threads take copies of the keys; the server keeps its own.
  pages.attach(socket, keys === undefined ? undefined : { to_destination: Buffer.from(keys.to_destination), to_source: Buffer.from(keys.to_source) });
  await completed;
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const check = new Uint8Array(dest.buffer);
  for (let i = 0; i < bytes; i += 4096) if (check[i] !== src[i]) throw new Error(`page at ${i} arrived wrong`);
  pages.close();
  // Given back at once, as a node gives back a moved process's memory (else each run's gigabyte waits for a collection).
  discardPages(check);
  socket.destroy();
  await new Promise((r) => tcp.close(r));
  return { ms, user_ms: cpu.user / 1000, system_ms: cpu.system / 1000 };
}

/**
 * Placement alone, no link (native/place_bench.c): what post-copy does
 * (receive buffer, then UFFDIO_COPY: two copies) against placing without
 * the last copy (write into a memfd's page cache, then UFFDIO_CONTINUE),
 * with the memfd's pages allocated as they are written or in advance,
 * beside a plain write of fresh memory.
 */
function placementTable(quick: boolean): void {
  const n = nativeAddon();
  if (!("addon" in n)) return;
  const repeats = quick ? 2 : 5;
  console.log("\n(j2) placing pages alone, no link, 64 KiB at a time (MB/s, median): recv buffer + UFFDIO_COPY (what post-copy does) vs the memfd's page cache + UFFDIO_CONTINUE (no last copy), vs memcpy into fresh memory");
  console.log("| memory | memcpy | UFFDIO_COPY | UFFDIO_CONTINUE, pages allocated as written | UFFDIO_CONTINUE, pages allocated in advance | CONTINUE in advance / COPY |\n|---|---|---|---|---|---|");
  for (const mib of quick ? [256] : [256, 1024]) {
    const bytes = mib * 1048576;
    const runs: { copy_ms: number; continue_ms: number; continue_warm_ms: number; memcpy_ms: number }[] = [];
    try {
      for (let i = 0; i < repeats; i += 1) runs.push(n.addon.placeCompare(bytes));
    } catch (err: unknown) {
      console.log(`| ${mib} MiB | this kernel refused: ${(err as Error).message} | | | | |`);
      continue;
    }
    const rate = (k: "copy_ms" | "continue_ms" | "continue_warm_ms" | "memcpy_ms"): number => bytes / 1e6 / (median(runs.map((r) => r[k])) / 1000);
    console.log(`| ${mib} MiB | ${rate("memcpy_ms").toFixed(0)} | ${rate("copy_ms").toFixed(0)} | ${rate("continue_ms").toFixed(0)} | ${rate("continue_warm_ms").toFixed(0)} | ${(rate("continue_warm_ms") / rate("copy_ms")).toFixed(2)}x |`);
  }
}

/** Runs the page pipeline benchmark and prints its tables. */
export async function pagesBench(quick: boolean): Promise<void> {
  const can = remotePagesAvailability();
  if (!can.available) {
    console.log(`\n(j) post-copy page pipeline: left out (${can.reason})`);
    return;
  }
  const repeats = quick ? 2 : 5;
  console.log("\n(j) post-copy push alone (PageServer -> loopback TCP -> RemotePages, UFFDIO_COPY), no guest; references in the same run:");
  console.log("raw loopback TCP of the same bytes, and memcpy of them into fresh memory. plain: a node without TLS; sealed: with TLS (AES-GCM records)");
  console.log("| memory | memcpy MB/s | raw TCP MB/s | plain push MB/s | sealed push MB/s | plain / raw TCP | sealed / plain | plain MB/s, each run | sealed MB/s, each run | CPU ms user/system, plain then sealed |");
  console.log("|---|---|---|---|---|---|---|---|---|---|");
  for (const mib of quick ? [256] : [256, 1024]) {
    const bytes = mib * 1024 * 1024;
    const src = sourceMemory(bytes);
    const copy: number[] = [];
    const raw: number[] = [];
    const plain: Run[] = [];
    const sealed: Run[] = [];
    // Interleaved, so the load of the moment weighs on each the same.
    for (let i = 0; i < repeats; i += 1) {
      copy.push(memcpy(src));
      raw.push(await rawTcpTransfer(bytes));
      plain.push(await push(src, false));
      sealed.push(await push(src, true));
    }
    const rate = (ms: number): number => bytes / 1e6 / (ms / 1000);
    const m = (runs: Run[]): number => rate(median(runs.map((r) => r.ms)));
    const each = (runs: Run[]): string => runs.map((r) => rate(r.ms).toFixed(0)).join(", ");
    const cpu = (runs: Run[]): string => runs.map((r) => `${r.user_ms.toFixed(0)}/${r.system_ms.toFixed(0)}`).join(", ");
    console.log(
      `| ${mib} MiB | ${rate(median(copy)).toFixed(0)} | ${rate(median(raw)).toFixed(0)} | ${m(plain).toFixed(0)} | ${m(sealed).toFixed(0)} | ${(m(plain) / rate(median(raw))).toFixed(2)}x | ${(m(sealed) / m(plain)).toFixed(2)}x | ${each(plain)} | ${each(sealed)} | ${cpu(plain)}; ${cpu(sealed)} |`,
    );
  }
  placementTable(quick);
}
