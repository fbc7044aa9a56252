/**
 * The worker's end of a link lane (docs/links.md, "Lanes"): a guest's
 * messages to one pid written by its own worker on a connection to the
 * receiver's node, instead of through its node's thread. A round trip
 * between two nodes then wakes four threads instead of six.
 *
 * The node offers a lease (`SLOT_LANE_*` in the control block): the pid,
 * the socket (a duplicate the node made), the records' key, and where its
 * numbering stood: `base`, the number of the last message to that pid the
 * node took out of the outbox, and `mark`, the outbox position it had
 * reached then. The worker takes the lease at its next `send` to that pid:
 * every record it wrote to that pid since `mark` gets the next numbers
 * after `base` when the node takes it, so the worker's own numbering starts
 * after them. From then on it numbers each message to that pid itself and
 * puts it in the outbox as always, marked with the number and its delivery
 * id, and then writes it on the lane, sealed. The node keeps such a
 * message until the receiver's answer (on the lane) covers it, as for any
 * other, and sends it again through its own channel if the lane fails.
 *
 * A revoke (the node sets the state back to none) is seen at the next
 * `send`; the worker marks itself busy around every look at the lease and
 * write to the socket, so the node closes a lane's socket only once it
 * has seen it idle after a revoke.
 */
import { nativeRecordSealer, type NativeRecordSealer } from "../memory/native_seal.js";
import { RecordDirection } from "../memory/page_records.js";
import {
  LANE_AREA_OFFSET,
  LANE_IN_FLIGHT_MAX,
  LANE_KEY_BYTES,
  LaneState,
  SLOT_LANE_BASE_HI,
  SLOT_LANE_BASE_LO,
  SLOT_LANE_BROKEN,
  SLOT_LANE_BUSY,
  SLOT_LANE_FD,
  SLOT_LANE_GEN,
  SLOT_LANE_IN_FLIGHT,
  SLOT_LANE_MARK,
  SLOT_LANE_PID_LEN,
  SLOT_LANE_STATE,
} from "./_control.js";
import type { MessageRing } from "./_inbox.js";

/** A frame on a lane: u32 body length, u8 type, the body. */
export const LANE_FRAME_HEAD_BYTES = 5;
/** Frame types on a lane: the link channel's (`src/node/_link_frames.ts` bodies). */
export const LaneFrame = { deliver: 1, answer: 2 } as const;
/** A DELIVER body's bytes before the pids, and each message's before its data. */
const DELIVER_HEAD_BYTES = 8;
const MESSAGE_HEAD_BYTES = 12;
const EMPTY = new Uint8Array(0);

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** Longest the worker waits for room in the lane's socket before it gives the lane up. */
const WRITE_WAIT_MS = 200;

/** What a `send` did with its message. */
export type LaneSend =
  /** Not a message to the leased pid (or no lease): the caller writes it unnumbered, as always. */
  | null
  /** Written to the outbox (numbered) and on the lane; the node learns of it from its answer. */
  | "lane"
  /** Written to the outbox numbered, but the lane failed under it: the caller tells the node, which sends it again through its channel. */
  | "outbox";

/** One worker's lane writer. */
export class LaneWriter {
  readonly #control: Int32Array;
  readonly #area: Uint8Array;
  readonly #self: Uint8Array;
  /** The lease taken: its pid, and the number the next message to it gets. */
  #pid = new Uint8Array(0);
  #next = 0;
  /** The socket's generation this writer's sealer and ids belong to. */
  #gen = 0;
  #fd = -1;
  /** The addon's sealer of the lane's records (null: no addon, and no lane). */
  #native: NativeRecordSealer | null = null;
  #id = 0;
  #broken = false;
  /** A DELIVER's parts as the addon seals them: the frame's head and the DELIVER's (13 bytes), the pids, the message's data (set per call), its number and length. */
  readonly #head_bytes = new Uint8Array(LANE_FRAME_HEAD_BYTES + DELIVER_HEAD_BYTES);
  readonly #head = new DataView(this.#head_bytes.buffer);
  readonly #tail_bytes = new Uint8Array(MESSAGE_HEAD_BYTES);
  readonly #tail = new DataView(this.#tail_bytes.buffer);
  readonly #parts: Uint8Array[] = [this.#head_bytes, EMPTY, this.#tail_bytes, EMPTY];

  /** `self`: the process's own pid (a delivery's sender). */
  constructor(control: SharedArrayBuffer, self: Uint8Array) {
    this.#control = new Int32Array(control);
    this.#area = new Uint8Array(control, LANE_AREA_OFFSET);
    this.#self = self;
  }

  /**
   * Under a lease for the pid at `to_ptr` (in `m`, the guest's memory):
   * numbers the message, puts it in `outbox` and writes it on the lane.
   * The caller checked that a numbered record fits the outbox.
   */
  send(m: Uint8Array, to_ptr: number, to_len: number, data_ptr: number, data_len: number, outbox: MessageRing): LaneSend {
    const control = this.#control;
    // No lease: nothing can become one without the node, and the node offers only as `offered`.
    if (Atomics.load(control, SLOT_LANE_STATE) === LaneState.none) return null;
    Atomics.store(control, SLOT_LANE_BUSY, 1);
    try {
      let state = Atomics.load(control, SLOT_LANE_STATE);
      if (state === LaneState.offered) {
        if (!this.#take(m, to_ptr, to_len, outbox)) return null;
        state = LaneState.active;
      }
      if (state !== LaneState.active || !this.#leased(m, to_ptr, to_len)) return null;
      if (this.#broken || Atomics.load(control, SLOT_LANE_IN_FLIGHT) >= LANE_IN_FLIGHT_MAX) {
        // Its node's channel carries them from here on, in order (a lane's delivery overtaking them would be refused): the
        // lease is given back, and the node offers it again once nothing is on its way.
        Atomics.compareExchange(control, SLOT_LANE_STATE, LaneState.active, LaneState.none);
        return null;
      }
      const seq = this.#next;
      this.#next += 1;
      this.#id = this.#id === 0xffff_ffff ? 1 : this.#id + 1;
      const id = this.#id;
      // In the outbox first: the node takes it out when the answer comes, so it knows the delivery the answer is for.
      outbox.writeFrom(m, to_ptr, to_len, m, data_ptr, data_len, seq, id);
      Atomics.add(control, SLOT_LANE_IN_FLIGHT, 1);
      if (!this.#deliver(id, m, to_len, data_ptr, data_len, seq)) {
        this.#broken = true;
        Atomics.store(control, SLOT_LANE_BROKEN, this.#gen);
        return "outbox";
      }
      return "lane";
    } finally {
      Atomics.store(control, SLOT_LANE_BUSY, 0);
    }
  }

  /** Takes an offered lease if it is for the pid at `to_ptr`; false if not (or the node took it back first). */
  #take(m: Uint8Array, to_ptr: number, to_len: number, outbox: MessageRing): boolean {
    const control = this.#control;
    const pid_len = Atomics.load(control, SLOT_LANE_PID_LEN);
    if (pid_len !== to_len) return false;
    for (let k = 0; k < to_len; k += 1) if (this.#area[LANE_KEY_BYTES + k] !== m[to_ptr + k]) return false;
    const pid = this.#area.slice(LANE_KEY_BYTES, LANE_KEY_BYTES + pid_len);
    const counted = outbox.countSince(Atomics.load(control, SLOT_LANE_MARK) >>> 0, pid);
    if (counted !== 0) {
      // Messages to it its node has not taken yet would go after this one, through the node: this one would arrive
      // first and be refused. Or a whole ring was written since the offer. Either way the node offers again later.
      Atomics.compareExchange(control, SLOT_LANE_STATE, LaneState.offered, LaneState.none);
      return false;
    }
    const base = (Atomics.load(control, SLOT_LANE_BASE_LO) >>> 0) + (Atomics.load(control, SLOT_LANE_BASE_HI) >>> 0) * 2 ** 32;
    const gen = Atomics.load(control, SLOT_LANE_GEN);
    if (gen !== this.#gen) {
      this.#gen = gen;
      this.#fd = Atomics.load(control, SLOT_LANE_FD);
      const key = this.#area.subarray(0, LANE_KEY_BYTES);
      this.#native?.close();
      // The node offers lanes only with the addon, whose sealer writes them.
      this.#native = nativeRecordSealer(key, RecordDirection.to_destination);
      this.#id = 0;
      this.#broken = false;
    }
    if (Atomics.compareExchange(control, SLOT_LANE_STATE, LaneState.offered, LaneState.active) !== LaneState.offered) return false;
    this.#pid = pid;
    this.#parts[1] = concatBytes(pid, this.#self);
    this.#next = base + 1;
    return true;
  }

  #leased(m: Uint8Array, to_ptr: number, to_len: number): boolean {
    const pid = this.#pid;
    if (pid.length !== to_len) return false;
    for (let k = 0; k < to_len; k += 1) if (pid[k] !== m[to_ptr + k]) return false;
    return true;
  }

  /**
   * Writes a DELIVER of one message as one sealed record, sealed and
   * written by the addon in one call straight from its parts (the frame's
   * head, the pids, the message's number and length, its bytes in the
   * guest's memory). False if it could not (no room for 200 ms, a broken
   * connection, no sealer): the lane is then given up.
   */
  #deliver(id: number, m: Uint8Array, to_len: number, data_ptr: number, data_len: number, seq: number): boolean {
    const native = this.#native;
    if (native === null) return false;
    const head = this.#head;
    const from = this.#self;
    head.setUint32(0, DELIVER_HEAD_BYTES + to_len + from.length + MESSAGE_HEAD_BYTES + data_len, true);
    head.setUint8(4, LaneFrame.deliver);
    head.setUint32(5, id, true);
    head.setUint8(9, to_len);
    head.setUint8(10, from.length);
    head.setUint16(11, 1, true);
    const tail = this.#tail;
    tail.setUint32(0, seq % 2 ** 32, true);
    tail.setUint32(4, Math.floor(seq / 2 ** 32), true);
    tail.setUint32(8, data_len, true);
    const parts = this.#parts;
    parts[3] = m.subarray(data_ptr, data_ptr + data_len);
    const err = native.send(this.#fd, parts, WRITE_WAIT_MS);
    parts[3] = EMPTY;
    return err === 0;
  }
}
