/**
 * The worker's side of a process's TCP connections: the WASI host's NetPort
 * over the shared slots (`_net_area.ts`). Incoming bytes are read straight
 * from a slot's ring; outgoing bytes, shutdowns and closes go to the
 * controller as messages, in the order the guest made them, each carrying its
 * stream offset. Outgoing bytes go on the process's net lane to its home
 * too, where it has one (`_net_lane_writer.ts`); their message then says so.
 */
import type { ConnRef, NetPort, NetRead } from "../wasi/mod.js";
import { NET_READ_REPORT_BYTES, type NetArea } from "./_net_area.js";
import type { NetLaneWriter } from "./_net_lane_writer.js";
import type { FromWorker } from "./_protocol.js";

export class GuestNet implements NetPort {
  readonly #area: NetArea;
  readonly #post: (msg: FromWorker) => void;
  /** Slot of each connection as last found ("listener.seq" → slot). */
  readonly #slots = new Map<string, number>();
  /** Ring tail at the last read report, by slot. */
  readonly #reported = new Map<number, number>();
  readonly #lane: NetLaneWriter | null;

  constructor(area: NetArea, post: (msg: FromWorker) => void, lane: NetLaneWriter | null = null) {
    this.#area = area;
    this.#post = post;
    this.#lane = lane;
  }

  #slot(conn: ConnRef): number {
    const key = `${conn.listener}.${conn.seq}`;
    const cached = this.#slots.get(key);
    if (cached !== undefined && this.#area.holds(cached, conn.listener, conn.seq)) return cached;
    const slot = this.#area.find(conn.listener, conn.seq);
    if (slot >= 0) this.#slots.set(key, slot);
    return slot;
  }

  arrived(listener: number, seq: number): boolean {
    return this.#area.find(listener, seq) >= 0;
  }

  read(conn: ConnRef, max: number, peek: boolean): NetRead {
    const slot = this.#slot(conn);
    // The controller gives every connection the guest holds a slot before it runs: none means it is gone.
    if (slot < 0) return "reset";
    const got = this.#area.read(slot, max, peek);
    if (!peek && typeof got !== "string") {
      const tail = this.#area.tail(slot);
      const last = this.#reported.get(slot) ?? tail - got.length;
      if (this.#area.notify(slot) || ((tail - last) >>> 0) >= NET_READ_REPORT_BYTES) {
        this.#reported.set(slot, tail);
        this.#post({ type: "net-read", listener: conn.listener, seq: conn.seq });
      } else if (!this.#reported.has(slot)) {
        this.#reported.set(slot, last);
      }
    }
    return got;
  }

  room(conn: ConnRef): number | "reset" {
    const slot = this.#slot(conn);
    return slot < 0 ? "reset" : this.#area.room(slot);
  }

  write(conn: ConnRef, offset: number, bytes: Uint8Array): void {
    const slot = this.#slot(conn);
    if (slot >= 0) this.#area.sending(slot, bytes.length);
    const lane = this.#lane?.write(conn.listener, conn.seq, offset, bytes) ?? 0;
    this.#post(lane === 0 ? { type: "net-send", listener: conn.listener, seq: conn.seq, offset, bytes } : { type: "net-send", listener: conn.listener, seq: conn.seq, offset, bytes, lane });
  }

  shutdown(conn: ConnRef, offset: number): void {
    this.#post({ type: "net-shutdown", listener: conn.listener, seq: conn.seq, offset });
  }

  close(conn: ConnRef, offset: number): void {
    const slot = this.#slot(conn);
    this.#slots.delete(`${conn.listener}.${conn.seq}`);
    if (slot >= 0) this.#reported.delete(slot);
    this.#post({ type: "net-close", listener: conn.listener, seq: conn.seq, offset });
  }

  unlisten(listener: number): void {
    this.#post({ type: "net-unlisten", listener });
  }
}
