/**
 * Test support for the migration folder: a guest whose state can be checked
 * after a move, its I/O, and the two sides of a migration over real
 * processes (a destination that writes pages into a standby as a node's
 * does). Not part of the public API.
 */
import { PassThrough } from "node:stream";
import { FerryError } from "../errors.js";
import { encodeImage, type ImageSigner, type ImageTrust, type ProcessImage } from "../image/mod.js";
import { wat } from "../instrument/_wat.js";
import { GuestProcess, type ProcessIo } from "../runtime/mod.js";
import type { FramedConnection } from "../transport/mod.js";
import type { DestinationSide, Landing, Offer, SourceSide, Strategy } from "./mod.js";
import { PagesDigest, type StoredCheckpoint } from "./checkpoint_chain.js";
import { WIRE_PAGE_BYTES } from "./_wire.js";

/**
 * The guest: fills three wasm pages with a pattern (each word i holds
 * i / 16 + 1, so its pages also compress) and keeps a counter both
 * in memory and in a global, then waits for a line on stdin (a safe point)
 * and exits 7 if its memory and global are as it left them (8: pattern
 * broken, 9: counter differs), after printing "ok".
 */
export const GUEST = wat(`(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 4)
  (global $n (mut i64) (i64.const 0))
  (data (i32.const 8192) "ok\\n")
  (func (export "_start")
    (local $i i32)
    (loop $fill
      (i32.store (i32.add (i32.const 65536) (i32.mul (local.get $i) (i32.const 4))) (i32.add (i32.shr_u (local.get $i) (i32.const 4)) (i32.const 1)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const 49152))))
    (global.set $n (i64.const 1234567))
    (i64.store (i32.const 1024) (i64.const 1234567))
    (i32.store (i32.const 2048) (i32.const 4096))
    (i32.store (i32.const 2052) (i32.const 64))
    (drop (call $read (i32.const 0) (i32.const 2048) (i32.const 1) (i32.const 2056)))
    (local.set $i (i32.const 0))
    (loop $check
      (if (i32.ne (i32.load (i32.add (i32.const 65536) (i32.mul (local.get $i) (i32.const 4)))) (i32.add (i32.shr_u (local.get $i) (i32.const 4)) (i32.const 1)))
        (then (call $exit (i32.const 8))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $check (i32.lt_u (local.get $i) (i32.const 49152))))
    (i32.store (i32.const 2064) (i32.const 8192))
    (i32.store (i32.const 2068) (i32.const 3))
    (drop (call $write (i32.const 1) (i32.const 2064) (i32.const 1) (i32.const 2072)))
    (call $exit (select (i32.const 7) (i32.const 9) (i64.eq (i64.load (i32.const 1024)) (global.get $n))))))`);

/** A guest that never writes its memory: pre-copy rounds find no page to send. */
export const SPINNER = wat(`(module (memory (export "memory") 1)
  (global $n (mut i64) (i64.const 0))
  (func (export "_start") (loop $l (global.set $n (i64.add (global.get $n) (i64.const 1))) (br $l))))`);

/** Exit status of a guest whose state survived. */
export const EXIT_INTACT = 7;

/** A process's I/O: stdin we write to, stdout we read. */
export function io(): { io: ProcessIo; stdin: PassThrough; out: () => string } {
  const stdin = new PassThrough();
  const out: Uint8Array[] = [];
  return {
    io: { stdin, stdout: { kind: "callback", write: (b) => out.push(b) }, stderr: { kind: "callback", write: () => undefined }, cache_dir: null },
    stdin,
    out: () => Buffer.concat(out).toString(),
  };
}

export function offer(proc: GuestProcess, strategy: Strategy): Offer {
  return {
    pid: "a-1",
    home: "a",
    module_sha256: proc.info.module_sha256,
    module_name: "guest.wasm",
    moves: 1,
    args: ["guest"],
    env: [],
    dirs: [],
    open_files: [],
    strategy,
    source: "127.0.0.1:1",
    memory_bytes: proc.memory.buffer.byteLength,
    memory_max_bytes: 1 << 30,
  };
}

/** The destination: a standby process written as pages arrive, as a node's is. */
export function destination(trust: ImageTrust, wasm: Uint8Array): { side: DestinationSide; landed: () => { proc: GuestProcess; stdin: PassThrough; out: () => string } | null } {
  let landed: { proc: GuestProcess; stdin: PassThrough; out: () => string } | null = null;
  const side: DestinationSide = {
    trust,
    async prepare(o: Offer, clock): Promise<Landing> {
      clock?.enter("standby");
      const d = io();
      const proc = await GuestProcess.standby(wasm, d.io, { module_path: o.module_name });
      proc.growTo(o.memory_bytes);
      let view = new Uint8Array(proc.memory.buffer);
      return {
        write(offset, data) {
          if (offset + data.length > view.length) {
            proc.growTo(Math.ceil((offset + data.length) / 65536) * 65536);
            view = new Uint8Array(proc.memory.buffer);
          }
          view.set(data, offset);
        },
        place(offset, length) {
          if (offset + length > view.length) {
            proc.growTo(Math.ceil((offset + length) / 65536) * 65536);
            view = new Uint8Array(proc.memory.buffer);
          }
          return view.subarray(offset, offset + length);
        },
        async finish(image, handover, clock) {
          if (handover !== null) throw new FerryError("ERR_MIGRATION_PROTOCOL", "no post-copy in this test");
          proc.growTo(image.memory.size_bytes);
          const running = proc.activate(image, { preopens: [] });
          clock?.enter("resume");
          const resumed_at = await running;
          landed = { proc, stdin: d.stdin, out: d.out };
          return resumed_at;
        },
        abort: () => proc.terminate(),
      };
    },
  };
  return { side, landed: () => landed };
}

export function source(proc: GuestProcess, strategy: Strategy, signer: ImageSigner, connect: () => FramedConnection): SourceSide {
  return {
    proc,
    offer: offer(proc, strategy),
    signer,
    connect: () => Promise.resolve(connect()),
    flushOutput: () => Promise.resolve(),
    // Only asked when the link broke after the whole image went out; these links do not break.
    destinationRuns: () => Promise.resolve(false),
  };
}

/** A PAGES payload as the wire carries it: count, indexes, pages. */
export function pagesPayload(pages: { index: number; data: Uint8Array }[]): Uint8Array {
  const head = 4 + 4 * pages.length;
  const out = Buffer.alloc(head + pages.length * WIRE_PAGE_BYTES);
  out.writeUInt32LE(pages.length, 0);
  pages.forEach((p, i) => {
    out.writeUInt32LE(p.index, 4 + 4 * i);
    out.set(p.data, head + i * WIRE_PAGE_BYTES);
  });
  return out;
}

/**
 * A checkpoint of `memory` sending `indexes` (every non-zero page for a
 * base), as a runner sends one, 7 pages a frame, signed by `signer`; its
 * state says `streams_at` (stdout bytes, a global and the WASI state).
 */
export function storedCheckpointOf(memory: Uint8Array, indexes: number[], streams_at: number, signer: ImageSigner, module_sha256: Uint8Array): StoredCheckpoint {
  const frames: Uint8Array[] = [];
  for (let i = 0; i < indexes.length; i += 7) {
    frames.push(pagesPayload(indexes.slice(i, i + 7).map((index) => ({ index, data: memory.slice(index * WIRE_PAGE_BYTES, (index + 1) * WIRE_PAGE_BYTES) }))));
  }
  const digest = new PagesDigest();
  for (const f of frames) digest.update(f);
  const seen = digest.seen();
  const image: ProcessImage = {
    module_sha256,
    instrumenter: "test/1",
    memory: { size_bytes: memory.length, pages: () => [] },
    globals: [{ name: "g", type: "i32", bits: BigInt(streams_at) }],
    stack: { entry: "_start", asyncify: Uint8Array.of(1, 2, 3) },
    wasi: { at: streams_at },
    streams: { stdout_bytes: streams_at, stderr_bytes: 0, stdin_pending: new Uint8Array(0), stdin_eof: true },
    meta: { module_path: "m.wasm", created_unix_ms: 1, ...(seen.sha256 !== null ? { precopy_sha256: seen.sha256 } : {}) },
  };
  return { pages: frames, image: Buffer.concat([...encodeImage(image, { signer })]) };
}
