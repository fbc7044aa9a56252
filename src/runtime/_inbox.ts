/**
 * A process's link messages as they cross between the controlling thread
 * and its worker (issue 5): two single-producer, single-consumer rings in
 * one shared buffer. The inbox: the controller writes whole records while
 * there is room and the guest's `recv` reads them. The outbox: the guest's
 * `send` writes and the controller drains, many at a time, so a guest that
 * sends fast costs one message between threads per burst, not one per send.
 * Head and tail are byte counters that only grow (mod 2^32), in the control
 * block; a record never wraps in the middle of its header, because every
 * length is a multiple of 4 and the ring's size too. Unread records stay
 * readable by the controller after a suspend, so they travel in the image.
 *
 * Record: u32 length (this header included, padded to 4), u16 peer length,
 * u16 flags, u32 data length, [numbered: u32 seq low, u32 seq high, u32
 * lane delivery id], peer pid (UTF-8: the sender in the inbox, the receiver
 * in the outbox), data. Flag bit 0 (numbered, outbox only): the guest's
 * worker numbered the message itself, under a lane's lease
 * (`_lane_writer.ts`), and wrote it on the lane as delivery `id` (0: not on
 * the lane).
 */
import { INBOX_RING_BYTES, OUTBOX_RING_BYTES, SLOT_INBOX_HEAD, SLOT_INBOX_TAIL, SLOT_OUTBOX_HEAD, SLOT_OUTBOX_TAIL } from "./_control.js";
/** Largest message a process can send or receive. */
export const MESSAGE_BYTES_MAX = 64 * 1024;
/** Longest pid. */
export const PID_BYTES_MAX = 255;

const HEADER = 12;
/** Bytes after the header of a numbered record. */
const NUMBERED = 12;
const FLAG_NUMBERED = 1;

const decoder = new TextDecoder();

/** A message as the inbox holds it. */
export interface InboxMessage {
  from: string;
  data: Uint8Array;
}

/** A message as the outbox holds it: `seq` is its number if the worker gave it one (else 0), `lane` its delivery on the lane (else 0). */
export interface SentMessage extends InboxMessage {
  seq: number;
  lane: number;
}

function recordBytes(from_len: number, data_len: number, numbered = false): number {
  return (HEADER + (numbered ? NUMBERED : 0) + from_len + data_len + 3) & ~3;
}

/**
 * Copies of fewer bytes go byte by byte: a pid, a small message. A view to
 * copy through costs an object each, and the node's thread and the guest's
 * copy each message's two parts in and out (a CPU profile of two nodes
 * exchanging 10-byte messages: a few percent of each thread).
 */
const BYTEWISE_MAX = 32;

/** Copies `n` bytes of `src` from `off` into the ring at byte counter `at`. */
function copyIn(ring: Uint8Array, at: number, src: Uint8Array, off: number, n: number): void {
  const i = at % ring.length;
  if (i + n <= ring.length) {
    if (n <= BYTEWISE_MAX) for (let k = 0; k < n; k += 1) ring[i + k] = src[off + k] as number;
    else ring.set(src.subarray(off, off + n), i);
    return;
  }
  const first = ring.length - i;
  ring.set(src.subarray(off, off + first), i);
  ring.set(src.subarray(off + first, off + n), 0);
}

/** Copies `n` bytes from the ring at byte counter `at` into `dst` from `off`. */
function copyOut(ring: Uint8Array, at: number, dst: Uint8Array, off: number, n: number): void {
  const i = at % ring.length;
  if (i + n <= ring.length) {
    if (n <= BYTEWISE_MAX) for (let k = 0; k < n; k += 1) dst[off + k] = ring[i + k] as number;
    else dst.set(ring.subarray(i, i + n), off);
    return;
  }
  const first = ring.length - i;
  dst.set(ring.subarray(i, i + first), off);
  dst.set(ring.subarray(0, n - first), off + first);
}

/** Both ends see the same ring. */
export class MessageRing {
  readonly #ring: Uint8Array;
  readonly #view: DataView;
  readonly #control: Int32Array;
  readonly #head_slot: number;
  readonly #tail_slot: number;
  /** The last peer pid a drain decoded, and its bytes: a drain's messages mostly name one peer. */
  #last_pid = "";
  #last_pid_bytes = new Uint8Array(0);

  constructor(ring: Uint8Array, control: Int32Array, head_slot: number, tail_slot: number) {
    this.#ring = ring;
    this.#view = new DataView(ring.buffer, ring.byteOffset, ring.length);
    this.#control = control;
    this.#head_slot = head_slot;
    this.#tail_slot = tail_slot;
  }

  #head(): number {
    return Atomics.load(this.#control, this.#head_slot) >>> 0;
  }

  #tail(): number {
    return Atomics.load(this.#control, this.#tail_slot) >>> 0;
  }

  /** Producer: whether a message of these sizes fits now. */
  fits(from_len: number, data_len: number, numbered = false): boolean {
    return ((this.#head() - this.#tail()) >>> 0) + recordBytes(from_len, data_len, numbered) <= this.#ring.length;
  }

  /** Producer: appends a message if it fits; false if the ring is too full now. */
  write(from: Uint8Array, data: Uint8Array): boolean {
    return this.writeFrom(from, 0, from.length, data, 0, data.length);
  }

  /**
   * Producer: {@link write} of a message whose peer and data lie in larger
   * buffers (the guest's memory), at `peer_ptr` and `data_ptr`: no view of
   * each part is made.
   */
  writeFrom(peer: Uint8Array, peer_ptr: number, peer_len: number, data: Uint8Array, data_ptr: number, data_len: number, seq = 0, lane = 0): boolean {
    const numbered = seq > 0;
    const size = recordBytes(peer_len, data_len, numbered);
    const head = this.#head();
    const used = (head - this.#tail()) >>> 0;
    if (used + size > this.#ring.length) return false;
    const n = this.#ring.length;
    const at = head % n;
    this.#view.setUint32(at, size, true);
    this.#view.setUint16((at + 4) % n, peer_len, true);
    this.#view.setUint16((at + 6) % n, numbered ? FLAG_NUMBERED : 0, true);
    this.#view.setUint32((at + 8) % n, data_len, true);
    let body = head + HEADER;
    if (numbered) {
      this.#view.setUint32((at + 12) % n, seq % 2 ** 32, true);
      this.#view.setUint32((at + 16) % n, Math.floor(seq / 2 ** 32), true);
      this.#view.setUint32((at + 20) % n, lane, true);
      body += NUMBERED;
    }
    copyIn(this.#ring, body, peer, peer_ptr, peer_len);
    copyIn(this.#ring, body + peer_len, data, data_ptr, data_len);
    Atomics.store(this.#control, this.#head_slot, (head + size) | 0);
    return true;
  }

  /**
   * Producer: how many records written from byte counter `mark` on (a
   * position the consumer had reached, so no later record came before it)
   * name `peer`; null if the producer has written a whole ring since, over
   * some of them.
   */
  countSince(mark: number, peer: Uint8Array): number | null {
    const head = this.#head();
    if (((head - mark) >>> 0) > this.#ring.length) return null;
    let count = 0;
    for (let at = mark >>> 0; at !== head; ) {
      const i = at % this.#ring.length;
      const size = this.#view.getUint32(i, true);
      const peer_len = this.#view.getUint16((i + 4) % this.#ring.length, true);
      const numbered = (this.#view.getUint16((i + 6) % this.#ring.length, true) & FLAG_NUMBERED) !== 0;
      if (peer_len === peer.length) {
        const from = at + HEADER + (numbered ? NUMBERED : 0);
        let same = true;
        for (let k = 0; k < peer_len && same; k += 1) same = this.#ring[(from + k) % this.#ring.length] === peer[k];
        if (same) count += 1;
      }
      at = (at + size) >>> 0;
    }
    return count;
  }

  /** Consumer: bytes taken so far (a byte counter, mod 2^32). */
  get taken(): number {
    return this.#tail();
  }

  /** Consumer: sizes of the first unread message, or null. */
  peek(): { from_len: number; data_len: number } | null {
    const tail = this.#tail();
    if (tail === this.#head()) return null;
    const at = tail % this.#ring.length;
    return { from_len: this.#view.getUint16((at + 4) % this.#ring.length, true), data_len: this.#view.getUint32((at + 8) % this.#ring.length, true) };
  }

  /**
   * Consumer: copies the first unread message out and consumes it: its peer
   * into `peer` at `peer_ptr`, its data into `data` at `data_ptr` (the
   * guest's memory, both), with room checked by the caller for the sizes
   * {@link peek} gave.
   */
  takeInto(peer: Uint8Array, peer_ptr: number, data: Uint8Array, data_ptr: number): void {
    const tail = this.#tail();
    const at = tail % this.#ring.length;
    const size = this.#view.getUint32(at, true);
    const peer_len = this.#view.getUint16((at + 4) % this.#ring.length, true);
    const data_len = this.#view.getUint32((at + 8) % this.#ring.length, true);
    copyOut(this.#ring, tail + HEADER, peer, peer_ptr, peer_len);
    copyOut(this.#ring, tail + HEADER + peer_len, data, data_ptr, data_len);
    Atomics.store(this.#control, this.#tail_slot, (tail + size) | 0);
  }

  /** Consumer: takes every message written so far, oldest first. */
  drain(): SentMessage[] {
    const { out, end } = this.#collect();
    // Up to where it read: the producer may have written more meanwhile, for the next drain.
    Atomics.store(this.#control, this.#tail_slot, end | 0);
    return out;
  }

  /** Either side, with the producer stopped: every unread message, oldest first (nothing is consumed). */
  unread(): InboxMessage[] {
    return this.#collect().out;
  }

  #collect(): { out: SentMessage[]; end: number } {
    const out: SentMessage[] = [];
    const head = this.#head();
    const n = this.#ring.length;
    let at = this.#tail();
    for (; at !== head; ) {
      const i = at % n;
      const size = this.#view.getUint32(i, true);
      const from_len = this.#view.getUint16((i + 4) % n, true);
      const numbered = (this.#view.getUint16((i + 6) % n, true) & FLAG_NUMBERED) !== 0;
      const data = new Uint8Array(this.#view.getUint32((i + 8) % n, true));
      let seq = 0;
      let lane = 0;
      let body = at + HEADER;
      if (numbered) {
        seq = this.#view.getUint32((i + 12) % n, true) + this.#view.getUint32((i + 16) % n, true) * 2 ** 32;
        lane = this.#view.getUint32((i + 20) % n, true);
        body += NUMBERED;
      }
      const from = this.#pid(body, from_len);
      copyOut(this.#ring, body + from_len, data, 0, data.length);
      out.push({ from, data, seq, lane });
      at = (at + size) >>> 0;
    }
    return { out, end: at };
  }

  /** The pid of `len` bytes at `at`: the last one decoded when it is the same. */
  #pid(at: number, len: number): string {
    const ring = this.#ring;
    const last = this.#last_pid_bytes;
    if (len === last.length) {
      let same = true;
      for (let k = 0; k < len && same; k += 1) same = ring[(at + k) % ring.length] === last[k];
      if (same) return this.#last_pid;
    }
    const bytes = new Uint8Array(len);
    copyOut(ring, at, bytes, 0, len);
    this.#last_pid_bytes = bytes;
    this.#last_pid = decoder.decode(bytes);
    return this.#last_pid;
  }

  /** Messages unread now. */
  get empty(): boolean {
    return this.#tail() === this.#head();
  }
}

/** The process's inbox (controller writes, guest reads) in its links buffer. */
export function inboxRing(links: SharedArrayBuffer, control: Int32Array): MessageRing {
  return new MessageRing(new Uint8Array(links, 0, INBOX_RING_BYTES), control, SLOT_INBOX_HEAD, SLOT_INBOX_TAIL);
}

/** The process's outbox (guest writes, controller drains) in its links buffer; `from` of a record is its receiver. */
export function outboxRing(links: SharedArrayBuffer, control: Int32Array): MessageRing {
  return new MessageRing(new Uint8Array(links, INBOX_RING_BYTES, OUTBOX_RING_BYTES), control, SLOT_OUTBOX_HEAD, SLOT_OUTBOX_TAIL);
}
