/**
 * FramedConnection: frames over any byte stream (a net.Socket in production,
 * an in-memory pair in tests), with backpressure in both directions so a
 * slow peer never makes either side buffer more than a named amount.
 */
import type { Duplex } from "node:stream";

import { TransportError, TransportErrorCodes } from "../errors.js";
import { FRAME_HEADER_BYTES, FrameParser, encodeFrame, type Frame } from "./frame.js";
import { nextTurn, turnDue } from "./turns.js";

/**
 * Default bytes a sender may have written but not yet flushed before send()
 * waits for the stream to drain: 4 MiB, about four full frames, enough to
 * keep a fast link busy while the sender produces the next batch, and small
 * enough that a slow destination never makes the source hold an image.
 */
export const SEND_HIGH_WATER_BYTES = 4 * 1024 * 1024;

/**
 * Bytes a sender may queue in one turn of the event loop before send()
 * gives the loop a turn. Over TLS a write completes only in a later turn,
 * and until it does the stream keeps what follows in its own queue: a
 * sender that makes frames as fast as it can (a migration's image, 2 MiB in
 * 9 ms) had every byte of them still queued here when it finished, so the
 * receiver started only then. With a turn every 256 KiB what was queued
 * goes out while the next is made, for one setImmediate per 256 KiB.
 */
export const SEND_TURN_BYTES = 256 * 1024;

/**
 * Default bytes of received frames (payload plus header each) queued for a
 * consumer that has fallen behind; at this point the connection stops
 * reading, so the kernel's TCP window pushes back on the peer.
 */
export const RECEIVE_QUEUE_BYTES_MAX = 4 * 1024 * 1024;

/** Options of {@link FramedConnection}. */
export interface FramedConnectionOptions {
  /** See SEND_HIGH_WATER_BYTES. Never below the stream's own writableHighWaterMark, whose 'drain' is what send() waits for. */
  send_high_water_bytes?: number;
  /** See RECEIVE_QUEUE_BYTES_MAX. */
  receive_queue_bytes_max?: number;
  /** Default for every receive; absent: receives wait as long as the connection lives. */
  receive_timeout_ms?: number;
  /** Largest frame accepted from the peer; see FrameParserOptions. */
  frame_bytes_max?: number;
  /** Frame types handed on in pieces as they arrive; see FrameParserOptions. */
  splittable_types?: readonly number[];
  /** Bytes already read from the stream before it was handed over (the `head` of an HTTP upgrade). */
  head?: Uint8Array;
}

/** Options of one receive. */
export interface ReceiveOptions {
  /** Overrides the connection's receive_timeout_ms for this receive. */
  timeout_ms?: number;
}

interface Waiter {
  resolve(frame: Frame | undefined): void;
  reject(error: TransportError): void;
  timer: NodeJS.Timeout | undefined;
}

/**
 * A framed, flow-controlled connection. Errors are TransportErrors: the
 * peer closing or the stream failing makes every receive (after the frames
 * already queued) reject with ERR_CONNECTION_CLOSED, the original error as
 * `cause`; a bad frame header destroys the stream, drops the queue and
 * rejects at once with the parser's code. The peer closing cleanly is an
 * error too, because a crashed peer's kernel closes its sockets just as
 * cleanly: the protocol above says when a conversation is complete, not the
 * transport.
 */
export class FramedConnection implements AsyncIterable<Frame> {
  readonly #stream: Duplex;
  readonly #parser: FrameParser;
  readonly #send_high_water_bytes: number;
  readonly #receive_queue_bytes_max: number;
  readonly #receive_timeout_ms: number | undefined;

  // Received frames not yet taken: a deque (array + head index) because
  // shift() on a long array is linear.
  #queue: (Frame | undefined)[] = [];
  #queue_head = 0;
  #queue_bytes = 0;
  #paused = false;
  readonly #waiters: Waiter[] = [];
  // Why receiving stopped; receives reject with it once the queue is empty.
  #failure: TransportError | undefined;
  #closed_locally = false;
  #drain: Promise<void> | undefined;
  #bytes_received = 0;
  #bytes_flushed = 0;
  /** Bytes handed to the stream since send() last gave the event loop a turn. */
  #unturned_bytes = 0;
  /** Set inside {@link gather}: frames wait in the corked stream, and a send never waits for a drain that cannot come. */
  #gathering = false;

  constructor(stream: Duplex, options: FramedConnectionOptions = {}) {
    this.#stream = stream;
    this.#parser = new FrameParser({
      ...(options.frame_bytes_max === undefined ? {} : { frame_bytes_max: options.frame_bytes_max }),
      ...(options.splittable_types === undefined ? {} : { splittable_types: options.splittable_types }),
    });
    this.#send_high_water_bytes = Math.max(options.send_high_water_bytes ?? SEND_HIGH_WATER_BYTES, stream.writableHighWaterMark);
    this.#receive_queue_bytes_max = options.receive_queue_bytes_max ?? RECEIVE_QUEUE_BYTES_MAX;
    this.#receive_timeout_ms = options.receive_timeout_ms;

    stream.on("data", (chunk: unknown) => this.#onData(chunk));
    stream.on("end", () => {
      const partial = this.#parser.partial_bytes;
      const where = partial === 0 ? "" : ` in the middle of a frame (${partial} bytes of it received)`;
      this.#fail(closed(`peer closed the connection${where}`));
      // Every frame has been taken off the stream by now. Nothing we send
      // can matter to a peer that has closed, so do not keep a half-open socket.
      stream.destroy();
    });
    stream.on("error", (error: Error) => this.#fail(closed(`connection failed: ${error.message}`, error)));
    stream.on("close", () => this.#fail(closed("connection closed")));
    // A 'data' listener alone does not restart a stream someone paused
    // explicitly (an upgraded HTTP socket may arrive paused).
    stream.resume();
    if (options.head !== undefined && options.head.length > 0) this.#onData(options.head);
    if (stream.destroyed) this.#fail(closed("stream was already destroyed"));
  }

  /**
   * Bytes that moved on this connection: received, plus sent and handed on
   * by the stream. It stops growing when the link stops moving (a peer that
   * does not read, a path that drops everything), which is what a watchdog
   * of progress looks at.
   */
  get moved_bytes(): number {
    return this.#bytes_received + this.#bytes_flushed;
  }

  /** Bytes of received frames waiting for a receive (payload plus header each). */
  get receive_queue_bytes(): number {
    return this.#queue_bytes;
  }

  /**
   * Sends one frame. Resolves at once while the stream holds less than the
   * send high-water mark, else when it has drained; so a sender that awaits
   * every send holds at most the high-water mark plus one frame, however
   * slow the reader. Rejects ERR_CONNECTION_CLOSED once the stream is
   * closed, ERR_FRAME_TOO_LARGE for a frame the peer would refuse.
   */
  send(type: number, payload: Uint8Array | readonly Uint8Array[]): Promise<void> {
    return this.sendAll([{ type, payload }]);
  }

  /**
   * Sends frames in order, handed to the stream in one write (over TLS, one
   * record and one syscall for all of them where they fit): for a sender
   * that has gathered several small frames. Resolves and rejects as
   * {@link send}; a frame the peer would refuse fails the whole call before
   * anything is written.
   */
  sendAll(frames: readonly { type: number; payload: Uint8Array | readonly Uint8Array[] }[]): Promise<void> {
    const stream = this.#stream;
    if (this.#closed_locally || this.#failure !== undefined || stream.destroyed || stream.writableEnded) {
      return Promise.reject(closed("send on a closed connection", this.#failure));
    }
    let parts: Uint8Array[];
    try {
      parts = frames.flatMap((f) => encodeFrame(f.type, f.payload));
    } catch (error: unknown) {
      return Promise.reject(error);
    }
    // One writev for headers and payload parts instead of one syscall each.
    stream.cork();
    const size = parts.reduce((n, p) => n + p.length, 0);
    parts.forEach((part, i) => {
      // Counted once the stream has handed the frames on (a failed write is not movement).
      if (i === parts.length - 1) stream.write(part, (err) => {
        if (err === null || err === undefined) this.#bytes_flushed += size;
      });
      else stream.write(part);
    });
    stream.uncork();
    if (this.#gathering) return Promise.resolve();
    if (stream.writableLength >= this.#send_high_water_bytes) {
      this.#unturned_bytes = 0;
      return this.#drained();
    }
    this.#unturned_bytes += size;
    // Where the stream holds bytes back (TLS: a write completes a turn later), every SEND_TURN_BYTES.
    if (stream.writableLength > 0) {
      if (this.#unturned_bytes < SEND_TURN_BYTES) return Promise.resolve();
      this.#unturned_bytes = 0;
      return nextTurn();
    }
    // A plain socket on a fast link writes at once and its queue stays empty: once this thread has run TURN_MS
    // without a turn, so that a sender does not hold up its other work for as long as it has frames to send.
    return turnDue() ? nextTurn() : Promise.resolve();
  }

  /**
   * Runs `fn`, and writes every frame it sends when it returns (or
   * throws), in one write: for a sender whose frames are ready a few at a
   * time, each needed by the receiver only with the next. Over TLS a write
   * completes only at a later turn of the event loop, and frames sent
   * meanwhile wait for that turn; a post-copy source's PAGES of 64 KiB then
   * held its HANDOVER and image back until its thread was done with the
   * next step (0.4-0.8 ms, traced). What `fn` sends must be bounded: it is
   * all held in memory until then.
   */
  async gather<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#gathering) return await fn();
    const stream = this.#stream;
    stream.cork();
    this.#gathering = true;
    try {
      return await fn();
    } finally {
      this.#gathering = false;
      stream.uncork();
    }
  }

  /**
   * Takes the next frame, waiting for one if none is queued. Rejects
   * ERR_TRANSPORT_TIMEOUT when the timeout passes first (the connection
   * stays usable), ERR_CONNECTION_CLOSED when the connection has ended.
   */
  async next(options: ReceiveOptions = {}): Promise<Frame> {
    const frame = await this.#take(options.timeout_ms ?? this.#receive_timeout_ms);
    if (frame === undefined) throw closed("receive on a connection closed locally");
    return frame;
  }

  /**
   * Frames in arrival order. Iteration ends when this side calls close() and
   * throws what next() rejects with otherwise; breaking out does not close
   * the connection.
   */
  async *[Symbol.asyncIterator](): AsyncIterator<Frame> {
    for (;;) {
      const frame = await this.#take(this.#receive_timeout_ms);
      if (frame === undefined) return;
      yield frame;
    }
  }

  /**
   * Ends the connection: frames already sent are flushed, then the stream is
   * destroyed. Receiving stops at once: frames not yet taken are dropped,
   * next() rejects ERR_CONNECTION_CLOSED and iteration finishes. Resolves
   * when the stream has closed; a peer that never reads can hold that
   * forever, so use destroy() to give up.
   */
  close(): Promise<void> {
    this.#closeLocally();
    const stream = this.#stream;
    if (stream.closed) return Promise.resolve();
    return new Promise((resolve) => {
      stream.once("close", () => resolve());
      if (stream.destroyed || stream.writableFinished) {
        stream.destroy();
      } else {
        // Destroy after the flush so a peer that keeps sending cannot keep us open.
        stream.once("finish", () => stream.destroy());
        if (!stream.writableEnded) stream.end();
      }
    });
  }

  /** Aborts the connection at once: unsent bytes are dropped and the peer sees the stream close. */
  destroy(cause?: unknown): void {
    this.#closeLocally();
    this.#fail(closed("connection destroyed locally", cause));
    this.#stream.destroy();
  }

  #closeLocally(): void {
    this.#closed_locally = true;
    this.#queue = [];
    this.#queue_head = 0;
    this.#queue_bytes = 0;
    for (const waiter of this.#waiters.splice(0)) settle(waiter, () => waiter.resolve(undefined));
  }

  #take(timeout_ms: number | undefined): Promise<Frame | undefined> {
    if (this.#closed_locally) return Promise.resolve(undefined);
    if (this.#queue_head < this.#queue.length) return Promise.resolve(this.#dequeue());
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, timer: undefined };
      if (timeout_ms !== undefined) {
        waiter.timer = setTimeout(() => {
          const at = this.#waiters.indexOf(waiter);
          if (at >= 0) this.#waiters.splice(at, 1);
          reject(new TransportError(TransportErrorCodes.timeout, `no frame arrived within ${timeout_ms} ms`));
        }, timeout_ms);
      }
      this.#waiters.push(waiter);
    });
  }

  #onData(chunk: unknown): void {
    if (this.#closed_locally) return; // nobody will take frames any more
    if (!(chunk instanceof Uint8Array)) {
      this.#abort(new TransportError(TransportErrorCodes.frameMalformed, "stream delivered text, not bytes: do not set an encoding on it"));
      return;
    }
    this.#bytes_received += chunk.length;
    let frames: Frame[];
    try {
      frames = this.#parser.push(chunk);
    } catch (error: unknown) {
      if (!(error instanceof TransportError)) throw error;
      // A corrupt stream may have corrupted what came just before the bad
      // header too: drop the queue, act on nothing more from this peer.
      this.#queue = [];
      this.#queue_head = 0;
      this.#queue_bytes = 0;
      this.#abort(error);
      return;
    }
    for (const frame of frames) {
      const waiter = this.#waiters.shift();
      if (waiter !== undefined) {
        settle(waiter, () => waiter.resolve(frame));
        continue;
      }
      this.#queue.push(frame);
      this.#queue_bytes += FRAME_HEADER_BYTES + frame.payload.length;
    }
    if (!this.#paused && this.#queue_bytes >= this.#receive_queue_bytes_max) {
      this.#paused = true;
      this.#stream.pause();
    }
  }

  #dequeue(): Frame {
    const frame = this.#queue[this.#queue_head];
    if (frame === undefined) throw new Error("FramedConnection: dequeue from an empty queue");
    this.#queue[this.#queue_head] = undefined; // let the payload be collected
    this.#queue_head += 1;
    this.#queue_bytes -= FRAME_HEADER_BYTES + frame.payload.length;
    if (this.#queue_head === this.#queue.length) {
      this.#queue = [];
      this.#queue_head = 0;
    } else if (this.#queue_head >= 1024 && this.#queue_head * 2 >= this.#queue.length) {
      this.#queue = this.#queue.slice(this.#queue_head);
      this.#queue_head = 0;
    }
    // Resume at half the limit, not just below it, so a consumer that is the
    // bottleneck does not make the stream stop and start on every frame.
    if (this.#paused && this.#queue_bytes <= this.#receive_queue_bytes_max / 2) {
      this.#paused = false;
      if (this.#failure === undefined) this.#stream.resume();
    }
    return frame;
  }

  #drained(): Promise<void> {
    if (this.#drain !== undefined) return this.#drain;
    const stream = this.#stream;
    if (stream.destroyed) return Promise.reject(closed("connection closed before the sent frames were flushed", this.#failure));
    // 'drain' is certain to come: the buffer is at or above the stream's own
    // high-water mark (ours is never lower), so write() returned false.
    this.#drain = new Promise<void>((resolve, reject) => {
      const done = (error?: TransportError): void => {
        stream.off("drain", onDrain);
        stream.off("close", onClose);
        this.#drain = undefined;
        if (error === undefined) resolve();
        else reject(error);
      };
      const onDrain = (): void => done();
      const onClose = (): void => done(closed("connection closed before the sent frames were flushed", this.#failure));
      stream.on("drain", onDrain);
      stream.on("close", onClose);
    });
    return this.#drain;
  }

  #abort(error: TransportError): void {
    this.#fail(error);
    this.#stream.destroy();
  }

  /** Records why receiving stopped (the first reason wins) and rejects the waiting receives. */
  #fail(error: TransportError): void {
    if (this.#failure !== undefined) return;
    this.#failure = error;
    for (const waiter of this.#waiters.splice(0)) settle(waiter, () => waiter.reject(error));
  }
}

function settle(waiter: Waiter, action: () => void): void {
  if (waiter.timer !== undefined) clearTimeout(waiter.timer);
  action();
}

function closed(message: string, cause?: unknown): TransportError {
  return new TransportError(TransportErrorCodes.connectionClosed, message, cause === undefined ? undefined : { cause });
}
