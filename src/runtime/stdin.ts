/**
 * Standard input of a guest crosses from the controlling thread to the worker
 * through a one-slot mailbox in shared memory. The controller reads its input
 * stream ahead (bounded) so that bytes read but not yet consumed are known at
 * capture and travel in the image; nothing is lost or read twice.
 */
import type { Readable } from "node:stream";
import { SLOT_STDIN_LEN, STDIN_CLOSED, STDIN_EOF, STDIN_MAILBOX_BYTES, wake } from "./_control.js";

/**
 * Read-ahead limit of the controller. Past it the input stream is paused, so
 * a process that never reads cannot make its node buffer a whole pipe.
 */
export const STDIN_READ_AHEAD_BYTES_MAX = 1024 * 1024;

/** Controller side: feeds the mailbox from a queue filled by a stream. */
export class StdinPump {
  readonly #control: Int32Array;
  readonly #mailbox: Uint8Array;
  #queue: Buffer[] = [];
  #queued_bytes = 0;
  #ended: boolean;
  #closed = false;
  #stream: Readable | null = null;

  /** `pending` are bytes carried over from an image; `ended` whether the stream had ended. */
  constructor(control: Int32Array, mailbox: SharedArrayBuffer, pending: Uint8Array, ended: boolean) {
    this.#control = control;
    this.#mailbox = new Uint8Array(mailbox);
    if (pending.length > 0) this.#push(Buffer.from(pending));
    this.#ended = ended;
  }

  /** Puts input carried over from an image in front of everything else. */
  preload(pending: Uint8Array, ended: boolean): void {
    if (pending.length > 0) this.#queue.unshift(Buffer.from(pending));
    this.#queued_bytes += pending.length;
    if (ended) this.#ended = true;
  }

  /** Starts reading `stream` ahead; without a stream, input is at its end. */
  attach(stream: Readable | null): void {
    if (stream === null || this.#ended) {
      // Nothing to read: hand over what an image carried, then the end.
      this.#ended = true;
      this.pump();
      return;
    }
    this.#stream = stream;
    stream.on("data", (chunk: Buffer | string) => {
      this.#push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
      if (this.#queued_bytes >= STDIN_READ_AHEAD_BYTES_MAX) stream.pause();
      this.pump();
    });
    stream.on("end", () => {
      this.#ended = true;
      this.pump();
    });
    // A broken stdin (its writer gone) reads as its end, as a closed pipe would: the guest sees EOF, which is all it could act on.
    stream.on("error", () => {
      this.#ended = true;
      this.pump();
    });
  }

  #push(chunk: Buffer): void {
    this.#queue.push(chunk);
    this.#queued_bytes += chunk.length;
  }

  /** Moves queued bytes into the mailbox if it is empty; called on every change. */
  pump(): void {
    if (this.#closed) return;
    if (Atomics.load(this.#control, SLOT_STDIN_LEN) !== 0) return;
    if (this.#queue.length === 0) {
      if (this.#ended) {
        if (Atomics.compareExchange(this.#control, SLOT_STDIN_LEN, 0, STDIN_EOF) === 0) wake(this.#control);
      }
      return;
    }
    const all = this.#queue.length === 1 ? (this.#queue[0] as Buffer) : Buffer.concat(this.#queue);
    const n = Math.min(all.length, STDIN_MAILBOX_BYTES);
    this.#mailbox.set(all.subarray(0, n));
    // Published only after the bytes are in place; if the guest closed the
    // mailbox meanwhile, the chunk stays queued and goes into the image.
    if (Atomics.compareExchange(this.#control, SLOT_STDIN_LEN, 0, n) !== 0) {
      this.#queue = [all];
      return;
    }
    const rest = all.subarray(n);
    this.#queue = rest.length > 0 ? [rest] : [];
    this.#queued_bytes = rest.length;
    wake(this.#control);
    if (this.#queued_bytes < STDIN_READ_AHEAD_BYTES_MAX) this.#stream?.resume();
  }

  /**
   * Stops feeding (the guest has closed its mailbox for capture) and returns
   * what was read but never handed to the guest, and whether the stream ended.
   */
  hold(): { pending: Uint8Array; ended: boolean } {
    this.#closed = true;
    this.#stream?.pause();
    return { pending: Buffer.concat(this.#queue), ended: this.#ended };
  }

  /** Feeds again after {@link hold}, when the process resumes in place. */
  release(): void {
    this.#closed = false;
    if (this.#queued_bytes < STDIN_READ_AHEAD_BYTES_MAX) this.#stream?.resume();
    this.pump();
  }

  /** Stops reading the stream for good. */
  detach(): void {
    this.#closed = true;
    this.#stream?.pause();
    this.#stream?.removeAllListeners();
    this.#stream = null;
  }
}

/** Worker side: an InputSource over the mailbox. */
export class StdinMailbox {
  readonly #control: Int32Array;
  readonly #mailbox: Uint8Array;
  readonly #notify: () => void;
  #local: Uint8Array = new Uint8Array(0);
  #eof = false;

  /** `notify` tells the controller the mailbox was emptied (so it can refill it). */
  constructor(control: Int32Array, mailbox: SharedArrayBuffer, notify: () => void) {
    this.#control = control;
    this.#mailbox = new Uint8Array(mailbox);
    this.#notify = notify;
  }

  #take(): void {
    if (this.#local.length > 0 || this.#eof) return;
    const len = Atomics.load(this.#control, SLOT_STDIN_LEN);
    if (len === STDIN_EOF) {
      this.#eof = true;
    } else if (len > 0) {
      this.#local = this.#mailbox.slice(0, len);
      Atomics.store(this.#control, SLOT_STDIN_LEN, 0);
      this.#notify();
    }
  }

  /** Up to `max_bytes` of input, "eof" at the end, "empty" when nothing is there yet. */
  tryRead(max_bytes: number): Uint8Array | "eof" | "empty" {
    this.#take();
    if (this.#local.length > 0) {
      const out = this.#local.subarray(0, max_bytes);
      this.#local = this.#local.subarray(out.length);
      return out;
    }
    return this.#eof ? "eof" : "empty";
  }

  /** Whether a read would not block. */
  readable(): boolean {
    this.#take();
    return this.#local.length > 0 || this.#eof;
  }

  /**
   * Closes the mailbox for capture and returns the input the guest has not
   * consumed. After this the controller never writes the mailbox again.
   */
  capture(): { pending: Uint8Array; eof: boolean } {
    const len = Atomics.exchange(this.#control, SLOT_STDIN_LEN, STDIN_CLOSED);
    let pending = this.#local;
    if (len > 0) {
      const more = new Uint8Array(pending.length + len);
      more.set(pending);
      more.set(this.#mailbox.subarray(0, len), pending.length);
      pending = more;
    }
    return { pending: pending.slice(), eof: this.#eof || len === STDIN_EOF };
  }

  /** Reopens the mailbox after a capture, when the process resumes in place. */
  reopen(pending: Uint8Array, eof: boolean): void {
    this.#local = pending;
    this.#eof = eof;
    Atomics.store(this.#control, SLOT_STDIN_LEN, 0);
  }
}
