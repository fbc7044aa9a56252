/**
 * A process's inbox of link messages (issue 5) as it crosses from the
 * controlling thread to the worker: a single-producer, single-consumer ring
 * in shared memory. The controller writes whole records while there is room;
 * the guest's `recv` reads them. Head and tail are byte counters that only
 * grow (mod 2^32), in the control block; a record never wraps in the middle
 * of its header, because every length is a multiple of 4 and the ring's size
 * too. Unread records stay readable by the controller after a suspend, so
 * they travel in the image.
 *
 * Record: u32 length (this header included, padded to 4), u16 sender length,
 * u16 0, u32 data length, sender (UTF-8), data.
 */
import { SLOT_INBOX_HEAD, SLOT_INBOX_TAIL } from "./_control.js";
/** Largest message a process can send or receive. */
export const MESSAGE_BYTES_MAX = 64 * 1024;
/** Longest pid. */
export const PID_BYTES_MAX = 255;

const HEADER = 12;

/** A message as the inbox holds it. */
export interface InboxMessage {
  from: string;
  data: Uint8Array;
}

function recordBytes(from_len: number, data_len: number): number {
  return (HEADER + from_len + data_len + 3) & ~3;
}

function copyIn(ring: Uint8Array, at: number, bytes: Uint8Array): void {
  const i = at % ring.length;
  const first = Math.min(bytes.length, ring.length - i);
  ring.set(bytes.subarray(0, first), i);
  if (first < bytes.length) ring.set(bytes.subarray(first), 0);
}

function copyOut(ring: Uint8Array, at: number, out: Uint8Array): void {
  const i = at % ring.length;
  const first = Math.min(out.length, ring.length - i);
  out.set(ring.subarray(i, i + first));
  if (first < out.length) out.set(ring.subarray(0, out.length - first), first);
}

/** Both ends see the same ring. */
export class InboxRing {
  readonly #ring: Uint8Array;
  readonly #view: DataView;
  readonly #control: Int32Array;

  constructor(ring: SharedArrayBuffer, control: Int32Array) {
    this.#ring = new Uint8Array(ring);
    this.#view = new DataView(ring);
    this.#control = control;
  }

  #head(): number {
    return Atomics.load(this.#control, SLOT_INBOX_HEAD) >>> 0;
  }

  #tail(): number {
    return Atomics.load(this.#control, SLOT_INBOX_TAIL) >>> 0;
  }

  /** Controller: appends a message if it fits; false if the ring is too full now. */
  write(from: Uint8Array, data: Uint8Array): boolean {
    const size = recordBytes(from.length, data.length);
    const head = this.#head();
    const used = (head - this.#tail()) >>> 0;
    if (used + size > this.#ring.length) return false;
    const at = head % this.#ring.length;
    this.#view.setUint32(at, size, true);
    this.#view.setUint16((at + 4) % this.#ring.length, from.length, true);
    this.#view.setUint16((at + 6) % this.#ring.length, 0, true);
    this.#view.setUint32((at + 8) % this.#ring.length, data.length, true);
    copyIn(this.#ring, head + HEADER, from);
    copyIn(this.#ring, head + HEADER + from.length, data);
    Atomics.store(this.#control, SLOT_INBOX_HEAD, (head + size) | 0);
    return true;
  }

  /** Worker: sizes of the first unread message, or null. */
  peek(): { from_len: number; data_len: number } | null {
    const tail = this.#tail();
    if (tail === this.#head()) return null;
    const at = tail % this.#ring.length;
    return { from_len: this.#view.getUint16((at + 4) % this.#ring.length, true), data_len: this.#view.getUint32((at + 8) % this.#ring.length, true) };
  }

  /** Worker: copies the first unread message out and consumes it. */
  take(from: Uint8Array, data: Uint8Array): void {
    const tail = this.#tail();
    const at = tail % this.#ring.length;
    const size = this.#view.getUint32(at, true);
    copyOut(this.#ring, tail + HEADER, from);
    copyOut(this.#ring, tail + HEADER + from.length, data);
    Atomics.store(this.#control, SLOT_INBOX_TAIL, (tail + size) | 0);
  }

  /** Controller, with the guest stopped: every unread message, oldest first (nothing is consumed). */
  unread(): InboxMessage[] {
    const out: InboxMessage[] = [];
    const decoder = new TextDecoder();
    for (let at = this.#tail(); at !== this.#head(); ) {
      const i = at % this.#ring.length;
      const size = this.#view.getUint32(i, true);
      const from = new Uint8Array(this.#view.getUint16((i + 4) % this.#ring.length, true));
      const data = new Uint8Array(this.#view.getUint32((i + 8) % this.#ring.length, true));
      copyOut(this.#ring, at + HEADER, from);
      copyOut(this.#ring, at + HEADER + from.length, data);
      out.push({ from: decoder.decode(from), data });
      at = (at + size) >>> 0;
    }
    return out;
  }

  /** Messages unread now. */
  get empty(): boolean {
    return this.#tail() === this.#head();
  }
}
