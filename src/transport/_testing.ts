/**
 * Test support for the transport folder: an in-memory duplex pair that
 * behaves like a TCP connection where it matters here (backpressure, FIN,
 * a write to a closed peer failing), and a seeded PRNG so every failure
 * names a seed that reproduces it. Not part of the public API.
 */
import assert from "node:assert/strict";
import { Duplex } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";

import type { FramedConnection } from "./connection.js";

type WriteCallback = (error?: Error | null) => void;

/** One end of {@link pipeDuplexPair}: what it writes, its peer reads. */
class PipeEnd extends Duplex {
  #peer: PipeEnd | undefined;
  // A write the peer has not made room for yet. Holding its callback is what
  // makes this end's writableLength grow while the peer does not read.
  #blocked: WriteCallback | undefined;

  link(peer: PipeEnd): void {
    this.#peer = peer;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: WriteCallback): void {
    const peer = this.#peer;
    if (peer === undefined || peer.destroyed || peer.readableEnded) {
      callback(Object.assign(new Error("write to a closed pipe"), { code: "EPIPE" }));
      return;
    }
    if (peer.push(chunk)) callback();
    else this.#blocked = callback;
  }

  override _final(callback: WriteCallback): void {
    this.#peer?.push(null); // FIN: the peer reads what was sent, then 'end'
    callback();
  }

  override _read(): void {
    // The peer's pending write fits now.
    const peer = this.#peer;
    if (peer !== undefined) peer.#release();
  }

  override _destroy(error: Error | null, callback: WriteCallback): void {
    const peer = this.#peer;
    this.#blocked = undefined;
    if (peer !== undefined && !peer.destroyed) {
      // Like closing a socket: the peer reads what is buffered, then EOF; its
      // own writes from now on fail.
      if (!peer.readableEnded) peer.push(null);
      peer.#fail(Object.assign(new Error("peer closed the pipe"), { code: "EPIPE" }));
    }
    callback(error);
  }

  #release(): void {
    const blocked = this.#blocked;
    this.#blocked = undefined;
    blocked?.();
  }

  #fail(error: Error): void {
    const blocked = this.#blocked;
    this.#blocked = undefined;
    blocked?.(error);
  }
}

/** Options of {@link pipeDuplexPair}. */
export interface PipeOptions {
  /** Stream high-water mark of each end, both directions; Node's default (16 KiB) if absent. */
  high_water_bytes?: number;
}

/**
 * Two connected in-memory duplexes. Chunks arrive as written (no
 * coalescing); a reader that stops reading fills its readable buffer and
 * then the writer's writable buffer, as with TCP.
 */
export function pipeDuplexPair(options: PipeOptions = {}): [Duplex, Duplex] {
  const opts = options.high_water_bytes === undefined ? {} : { highWaterMark: options.high_water_bytes };
  const a = new PipeEnd(opts);
  const b = new PipeEnd(opts);
  a.link(b);
  b.link(a);
  return [a, b];
}

import { Prng } from "../_prng.js";

export { Prng };

/**
 * The payload of frame `seq` in the streaming tests: its sequence number,
 * then a pattern derived from it, so the reader can check order and content
 * without keeping what was sent.
 */
export function patternPayload(seq: number, length: number): Uint8Array {
  const out = Buffer.allocUnsafe(Math.max(length, 4));
  out.writeUInt32LE(seq, 0);
  // A 251-byte tile (prime, so it never lines up with power-of-two chunk
  // sizes) that differs per frame; Buffer.fill repeats it at memcpy speed.
  const tile = Buffer.allocUnsafe(251);
  for (let i = 0; i < tile.length; i++) tile[i] = (seq * 31 + i * 7) & 0xff;
  if (out.length > 4) out.fill(tile, 4);
  return out;
}

/** Options of {@link pumpSlowly}. */
export interface PumpOptions {
  frame_count: number;
  payload_bytes_max: number;
  seed: number;
  /** The reader takes nothing for this long at first, so every buffer on the way fills. */
  stall_ms: number;
  /** Then it sleeps `pause_ms` after every `pause_every` frames. */
  pause_every: number;
  pause_ms: number;
}

/** What {@link pumpSlowly} saw. */
export interface PumpResult {
  /** Largest sender writableLength seen right after a send (its peak). */
  writable_bytes_peak: number;
  /** Largest receive queue seen by the reader. */
  receive_queue_bytes_peak: number;
  /** Largest frame sent, header included. */
  frame_bytes_peak: number;
}

/** The sending side of {@link pumpSlowly}: the connection, and the stream whose writableLength is watched. */
export interface PumpSender {
  connection: FramedConnection;
  stream: Duplex;
}

/**
 * A fast sender awaiting every send against a slow reader; checks that every
 * frame arrives in order and intact, and reports the peaks of what each side
 * buffered.
 */
export async function pumpSlowly(from: PumpSender, receiver: FramedConnection, options: PumpOptions): Promise<PumpResult> {
  const { connection: sender, stream: sender_stream } = from;
  const rng = new Prng(options.seed);
  const sizes = Array.from({ length: options.frame_count }, () => 4 + rng.int(options.payload_bytes_max - 3));
  const result: PumpResult = { writable_bytes_peak: 0, receive_queue_bytes_peak: 0, frame_bytes_peak: 0 };
  const send = async (): Promise<void> => {
    for (const [seq, size] of sizes.entries()) {
      const sent = sender.send(seq & 0xff, patternPayload(seq, size));
      result.writable_bytes_peak = Math.max(result.writable_bytes_peak, sender_stream.writableLength);
      result.frame_bytes_peak = Math.max(result.frame_bytes_peak, 5 + size);
      await sent;
    }
  };
  const receive = async (): Promise<void> => {
    await sleep(options.stall_ms);
    for (const [seq, size] of sizes.entries()) {
      result.receive_queue_bytes_peak = Math.max(result.receive_queue_bytes_peak, receiver.receive_queue_bytes);
      const frame = await receiver.next();
      assert.equal(frame.type, seq & 0xff, `frame ${seq}: type`);
      assert.equal(frame.payload.length, size, `frame ${seq}: length`);
      assert.ok(Buffer.from(frame.payload).equals(patternPayload(seq, size)), `frame ${seq}: payload`);
      if (seq % options.pause_every === options.pause_every - 1) await sleep(options.pause_ms);
    }
  };
  await Promise.all([send(), receive()]);
  return result;
}

/**
 * A link that takes every write at once, as the kernel does a plain TCP
 * socket's on a fast link: nothing a sender does on it waits for I/O. At its
 * first write it sets an immediate, work the event loop has to do, and
 * `immediate_at()` says how many bytes had been written when that ran (-1:
 * not yet), so a test can tell whether a long send gave the loop a turn.
 */
export function instantLink(): { link: Duplex; written: () => number; immediate_at: () => number } {
  let written = 0;
  let at = -1;
  const link = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, done) {
      if (written === 0) setImmediate(() => (at = written));
      written += chunk.length;
      done();
    },
  });
  return { link, written: () => written, immediate_at: () => at };
}
