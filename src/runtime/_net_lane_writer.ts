/**
 * The worker's end of a net lane (docs/networking.md, "Net lanes"): the
 * bytes a guest sends on its TCP connections, written by its own worker on
 * a connection to the process's home, instead of through its node's
 * thread. A relayed reply then wakes the home's thread only, not the
 * running node's first.
 *
 * The node offers the lane (`SLOT_NET_LANE_*` in the control block): the
 * socket (a duplicate the node made) and the records' key. The worker
 * takes it at its next `write` and from then on seals each write as one
 * record and writes it to the socket. Each write is still posted to the
 * node, marked with the lane's generation: the node keeps the bytes until
 * the home confirms them, as for any other, and sends them through its
 * channel if the lane fails. The home writes each byte once, by offset,
 * whichever way it came.
 *
 * A revoke (the node sets the state back to none) is seen at the next
 * `write`; the worker marks itself busy around every look at the lane and
 * write to its socket, so the node closes the socket only once it has seen
 * it idle after a revoke.
 */
import { nativeRecordSealer, type NativeRecordSealer } from "../memory/native_seal.js";
import { RECORD_BYTES_MAX, RecordDirection } from "../memory/page_records.js";
import { LANE_KEY_BYTES, LaneState, NET_LANE_KEY_OFFSET, SLOT_NET_LANE_BROKEN, SLOT_NET_LANE_BUSY, SLOT_NET_LANE_FD, SLOT_NET_LANE_GEN, SLOT_NET_LANE_STATE } from "./_control.js";
import { LANE_FRAME_HEAD_BYTES } from "./_lane_writer.js";

/** Frame types on a net lane (a frame being u32 body length, u8 type, the body). */
export const NetLaneFrame = { send: 1 } as const;
/** A SEND body's head: listener u32, seq u32, the offset as a float64 (`ferry-net/2`'s BYTES head); the bytes follow. */
export const NET_LANE_SEND_HEAD_BYTES = 16;
/** Most bytes of one write on a lane: one record holds the frame. */
export const NET_LANE_BYTES_MAX = RECORD_BYTES_MAX - LANE_FRAME_HEAD_BYTES - NET_LANE_SEND_HEAD_BYTES;
/** Longest the worker waits for room in the lane's socket before it gives the lane up. */
const WRITE_WAIT_MS = 200;
const EMPTY = new Uint8Array(0);

/** One worker's net lane writer. */
export class NetLaneWriter {
  readonly #control: Int32Array;
  readonly #key: Uint8Array;
  /** The generation this writer took, its socket and its sealer (null: no addon, and no lane). */
  #gen = 0;
  #fd = -1;
  #native: NativeRecordSealer | null = null;
  #broken = false;
  readonly #head_bytes = new Uint8Array(LANE_FRAME_HEAD_BYTES + NET_LANE_SEND_HEAD_BYTES);
  readonly #head = new DataView(this.#head_bytes.buffer);
  readonly #parts: Uint8Array[] = [this.#head_bytes, EMPTY];

  constructor(control: SharedArrayBuffer) {
    this.#control = new Int32Array(control);
    this.#key = new Uint8Array(control, NET_LANE_KEY_OFFSET, LANE_KEY_BYTES);
  }

  /**
   * Writes the guest's `bytes` on connection `listener.seq`, at stream
   * offset `offset`, on the lane: returns the lane's generation, or 0 if
   * they were not written (no lane, or it failed under them; the caller
   * sends them through its node).
   */
  write(listener: number, seq: number, offset: number, bytes: Uint8Array): number {
    const control = this.#control;
    if (Atomics.load(control, SLOT_NET_LANE_STATE) === LaneState.none || bytes.length === 0 || bytes.length > NET_LANE_BYTES_MAX) return 0;
    Atomics.store(control, SLOT_NET_LANE_BUSY, 1);
    try {
      const state = Atomics.load(control, SLOT_NET_LANE_STATE);
      const gen = Atomics.load(control, SLOT_NET_LANE_GEN);
      if (state === LaneState.offered) {
        if (Atomics.compareExchange(control, SLOT_NET_LANE_STATE, LaneState.offered, LaneState.active) !== LaneState.offered) return 0;
        this.#take(gen);
      } else if (state !== LaneState.active) {
        return 0;
      } else if (gen !== this.#gen) {
        // Taken by an earlier worker of this process (it hibernated since): how many records it sealed is not known
        // here, so the home could not open the next one. The node drops the lane and offers a new one.
        Atomics.store(control, SLOT_NET_LANE_BROKEN, gen);
        return 0;
      }
      if (this.#broken || this.#native === null) return 0;
      const head = this.#head;
      head.setUint32(0, NET_LANE_SEND_HEAD_BYTES + bytes.length, true);
      head.setUint8(4, NetLaneFrame.send);
      head.setUint32(5, listener, true);
      head.setUint32(9, seq, true);
      head.setFloat64(13, offset, true);
      const parts = this.#parts;
      parts[1] = bytes;
      const err = this.#native.send(this.#fd, parts, WRITE_WAIT_MS);
      parts[1] = EMPTY;
      if (err !== 0) {
        // Part of a record may be in the stream: the lane is given up, and the node sends these bytes again.
        this.#broken = true;
        Atomics.store(control, SLOT_NET_LANE_BROKEN, gen);
        return 0;
      }
      return gen;
    } finally {
      Atomics.store(control, SLOT_NET_LANE_BUSY, 0);
    }
  }

  /** Takes the lane of generation `gen` the node offered: its socket, and a sealer under its key numbering records from 0. */
  #take(gen: number): void {
    this.#gen = gen;
    this.#fd = Atomics.load(this.#control, SLOT_NET_LANE_FD);
    this.#native?.close();
    // The node offers lanes only with the addon, whose sealer writes them.
    this.#native = nativeRecordSealer(this.#key, RecordDirection.to_destination);
    this.#broken = false;
  }
}
