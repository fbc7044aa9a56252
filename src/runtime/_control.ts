/**
 * Layout of the shared control block between a process's controlling thread
 * and its worker. Int32 slots so both sides can use Atomics.wait/notify.
 */

import { USAGE_BYTES } from "./_usage.js";

/** Index of the request slot: the controller writes a {@link Request}. */
export const SLOT_REQUEST = 0;
/**
 * Wake counter: bumped (and notified) by the controller whenever anything a
 * blocked guest may wait for changes — a request, stdin data, stdin end.
 */
export const SLOT_WAKE = 1;
/** Stdin mailbox length in bytes, or one of the STDIN_* marks. */
export const SLOT_STDIN_LEN = 2;
/** Inbox ring (`_inbox.ts`): bytes written so far, by the controller. */
export const SLOT_INBOX_HEAD = 3;
/** Inbox ring: bytes read so far, by the guest. */
export const SLOT_INBOX_TAIL = 4;
/** Messages the guest sent that are not delivered yet; `send` blocks at OUTBOX_MAX. */
export const SLOT_OUT_PENDING = 5;
/** The guest's own migration request: a {@link MigrateSlot}, or a negative WASI errno when it failed. */
export const SLOT_MIGRATE = 6;
/** Set by the controller while it holds messages that did not fit the ring: the guest says when it read one. */
export const SLOT_INBOX_BACKLOG = 7;
/**
 * Auto-converge (issue 15): the share of its time, in percent (0 to
 * THROTTLE_PCT_MAX), the guest is held at its safe points, so that a
 * migration's rounds can catch up with what it writes.
 */
export const SLOT_THROTTLE = 8;
/** Outbox ring (`_inbox.ts`): bytes written so far, by the guest's `send`. */
export const SLOT_OUTBOX_HEAD = 9;
/** Outbox ring: bytes taken so far, by the controller. */
export const SLOT_OUTBOX_TAIL = 10;
/**
 * 1 once the guest has told its controller (one message between threads)
 * that its outbox has records; the controller sets it back to 0 before it
 * drains, so each burst of sends costs one such message.
 */
export const SLOT_OUTBOX_SIGNALLED = 11;
/** 1 while the guest's `send` waits for room in the outbox: the controller wakes it after a drain. */
export const SLOT_OUTBOX_WAITING = 12;
/**
 * Hibernation (`_hibernate.ts`): after how many milliseconds of one
 * blocking wait the guest hands its state over and its worker ends; 0 never.
 * Written by the controller (0 while something needs its memory in place).
 */
export const SLOT_HIBERNATE_MS = 13;
/**
 * A standby activated with `gated` (a post-copy or hybrid destination)
 * takes up its WASI state at once, then waits on this slot before it
 * rewinds: the controller drops the chunks still at the source meanwhile,
 * and opens it (a {@link Gate}).
 */
export const SLOT_GATE = 14;
/**
 * A link lane (`_lane_writer.ts`, `src/node/_link_lanes.ts`): a
 * {@link LaneState}, written by the controller (offer, revoke) and the
 * worker (it takes an offer).
 */
export const SLOT_LANE_STATE = 15;
/** 1 while the worker's `send` looks at the lane or writes to it: the controller closes a lane's socket only once it has seen 0 after a revoke. */
export const SLOT_LANE_BUSY = 16;
/** The lane's generation: a new one is a new socket and new keys. */
export const SLOT_LANE_GEN = 17;
/** The worker's socket (a duplicate the controller made) to the receiver's node. */
export const SLOT_LANE_FD = 18;
/** The outbox position (bytes taken so far) at the offer: every record written since then to the leased pid counts toward its numbers. */
export const SLOT_LANE_MARK = 19;
/** The number of the last message to the leased pid among those the controller took before the offer: low and high 32 bits. */
export const SLOT_LANE_BASE_LO = 20;
export const SLOT_LANE_BASE_HI = 21;
/** Deliveries the worker wrote on the lane whose answers the controller has not had yet. */
export const SLOT_LANE_IN_FLIGHT = 22;
/** The generation of a lane the worker could not write to (0: none): the controller drops it. */
export const SLOT_LANE_BROKEN = 23;
/** Bytes of the leased pid, in the lane area. */
export const SLOT_LANE_PID_LEN = 24;
/**
 * A net lane (`_net_lane_writer.ts`, `src/node/_net_lanes.ts`): a
 * {@link LaneState}, written by the controller (offer, revoke) and the
 * worker (it takes an offer). The worker writes its connections' outgoing
 * bytes to the process's home on it.
 */
export const SLOT_NET_LANE_STATE = 25;
/** 1 while the worker's `write` looks at the net lane or writes to it (as {@link SLOT_LANE_BUSY}). */
export const SLOT_NET_LANE_BUSY = 26;
/** The net lane's generation: a new one is a new socket and a new key. */
export const SLOT_NET_LANE_GEN = 27;
/** The worker's socket to the home (a duplicate the controller made). */
export const SLOT_NET_LANE_FD = 28;
/** The generation of a net lane the worker could not write to, or would not take (0: none): the controller drops it. */
export const SLOT_NET_LANE_BROKEN = 29;
/** Number of Int32 slots. */
export const CONTROL_SLOTS = 30;
/** Byte offset of the lane area in the control buffer: the record key (32 bytes), then the leased pid. */
export const LANE_AREA_OFFSET = CONTROL_SLOTS * 4;
/** Bytes of the lane's record key. */
export const LANE_KEY_BYTES = 32;
/** Bytes of the lane area: the key and a pid of at most 255 bytes. */
export const LANE_AREA_BYTES = LANE_KEY_BYTES + 256;
/** Byte offset of the net lane's record key in the control buffer, after the lane area. */
export const NET_LANE_KEY_OFFSET = LANE_AREA_OFFSET + LANE_AREA_BYTES;

/**
 * States of {@link SLOT_LANE_STATE}. `offered`: the controller wrote a lease
 * (pid, base, mark, socket, key); `active`: the worker took it and numbers
 * its messages to that pid itself, writing them on the lane.
 */
export const LaneState = { none: 0, offered: 1, active: 2 } as const;
/** Deliveries on a lane at most whose answers are outstanding; past it the worker's messages go through its node. */
export const LANE_IN_FLIGHT_MAX = 16;

/**
 * States of {@link SLOT_GATE}. `waiting`: the worker has taken up the state
 * and waits at the gate, still closed. `dropped`: the move failed and the
 * worker is being stopped; it rewinds nothing.
 */
export const Gate = { closed: 0, open: 1, dropped: 2, waiting: 3 } as const;

/** The most a guest is throttled: it always keeps some of its time. */
export const THROTTLE_PCT_MAX = 95;

/** Running time between two holds of a throttled guest: short enough to spread the holds, long next to a poll. */
export const THROTTLE_SLICE_MS = 5;

/** States of {@link SLOT_MIGRATE}. */
export const MigrateSlot = { idle: 0, requested: 1, done: 2 } as const;

/** Undelivered messages a process may have before its `send` blocks. */
export const OUTBOX_MAX = 256;

/**
 * Requests the controller can make of a running guest. `halt`: stop at the
 * next host call or poll without acting on anything (the guest's state may be
 * wrong: post-copy lost its pages); the controller ends the process.
 */
export const Request = { none: 0, suspend: 1, halt: 2 } as const;

/** Bytes of the inbox ring (`_inbox.ts`). */
export const INBOX_RING_BYTES = 256 * 1024;
/** Bytes of the outbox ring (`_inbox.ts`): several of the largest messages, and many small ones per drain. */
export const OUTBOX_RING_BYTES = 256 * 1024;

/** Mailbox mark: the stream ended; no more data will come. */
export const STDIN_EOF = -1;
/** Mailbox mark: the guest captured its input; the controller keeps what it holds. */
export const STDIN_CLOSED = -2;

/**
 * Size of the stdin mailbox. Bounded so a process that never reads its input
 * cannot make its worker hold an unbounded amount of it.
 */
export const STDIN_MAILBOX_BYTES = 64 * 1024;

/**
 * Shared buffers of one process that live as long as it does. Its message
 * rings ({@link allocateRings}) and connection slots (`_net_area.ts`) are
 * apart: a hibernated guest needs neither while they are empty (or it has
 * no sockets), and together they are 99 % of the bytes.
 */
export interface ControlBuffers {
  control: SharedArrayBuffer;
  stdin: SharedArrayBuffer;
  /** CPU use and the pause flag (`_usage.ts`). */
  usage: SharedArrayBuffer;
}

/** Allocates the shared buffers for one process. */
export function allocateControl(): ControlBuffers {
  return {
    control: new SharedArrayBuffer(NET_LANE_KEY_OFFSET + LANE_KEY_BYTES),
    stdin: new SharedArrayBuffer(STDIN_MAILBOX_BYTES),
    usage: new SharedArrayBuffer(USAGE_BYTES),
  };
}

/**
 * The inbox ring, then the outbox ring (`_inbox.ts`), in one buffer. Their
 * positions are counters in the control block, so an empty pair can be
 * dropped and a fresh (zeroed) one put in its place.
 */
export function allocateRings(): SharedArrayBuffer {
  return new SharedArrayBuffer(INBOX_RING_BYTES + OUTBOX_RING_BYTES);
}

/** Bumps the wake counter and wakes a blocked guest. */
export function wake(control: Int32Array): void {
  Atomics.add(control, SLOT_WAKE, 1);
  Atomics.notify(control, SLOT_WAKE);
}
