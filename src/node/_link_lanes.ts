/**
 * Link lanes (docs/links.md, "Lanes"): a process's messages to one pid
 * written by the process's own worker on a connection to the receiver's
 * node, so a message between nodes wakes the receiving node's thread and
 * the receiving guest, and not the sending node's thread first.
 *
 * Opening one (the sender's node, S; the receiver's node, R; nodes with
 * TLS only):
 * 1. S asks R over mutual TLS (`POST /v1/internal/lanes/PID`, PID the
 *    sender): R answers a one-time ticket and two fresh keys, the page
 *    channel's (`_page_tickets.ts`), and remembers which sender they are for.
 * 2. S dials R's address in plain TCP and presents PAGE_DATA_MAGIC and the
 *    ticket (the front sorts it to the lane doors); R answers LANE_GO.
 * 3. S hands the worker a duplicate of the socket and the key of records to
 *    R (`GuestProcess.offerLane`, `src/runtime/_lane_writer.ts`); the
 *    worker writes each DELIVER of one message as a sealed record. R opens
 *    them, takes only deliveries from that sender, and answers each with an
 *    ANSWER in a record sealed the other way, written by R's thread; S's
 *    thread reads them and hands them to the process's endpoint, which
 *    keeps every message until its answer covers it, as for any delivery.
 *
 * Records are the page channel's (`src/memory/page_records.ts`); each
 * holds whole frames, a frame being u32 body length, u8 type (1 DELIVER,
 * 2 ANSWER) and the link channel's body (`_link_frames.ts`).
 */
import type net from "node:net";
import { FerryError } from "../errors.js";
import { errorField, logger } from "../log/mod.js";
import type { DeliverAnswer, Batch } from "../links/mod.js";
import { RecordDirection, RecordOpener, RecordSealer } from "../memory/mod.js";
import { LANE_IN_FLIGHT_MAX } from "../runtime/_control.js";
import type { GuestProcess } from "../runtime/mod.js";
import { LANE_FRAME_HEAD_BYTES, LaneFrame } from "../runtime/_lane_writer.js";
import { awaitGo } from "./_bulk_doors.js";
import { connectTcp } from "./_dialer.js";
import { decodeAnswer, decodeDeliver, encodeAnswer } from "./_link_frames.js";
import { PAGE_DATA_MAGIC, TicketDoors } from "./_page_tickets.js";

/** What a lane door answers once it took a connection: the worker writes records only after it, so none reaches the front's sorting. */
export const LANE_GO = Buffer.from("FRYLNKGO", "latin1");
/** Longest a lane's delivery waits for its answer before it is sent again through the node's channel. */
const LANE_ANSWER_TIMEOUT_MS = 5000;
/** How often a lane takes what its worker sent and looks for deliveries past their time. */
const LANE_SWEEP_MS = 250;
/** Longest wait for a lane's door to answer. */
const LANE_DIAL_MS = 5000;
/**
 * Longest an answer on a lane waits for others to go with it, and how many
 * go together at most: half the deliveries a worker may have unanswered
 * (LANE_IN_FLIGHT_MAX), so a guest streaming on its lane never waits for
 * an answer to be let go.
 */
const LANE_ANSWER_HOLD_MS = 5;
const LANE_ANSWERS_HELD_MAX = LANE_IN_FLIGHT_MAX / 2;
/** Lanes a node serves at most (other nodes' processes writing to it): a socket and a few KiB each. */
export const LANES_SERVED_MAX = 4096;
/** How long after a lease the worker gave back (it had more on their way than a lane takes) none is offered. */
const LANE_BACKOFF_MS = 1000;
/** How often a lane being closed looks again whether its worker is out of `send`. */
const LANE_CLOSE_RETRY_MS = 1;

/** The grant of a lane as R answers it (JSON, base64 fields). */
export interface LaneGrantWire {
  ticket: string;
  to_receiver: string;
  to_sender: string;
}

/** Splits the plaintext of a record into its frames; throws ERR_LINK_PROTOCOL on a malformed one. */
function* frames(plain: Buffer): Generator<{ type: number; body: Buffer }> {
  let at = 0;
  while (at < plain.length) {
    if (plain.length - at < LANE_FRAME_HEAD_BYTES) throw new FerryError("ERR_LINK_PROTOCOL", "a lane record ends inside a frame's head");
    const len = plain.readUInt32LE(at);
    const type = plain.readUInt8(at + 4);
    at += LANE_FRAME_HEAD_BYTES;
    if (len > plain.length - at) throw new FerryError("ERR_LINK_PROTOCOL", "a lane frame runs past its record");
    yield { type, body: plain.subarray(at, at + len) };
    at += len;
  }
}

function frame(type: number, body: Buffer): Buffer {
  const head = Buffer.allocUnsafe(LANE_FRAME_HEAD_BYTES);
  head.writeUInt32LE(body.length, 0);
  head.writeUInt8(type, 4);
  return Buffer.concat([head, body]);
}

interface Pending {
  resolve(a: DeliverAnswer): void;
  reject(e: Error): void;
  deadline_ms: number;
  /** The number of the delivery's message. */
  seq: number;
}

/** What a sender's lane needs of its node. */
export interface SenderLaneOptions {
  /** The receiving node's name. */
  node: string;
  socket: net.Socket;
  /** Keys of the grant: records to R (the worker's), records to S (answers). */
  to_receiver: Uint8Array;
  to_sender: Uint8Array;
  proc: GuestProcess;
  /** Duplicates the socket's descriptor for the worker (the addon's `dupFd`). */
  dup(fd: number): number;
  /** Closes a descriptor the lane made. */
  closeFd(fd: number): void;
}

let generations = 0;

/** S's end of one process's lane to node R: the worker writes, this thread reads the answers. */
export class SenderLane {
  readonly node: string;
  readonly gen: number;
  readonly #socket: net.Socket;
  readonly #fd: number;
  readonly #key: Uint8Array;
  readonly #opener: RecordOpener;
  readonly #proc: GuestProcess;
  readonly #close_fd: (fd: number) => void;
  readonly #pending = new Map<number, Pending>();
  readonly #sweep: NodeJS.Timeout;
  #closed = false;
  /** A lease was offered and not revoked since; once the worker holds none, it gave it back (or declined it). */
  #offered = false;
  #backoff_until = 0;
  /** Deliveries the worker wrote on this lane that their receiver took (tests, benchmarks and `inspect` count them). */
  taken = 0;

  constructor(o: SenderLaneOptions) {
    this.node = o.node;
    generations = generations >= 0x7fff_ffff ? 1 : generations + 1;
    this.gen = generations;
    this.#socket = o.socket;
    this.#proc = o.proc;
    this.#close_fd = o.closeFd;
    const fd = (o.socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (typeof fd !== "number" || fd < 0) throw new FerryError("ERR_PEER_UNREACHABLE", "a lane's socket has no descriptor");
    this.#fd = o.dup(fd);
    this.#key = Buffer.from(o.to_receiver);
    this.#opener = new RecordOpener(o.to_sender, RecordDirection.to_source, { native: true });
    this.#socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    this.#socket.on("error", () => this.close());
    this.#socket.on("close", () => this.close());
    this.#socket.resume();
    this.#sweep = setInterval(() => this.#expire(), LANE_SWEEP_MS).unref();
  }

  /** Whether the lane can take a lease. */
  get open(): boolean {
    return !this.#closed && this.#proc.laneBroken !== this.gen;
  }

  /**
   * Offers the worker the lease for its messages to `to`; `base` as
   * {@link GuestProcess.offerLane} asks it. Not within LANE_BACKOFF_MS of a
   * lease the worker gave back or declined: a guest with more messages on
   * their way than a lane takes streams, and its node's channel, which
   * batches them, carries that better.
   */
  offer(to: string, base: () => number | null): boolean {
    if (!this.open) return false;
    const now = performance.now();
    if (this.#offered && this.#proc.lanePid === null) {
      this.#offered = false;
      this.#backoff_until = now + LANE_BACKOFF_MS;
    }
    if (now < this.#backoff_until) return false;
    this.#offered = this.#proc.offerLane({ gen: this.gen, fd: this.#fd, key: this.#key, to, base });
    return this.#offered;
  }

  /** The node took its lease back (the receiver is elsewhere): that is no reason to wait before offering one again. */
  revoked(): void {
    this.#proc.revokeLane(this.gen);
    this.#offered = false;
  }

  /** The answer to the worker's delivery `id`, of the message numbered `seq`; rejects if it will not come. */
  answer(id: number, seq: number): Promise<DeliverAnswer> {
    // The worker could not write it (the lane broke under it): the lane goes, and this delivery with the rest.
    if (!this.#closed && this.#proc.laneBroken === this.gen) queueMicrotask(() => this.close());
    if (this.#closed) return Promise.reject(new FerryError("ERR_PEER_UNREACHABLE", "the lane closed"));
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, deadline_ms: performance.now() + LANE_ANSWER_TIMEOUT_MS, seq });
    });
  }

  /** Ends the lane: the worker's lease is taken back, deliveries waiting here fail (and go again through the node), and the socket closes. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweep);
    this.#socket.destroy();
    this.#key.fill(0);
    this.#opener.close();
    this.#proc.revokeLane(this.gen);
    // What the worker wrote before the revoke is known first: its deliveries fail with the rest.
    this.#proc.takeSent();
    for (const p of this.#pending.values()) p.reject(new FerryError("ERR_PEER_UNREACHABLE", "the lane closed"));
    this.#pending.clear();
    this.#closeFdWhenIdle();
  }

  /** Closes the worker's descriptor once it is out of `send`: after the revoke, the worker never writes to it again. */
  #closeFdWhenIdle(): void {
    if (this.#proc.laneIdle) {
      // A delivery it wrote just before the revoke fails too.
      this.#proc.takeSent();
      this.#close_fd(this.#fd);
      return;
    }
    setTimeout(() => this.#closeFdWhenIdle(), LANE_CLOSE_RETRY_MS);
  }

  #onData(chunk: Buffer): void {
    let plains: Buffer[];
    try {
      plains = this.#opener.push(chunk);
    } catch (err: unknown) {
      logger().debug({ node: this.node, err: errorField(err) }, "a lane's answers could not be opened; it closes");
      this.close();
      return;
    }
    if (plains.length === 0) return;
    // The deliveries these answer are known once what the worker sent is taken.
    this.#proc.takeSent();
    try {
      for (const plain of plains) {
        for (const f of frames(plain)) {
          if (f.type !== LaneFrame.answer) throw new FerryError("ERR_LINK_PROTOCOL", `unexpected frame type ${f.type} on a lane's answers`);
          const { id, answer } = decodeAnswer(f.body);
          const p = this.#pending.get(id);
          if (p === undefined) continue; // timed out already: sent again through the node
          this.#pending.delete(id);
          if (answer.kind === "accepted" && answer.upto >= p.seq) this.taken += 1;
          p.resolve(answer);
        }
      }
    } catch (err: unknown) {
      logger().debug({ node: this.node, err: errorField(err) }, "a lane's answer was malformed; it closes");
      this.close();
    }
  }

  #expire(): void {
    this.#proc.takeSent();
    if (this.#proc.laneBroken === this.gen) {
      this.close();
      return;
    }
    const now = performance.now();
    for (const [id, p] of this.#pending) {
      if (p.deadline_ms > now) continue;
      this.#pending.delete(id);
      p.reject(new FerryError("ERR_PEER_UNREACHABLE", "no answer on the lane"));
    }
  }
}

/** Dials R's lane door `ticket` at `address`; resolves with the socket once it said LANE_GO, nothing past it read. */
export async function dialLane(address: string, ticket: Uint8Array): Promise<net.Socket> {
  const socket = await connectTcp(address, LANE_DIAL_MS);
  socket.setNoDelay(true);
  socket.write(Buffer.concat([PAGE_DATA_MAGIC, ticket]));
  return await awaitGo(socket, Buffer.alloc(0), address, LANE_GO, "a lane");
}

/** What R does with a delivery from a lane (as from a link channel): its answer. */
export type LaneReceive = (pid: string, batch: Batch, peer: string | null) => Promise<DeliverAnswer>;

/** R's doors for lanes: a ticket and keys per lane asked for, and the sender each is for. */
export class LaneDoors {
  readonly #doors: TicketDoors<{ sender: string; peer: string | null }>;

  constructor(options: { served_max?: number } = {}) {
    this.#doors = new TicketDoors("lane", options.served_max ?? LANES_SERVED_MAX);
  }

  /**
   * A door for a lane from process `sender` of node `peer`: its grant,
   * confidential (sent inside mutual TLS). ERR_QUOTA once LANES_SERVED_MAX
   * lanes (or `served_max`) are served here: the sender's messages then go through its node.
   */
  issue(sender: string, peer: string | null): LaneGrantWire {
    if (this.#doors.full) throw new FerryError("ERR_QUOTA", `this node serves ${this.#doors.served_max} lanes already`);
    const grant = this.#doors.issue({ sender, peer });
    return { ticket: grant.ticket.toString("base64"), to_receiver: Buffer.from(grant.keys.to_destination).toString("base64"), to_sender: Buffer.from(grant.keys.to_source).toString("base64") };
  }

  /** Serves a connection that presented `ticket`, if it is a lane door's; false if not. */
  accept(socket: net.Socket, ticket: Buffer, receive: LaneReceive): boolean {
    const taken = this.#doors.accept(socket, ticket, LANE_GO);
    if (taken === null) return false;
    if (taken !== "spent") new LaneServer(socket, taken.keys.to_destination, taken.keys.to_source, taken.what.sender, taken.what.peer, receive);
    return true;
  }

  /** Lanes served now. */
  get size(): number {
    return this.#doors.size;
  }

  /** Closes every lane served here (the node stops). */
  close(): void {
    this.#doors.close();
  }
}

/**
 * R's side of one lane: opens the worker's records, takes its deliveries,
 * answers each on the lane. A class, not closures made per lane: V8 keeps
 * what it learnt of its code across lanes, and a new lane does not start
 * in the interpreter.
 */
class LaneServer {
  readonly #socket: net.Socket;
  readonly #opener: RecordOpener;
  readonly #sealer: RecordSealer;
  readonly #sender: string;
  readonly #peer: string | null;
  readonly #receive: LaneReceive;
  #answers: Buffer[] = [];
  #flush_queued = false;
  #hold: NodeJS.Timeout | null = null;

  constructor(socket: net.Socket, to_receiver: Uint8Array, to_sender: Uint8Array, sender: string, peer: string | null, receive: LaneReceive) {
    this.#socket = socket;
    this.#opener = new RecordOpener(to_receiver, RecordDirection.to_destination, { native: true });
    this.#sealer = new RecordSealer(to_sender, RecordDirection.to_source);
    this.#sender = sender;
    this.#peer = peer;
    this.#receive = receive;
    socket.on("error", () => socket.destroy());
    socket.once("close", () => {
      if (this.#hold !== null) clearTimeout(this.#hold);
      this.#opener.close();
    });
    socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    socket.resume();
  }

  #onData(chunk: Buffer): void {
    try {
      for (const plain of this.#opener.push(chunk)) {
        for (const f of frames(plain)) {
          if (f.type !== LaneFrame.deliver) throw new FerryError("ERR_LINK_PROTOCOL", `unexpected frame type ${f.type} on a lane`);
          const { id, pid, batch } = decodeDeliver(f.body);
          // A lane carries its own process's messages only.
          if (batch.from !== this.#sender) throw new FerryError("ERR_LINK_PROTOCOL", `a lane granted to ${this.#sender} carried a delivery from ${batch.from}`);
          const last = batch.messages[batch.messages.length - 1]?.seq ?? 0;
          this.#receive(pid, batch, this.#peer).then(
            // One that took less than its delivery goes at once: its sender sends again through its node.
            (a) => this.#answer(id, a, a.kind !== "accepted" || a.upto < last),
            (err: unknown) => {
              logger().debug({ pid, err: errorField(err) }, "a lane's delivery failed here; the sender retries");
              this.#answer(id, { kind: "moving" }, true);
            },
          );
        }
      }
    } catch (err: unknown) {
      logger().debug({ sender: this.#sender, err: errorField(err) }, "a lane was dropped");
      this.#socket.destroy();
    }
  }

  /** Held a little, several to a write: each write wakes the sender's node, which has nothing urgent to do with an answer that took all. */
  #answer(id: number, a: DeliverAnswer, urgent: boolean): void {
    this.#answers.push(frame(LaneFrame.answer, encodeAnswer(id, a)));
    if (this.#flush_queued) return;
    if (urgent || this.#answers.length >= LANE_ANSWERS_HELD_MAX) {
      this.#flush_queued = true;
      setImmediate(() => this.#flush());
      return;
    }
    this.#hold ??= setTimeout(() => this.#flush(), LANE_ANSWER_HOLD_MS).unref();
  }

  #flush(): void {
    this.#flush_queued = false;
    if (this.#hold !== null) clearTimeout(this.#hold);
    this.#hold = null;
    if (this.#answers.length === 0 || this.#socket.destroyed) return;
    const parts = this.#sealer.seal(this.#answers);
    this.#answers = [];
    this.#socket.write(parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts));
  }
}
