/**
 * A process's TCP connections as they cross between its controlling thread
 * and its worker: a table of slots in shared memory, one per connection the
 * controller announced, each with a single-producer single-consumer byte
 * ring for the incoming stream and a counter of outgoing bytes not yet
 * taken by the relay (the send window).
 *
 * The controller claims a slot for a connection, fills its ring, marks its
 * end and frees it once the guest closed it; the guest finds a slot by
 * (listener, seq), reads the ring and adds to the send counter. Ring head and
 * tail are byte counters that only grow (mod 2^32): the controller knows
 * what it wrote, the guest's WASI state what it read.
 */

/** Connections a process can have announced to it at once (accepted or not). */
export const NET_SLOTS = 64;
/** Bytes of each connection's incoming ring. */
export const NET_RING_BYTES = 64 * 1024;
/** Outgoing bytes a connection may have on their way before the guest's send waits. */
export const NET_SEND_WINDOW = 256 * 1024;
/** The guest reports what it read once it read this much since its last report (or when asked). */
export const NET_READ_REPORT_BYTES = 16 * 1024;

const SLOT_INTS = 8;
/** 0 free, 1 holds a connection. */
const F_STATE = 0;
const F_LISTENER = 1;
const F_SEQ = 2;
/** Bytes the controller wrote into the ring. */
const F_HEAD = 3;
/** Bytes the guest read out of it. */
const F_TAIL = 4;
/** {@link End}: how the stream ends after HEAD, if it does. */
const F_END = 5;
/** Outgoing bytes handed out by the guest and not yet taken by the relay. */
const F_UNSENT = 6;
/** Set by the controller when it holds bytes that did not fit: the guest then reports every read. */
const F_NOTIFY = 7;

/** How an incoming stream ended. */
export const End = { open: 0, eof: 1, reset: 2 } as const;

/** Bytes of the shared buffer of one process. */
export const NET_AREA_BYTES = NET_SLOTS * SLOT_INTS * 4 + NET_SLOTS * NET_RING_BYTES;

/** Both ends see the same slots. */
export class NetArea {
  readonly #ints: Int32Array;
  readonly #rings: Uint8Array;

  constructor(buffer: SharedArrayBuffer) {
    this.#ints = new Int32Array(buffer, 0, NET_SLOTS * SLOT_INTS);
    this.#rings = new Uint8Array(buffer, NET_SLOTS * SLOT_INTS * 4);
  }

  #get(slot: number, field: number): number {
    return Atomics.load(this.#ints, slot * SLOT_INTS + field);
  }

  #set(slot: number, field: number, value: number): void {
    Atomics.store(this.#ints, slot * SLOT_INTS + field, value);
  }

  /** Guest: the slot holding connection `seq` of `listener`, or -1. */
  find(listener: number, seq: number): number {
    for (let slot = 0; slot < NET_SLOTS; slot++) {
      if (this.#get(slot, F_STATE) === 1 && this.#get(slot, F_LISTENER) === listener && this.#get(slot, F_SEQ) === seq) return slot;
    }
    return -1;
  }

  /** Guest: whether `slot` still holds that connection (a cached slot may have been reused). */
  holds(slot: number, listener: number, seq: number): boolean {
    return this.#get(slot, F_STATE) === 1 && this.#get(slot, F_LISTENER) === listener && this.#get(slot, F_SEQ) === seq;
  }

  /** Guest: up to `max` unread bytes (consumed unless `peek`); "empty", or how the stream ended. */
  read(slot: number, max: number, peek: boolean): Uint8Array | "empty" | "eof" | "reset" {
    const tail = this.#get(slot, F_TAIL) >>> 0;
    const end = this.#get(slot, F_END);
    const head = this.#get(slot, F_HEAD) >>> 0;
    const available = (head - tail) >>> 0;
    if (available === 0) {
      if (end === End.eof) return "eof";
      if (end === End.reset) return "reset";
      return "empty";
    }
    const n = Math.min(max, available);
    const out = new Uint8Array(n);
    const ring = this.#ring(slot);
    const at = tail % NET_RING_BYTES;
    const first = Math.min(n, NET_RING_BYTES - at);
    out.set(ring.subarray(at, at + first));
    if (first < n) out.set(ring.subarray(0, n - first), first);
    if (!peek) this.#set(slot, F_TAIL, (tail + n) | 0);
    return out;
  }

  /** Guest: bytes it may send now; "reset" once the connection broke. */
  room(slot: number): number | "reset" {
    if (this.#get(slot, F_END) === End.reset) return "reset";
    return Math.max(0, NET_SEND_WINDOW - this.#get(slot, F_UNSENT));
  }

  /** Guest: `n` more outgoing bytes are on their way. */
  sending(slot: number, n: number): void {
    Atomics.add(this.#ints, slot * SLOT_INTS + F_UNSENT, n);
  }

  /** Guest: does the controller want to hear of every read? */
  notify(slot: number): boolean {
    return this.#get(slot, F_NOTIFY) !== 0;
  }

  /** Bytes read out of `slot`'s ring so far (mod 2^32). */
  tail(slot: number): number {
    return this.#get(slot, F_TAIL) >>> 0;
  }

  /** Controller: a free slot given to connection `seq` of `listener`, or -1 when all are taken. */
  claim(listener: number, seq: number): number {
    for (let slot = 0; slot < NET_SLOTS; slot++) {
      if (this.#get(slot, F_STATE) !== 0) continue;
      for (const field of [F_HEAD, F_TAIL, F_END, F_UNSENT, F_NOTIFY]) this.#set(slot, field, 0);
      this.#set(slot, F_LISTENER, listener);
      this.#set(slot, F_SEQ, seq);
      // Published last: the guest only looks at a slot whose state is 1.
      this.#set(slot, F_STATE, 1);
      return slot;
    }
    return -1;
  }

  /** Controller: writes what fits of `bytes` into the ring; returns how many it wrote. */
  push(slot: number, bytes: Uint8Array): number {
    const head = this.#get(slot, F_HEAD) >>> 0;
    const used = (head - (this.#get(slot, F_TAIL) >>> 0)) >>> 0;
    const n = Math.min(bytes.length, NET_RING_BYTES - used);
    if (n === 0) return 0;
    const ring = this.#ring(slot);
    const at = head % NET_RING_BYTES;
    const first = Math.min(n, NET_RING_BYTES - at);
    ring.set(bytes.subarray(0, first), at);
    if (first < n) ring.set(bytes.subarray(first, n), 0);
    this.#set(slot, F_HEAD, (head + n) | 0);
    return n;
  }

  /** Controller: the incoming stream ends after what was written. */
  end(slot: number, how: (typeof End)["eof"] | (typeof End)["reset"]): void {
    this.#set(slot, F_END, how);
  }

  /** Controller: the relay took `n` outgoing bytes (negative: it has fewer than assumed). */
  taken(slot: number, n: number): void {
    Atomics.sub(this.#ints, slot * SLOT_INTS + F_UNSENT, n);
  }

  /** Controller: asks for (or stops asking for) a report of every read. */
  setNotify(slot: number, on: boolean): void {
    this.#set(slot, F_NOTIFY, on ? 1 : 0);
  }

  /** Controller: the connection is gone from the guest; the slot may be claimed again. */
  free(slot: number): void {
    this.#set(slot, F_STATE, 0);
  }

  #ring(slot: number): Uint8Array {
    return this.#rings.subarray(slot * NET_RING_BYTES, (slot + 1) * NET_RING_BYTES);
  }
}
