/**
 * One process's end of its links (issue 5; docs/links.md): what it sent that
 * is not delivered yet, what was delivered to it that it has not read, and
 * the sequence numbers that make delivery exactly-once and in per-sender
 * order across any number of moves. All of it is plain data that travels in
 * the process's image (`LinkState`); the transport between nodes is given.
 *
 * Every message a process sends to pid P gets the next number of the pair
 * (sender, P). The receiving end accepts only the next number it expects from
 * that sender, so a batch sent twice (a retry, a forward racing a move) is
 * taken once, and a gap is never filled out of order: the sender keeps each
 * message until the receiver's answer covers its number, and sends again.
 *
 * Across a failover (docs/links.md): a checkpointed receiver may be resumed
 * from its last checkpoint, which has taken fewer messages than it had. So
 * once it has a stored checkpoint, its answers also say how many of each
 * sender's messages a stored checkpoint covers (`durable`), and the sender
 * keeps every message it took past that number (`kept`). When a resumed
 * receiver answers a lower `upto` than before, the sender sends the kept
 * messages past it again: exactly once and in order across the restore.
 */
import { errorField, logger } from "../log/mod.js";
import type { GuestProcess, InboxMessage, LinkHooks } from "../runtime/mod.js";
import { Errno } from "../wasi/mod.js";

/** Messages accepted for a process beyond its inbox ring before senders are told to wait. */
export const INBOX_QUEUE_MAX = 1024;
/** Messages in one delivery at most. */
export const BATCH_MESSAGES_MAX = 128;
/** Bytes in one delivery at most (a message is at most 64 KiB). */
export const BATCH_BYTES_MAX = 512 * 1024;
/** Longest wait between delivery attempts to a receiver that is busy, moving or unreachable. */
const RETRY_MS_MAX = 200;
/**
 * Deliveries to one receiver on their way at once. Each is answered; more
 * than one keeps the path full while answers travel back (a sender waiting
 * for each answer gets one batch per round trip). Their numbers keep the
 * receiver exact: a batch that arrives after a gap is refused and sent again.
 */
export const BATCHES_IN_FLIGHT_MAX = 8;
/**
 * A sender learns that a checkpointed receiver was resumed from a checkpoint
 * from the answer to its next delivery. With nothing left to send it, what
 * it keeps for that receiver is offered again after this long quiet, and
 * again while it keeps anything: else a sender that waits on the receiver
 * (a request-answer pair) and a receiver that waits on the messages it lost
 * would wait on each other for good.
 */
export const KEPT_REOFFER_MS = 1000;
/**
 * The most a sender keeps for one checkpointed receiver (bytes of messages
 * taken since the receiver's last stored checkpoint). Past it, the sender
 * sends that receiver one message per {@link KEPT_REOFFER_MS}, whose answer
 * says when a stored checkpoint covers what is kept; meanwhile its outbox
 * fills and the guest's `send` blocks, as for a receiver that takes nothing.
 */
export const KEPT_BYTES_MAX = 16 * 1024 * 1024;

/** Traffic from one process to another, as the sender counted it. */
export interface PairStats {
  messages: number;
  bytes: number;
  first_unix_ms: number;
  last_unix_ms: number;
}

/** A process's link state as its image carries it (JSON). */
export interface LinkState {
  version: 1;
  /** Per destination pid: the number the next message gets. */
  next_seq: Record<string, number>;
  /** Per sender pid: the highest number accepted. */
  delivered: Record<string, number>;
  /** Sent, not yet delivered, oldest first (data in base64). */
  outbox: { to: string; seq: number; data: string }[];
  /** Delivered, not yet read, oldest first. */
  inbox: { from: string; data: string }[];
  /** Taken by their receivers but not yet covered by a stored checkpoint of theirs, oldest first (absent: none). */
  kept?: { to: string; seq: number; data: string }[];
  /** Per sender pid: the highest number a stored checkpoint of this process covers (absent: it has none). */
  durable?: Record<string, number>;
  stats: Record<string, PairStats>;
  /** The node the guest asked to move to, while that is under way. */
  migrate_to: string | null;
}

/** Messages on their way, in order. */
export interface Batch {
  from: string;
  messages: { seq: number; data: Uint8Array }[];
}

/** What became of a batch. */
export type DeliverAnswer =
  /**
   * Taken up to `upto` (the rest: the receiver's inbox is full, send again
   * later); a stored checkpoint of the receiver covers up to `durable`
   * (absent: it keeps none, so `upto` is all there is).
   */
  | { kind: "accepted"; upto: number; at: string; durable?: number }
  /** The receiver is being moved, or this node does not know it: try again (ask its home). */
  | { kind: "moving" }
  | { kind: "unknown" }
  /** The receiver has ended: its messages are dropped. */
  | { kind: "gone" };

/** How messages leave a node. */
export interface LinkTransport {
  deliver(to: string, batch: Batch): Promise<DeliverAnswer>;
  /**
   * The answer to delivery `id` (of message `seq`) the process's worker
   * wrote on its lane (docs/links.md, "Lanes"); rejects if it will not come
   * (the lane broke, or no answer in time). Absent: no lanes.
   */
  laneAnswer?(id: number, seq: number): Promise<DeliverAnswer>;
  /** Told of each answer from `to` (after it was acted on); `quiet`: nothing more is on its way to `to`. */
  answered?(to: string, answer: DeliverAnswer, quiet: boolean): void;
}

/** A fresh process's state. */
export function emptyLinkState(): LinkState {
  return { version: 1, next_seq: {}, delivered: {}, outbox: [], inbox: [], stats: {}, migrate_to: null };
}

/** Checks a link state from an image (untrusted input). */
export function parseLinkState(value: unknown): LinkState {
  const v = value as Partial<LinkState> | null;
  const record = (x: unknown): x is Record<string, number> => typeof x === "object" && x !== null && Object.values(x).every((n) => Number.isSafeInteger(n) && (n as number) >= 0);
  if (
    v === null ||
    typeof v !== "object" ||
    v.version !== 1 ||
    !record(v.next_seq) ||
    !record(v.delivered) ||
    !Array.isArray(v.outbox) ||
    !v.outbox.every((m) => typeof m?.to === "string" && Number.isSafeInteger(m.seq) && typeof m.data === "string") ||
    !Array.isArray(v.inbox) ||
    !v.inbox.every((m) => typeof m?.from === "string" && typeof m.data === "string") ||
    typeof v.stats !== "object" ||
    v.stats === null ||
    !(v.migrate_to === null || typeof v.migrate_to === "string") ||
    !(v.kept === undefined || (Array.isArray(v.kept) && v.kept.every((m) => typeof m?.to === "string" && Number.isSafeInteger(m.seq) && typeof m.data === "string"))) ||
    !(v.durable === undefined || record(v.durable))
  ) {
    throw new Error("malformed link state");
  }
  return v as LinkState;
}

interface Outgoing {
  seq: number;
  data: Uint8Array;
}

/** Deliveries to one receiver under way. */
interface Flow {
  /** Batches sent and not answered yet. */
  in_flight: number;
  /** The highest number sent since the last go-back: the next batch starts after it. */
  sent_upto: number;
  /** An answer made no progress: nothing more is sent until those in flight are answered and a wait has passed. */
  stalled: boolean;
  /** A wait before sending again is under way. */
  waiting: boolean;
  wait_ms: number;
}

/** One process's links on the node it runs on. */
export class Endpoint {
  readonly pid: string;
  readonly #transport: LinkTransport;
  readonly #next_seq = new Map<string, number>();
  readonly #delivered = new Map<string, number>();
  readonly #outbox = new Map<string, Outgoing[]>();
  /** Per destination: taken there, not yet covered by its stored checkpoint (sent again if it is resumed from one). */
  readonly #kept = new Map<string, Outgoing[]>();
  /** Per destination: the bytes of its kept messages. */
  readonly #kept_bytes = new Map<string, number>();
  /** Per sender: the highest number a stored checkpoint covers; null until this process has one. */
  #durable: Map<string, number> | null = null;
  /** Per destination: the highest number whose delivery the guest was told of. */
  readonly #counted = new Map<string, number>();
  /** What `delivered` was at the last capture: a checkpoint of it, once stored, covers that much. */
  #captured: Map<string, number> | null = null;
  /** Accepted, not yet in the guest's inbox ring. */
  #queue: InboxMessage[] = [];
  readonly #stats = new Map<string, PairStats>();
  readonly #flows = new Map<string, Flow>();
  /** Destinations sent to since the last microtask checkpoint, to be kicked at it. */
  readonly #kicks = new Set<string>();
  /** Per destination with kept messages and nothing on its way: when they are offered again. */
  readonly #reoffers = new Map<string, NodeJS.Timeout>();
  #proc: GuestProcess | null = null;
  #frozen = false;
  #ended = false;
  #migrate_to: string | null = null;
  #idle: (() => void) | null = null;

  constructor(pid: string, transport: LinkTransport, state: LinkState = emptyLinkState()) {
    this.pid = pid;
    this.#transport = transport;
    this.load(state);
  }

  /** The process bound to this endpoint, once bound. */
  get process(): GuestProcess | null {
    return this.#proc;
  }

  /** Whether `to` is a checkpointed receiver this endpoint keeps messages for: lanes leave those to the node's channel. */
  keeps(to: string): boolean {
    return this.#kept.has(to);
  }

  /** The number of the last message to `to` (0: none yet), if nothing to `to` is waiting or on its way; else null. */
  quietSeq(to: string): number | null {
    const flow = this.#flows.get(to);
    if ((this.#outbox.get(to)?.length ?? 0) > 0 || (flow !== undefined && (flow.in_flight > 0 || flow.waiting))) return null;
    return this.#next_seq.get(to) ?? 0;
  }

  /** What the process's runtime calls (its `ProcessIo.links`); `migrate` asks the node to move it. */
  hooks(migrate: (node: string) => void): LinkHooks {
    return {
      pid: this.pid,
      bind: (proc) => {
        this.#proc = proc;
      },
      send: (to, data, seq = 0, lane = 0) => this.#send(to, data, seq, lane),
      migrate: (node) => {
        this.#migrate_to = node;
        migrate(node);
      },
      room: () => this.#fill(),
    };
  }

  /** Replaces the state with one from an image (before {@link start}). */
  load(state: LinkState): void {
    this.#next_seq.clear();
    for (const [k, v] of Object.entries(state.next_seq)) this.#next_seq.set(k, v);
    this.#delivered.clear();
    for (const [k, v] of Object.entries(state.delivered)) this.#delivered.set(k, v);
    this.#outbox.clear();
    for (const m of state.outbox) this.#outgoing(m.to).push({ seq: m.seq, data: Buffer.from(m.data, "base64") });
    this.#kept.clear();
    this.#kept_bytes.clear();
    for (const m of state.kept ?? []) this.#keptFor(m.to).push({ seq: m.seq, data: Buffer.from(m.data, "base64") });
    for (const [to, list] of this.#kept) this.#kept_bytes.set(to, bytesOf(list));
    this.#durable = state.durable === undefined ? null : new Map(Object.entries(state.durable));
    this.#queue = state.inbox.map((m) => ({ from: m.from, data: Buffer.from(m.data, "base64") }));
    this.#stats.clear();
    for (const [k, v] of Object.entries(state.stats)) this.#stats.set(k, v);
    this.#migrate_to = state.migrate_to;
  }

  /**
   * Starts the links of the bound process on `node`. A restored one (before
   * it runs) gets what was delivered to it, its count of undelivered
   * messages, and the answer to a move it asked for (EAGAIN if it landed
   * elsewhere than it asked). Delivery starts with {@link resume}.
   */
  start(node: string, restored: boolean): void {
    const proc = this.#proc;
    if (proc === null) throw new Error("link endpoint started before its process was bound");
    this.#fill();
    if (restored) proc.setUndelivered(this.#undelivered());
    if (this.#migrate_to !== null) {
      proc.migrateAnswer(this.#migrate_to === node ? 0 : Errno.again);
      this.#migrate_to = null;
    }
  }

  /** The guest asked to move to the node it is on: nothing to do. */
  migrateDone(): void {
    this.#migrate_to = null;
    this.#proc?.migrateAnswer(0);
  }

  /** The guest's own move failed with a WASI errno: it stays here. */
  migrateFailed(errno: number): void {
    this.#migrate_to = null;
    this.#proc?.migrateAnswer(errno);
  }

  /** Messages for this process: takes the next ones in order while its inbox has room. */
  accept(batch: Batch, node: string): DeliverAnswer {
    if (this.#frozen) return { kind: "moving" };
    if (this.#ended) return { kind: "gone" };
    let upto = this.#delivered.get(batch.from) ?? 0;
    for (const m of batch.messages) {
      if (m.seq <= upto) continue; // taken before: a retry
      if (m.seq !== upto + 1 || this.#queue.length >= INBOX_QUEUE_MAX) break;
      this.#queue.push({ from: batch.from, data: m.data });
      upto = m.seq;
    }
    this.#delivered.set(batch.from, upto);
    this.#fill();
    if (this.#durable === null) return { kind: "accepted", upto, at: node };
    return { kind: "accepted", upto, at: node, durable: Math.min(upto, this.#durable.get(batch.from) ?? 0) };
  }

  /**
   * Stops taking and sending messages: the process is stopped for a move and
   * its state is about to be captured. Deliveries under way may still land;
   * their messages stay in the captured outbox and are sent again from the
   * new node (the receiver takes each number once).
   */
  freeze(): void {
    this.#frozen = true;
    // Its worker writes nothing more on a lane: all of it is in the outbox the image takes.
    this.#proc?.revokeLane();
  }

  /** Takes and sends messages (again): the process runs here. */
  resume(): void {
    this.#frozen = false;
    // What was on its way when it froze may not have arrived: all of it goes again (the receiver skips what it has).
    for (const flow of this.#flows.values()) flow.sent_upto = 0;
    for (const to of this.#outbox.keys()) this.#kick(to);
    for (const to of this.#kept.keys()) this.#reofferLater(to);
  }

  /** The state to carry in the image; the process must be stopped (and this frozen). */
  capture(): LinkState {
    const unread = this.#proc?.unreadMessages() ?? [];
    const outbox: LinkState["outbox"] = [];
    for (const [to, list] of this.#outbox) for (const m of list) outbox.push({ to, seq: m.seq, data: Buffer.from(m.data).toString("base64") });
    const kept: LinkState["outbox"] = [];
    for (const [to, list] of this.#kept) for (const m of list) kept.push({ to, seq: m.seq, data: Buffer.from(m.data).toString("base64") });
    this.#captured = new Map(this.#delivered);
    return {
      version: 1,
      next_seq: Object.fromEntries(this.#next_seq),
      delivered: Object.fromEntries(this.#delivered),
      outbox,
      inbox: [...unread, ...this.#queue].map((m) => ({ from: m.from, data: Buffer.from(m.data).toString("base64") })),
      stats: Object.fromEntries(this.#stats),
      migrate_to: this.#migrate_to,
      ...(kept.length > 0 ? { kept } : {}),
      ...(this.#durable !== null ? { durable: Object.fromEntries(this.#durable) } : {}),
    };
  }

  /**
   * A checkpoint of this process, captured by the last {@link capture}, is
   * stored: what it had taken from each sender is durable, and senders may
   * forget those messages.
   */
  checkpointStored(): void {
    if (this.#captured !== null) this.#durable = this.#captured;
    this.#captured = null;
  }

  /**
   * The process ended here: nothing more is taken for it, but what it sent
   * is still delivered. Resolves once its outbox is empty.
   */
  end(): Promise<void> {
    this.#ended = true;
    this.#queue = [];
    if (this.#undelivered() === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#idle = resolve;
    });
  }

  /** What this endpoint holds now, for an operator looking at a stuck link. */
  inspect(): Record<string, unknown> {
    return {
      pid: this.pid,
      frozen: this.#frozen,
      ended: this.#ended,
      queued: this.#queue.length,
      outbox: Object.fromEntries([...this.#outbox].map(([to, l]) => [to, { count: l.length, first_seq: l[0]?.seq ?? null, delivering: this.#flows.get(to)?.in_flight ?? 0 }])),
      next_seq: Object.fromEntries(this.#next_seq),
      delivered: Object.fromEntries(this.#delivered),
      kept: Object.fromEntries([...this.#kept].map(([to, l]) => [to, { count: l.length, first_seq: l[0]?.seq ?? null }])),
      durable: this.#durable === null ? null : Object.fromEntries(this.#durable),
      migrate_to: this.#migrate_to,
    };
  }

  /** Traffic to each destination so far. */
  stats(): Map<string, PairStats> {
    return this.#stats;
  }

  #outgoing(to: string): Outgoing[] {
    let list = this.#outbox.get(to);
    if (list === undefined) {
      list = [];
      this.#outbox.set(to, list);
    }
    return list;
  }

  #keptFor(to: string): Outgoing[] {
    let list = this.#kept.get(to);
    if (list === undefined) {
      list = [];
      this.#kept.set(to, list);
    }
    return list;
  }

  /**
   * A checkpointed receiver's answer: what it took past what its checkpoint
   * covers is kept, what the checkpoint covers is forgotten, and if it took
   * fewer than before (resumed from its checkpoint), the kept messages past
   * what it has are sent again, ahead of the rest.
   */
  #settleKept(to: string, upto: number, durable: number): boolean {
    const kept = this.#keptFor(to);
    const back = kept.filter((m) => m.seq > upto);
    const stay = kept.filter((m) => m.seq > durable && m.seq <= upto);
    // A message offered again comes back after those kept since.
    stay.sort((a, b) => a.seq - b.seq);
    this.#kept.set(to, stay);
    this.#kept_bytes.set(to, bytesOf(stay));
    if (back.length > 0) {
      const list = this.#outgoing(to);
      list.unshift(...back.filter((m) => list.every((o) => o.seq !== m.seq)));
      list.sort((a, b) => a.seq - b.seq);
    }
    if (stay.length === 0) this.#dropKept(to);
    return back.length > 0;
  }

  /** Offers what is kept for `to` again in {@link KEPT_REOFFER_MS}, unless that is due already or nothing is kept. */
  #reofferLater(to: string): void {
    if (this.#reoffers.has(to) || (this.#kept.get(to)?.length ?? 0) === 0) return;
    const timer = setTimeout(() => {
      this.#reoffers.delete(to);
      this.#reoffer(to);
    }, KEPT_REOFFER_MS);
    // An endpoint left behind (its process moved or ended) holds nothing up.
    timer.unref();
    this.#reoffers.set(to, timer);
  }

  /**
   * Sends the oldest message kept for `to` again, if the link to it is
   * quiet: its answer says whether the receiver still has what is kept (kept
   * again, or forgotten if its newest checkpoint covers it) or was resumed
   * without it (all of it is delivered again, in order).
   */
  #reoffer(to: string): void {
    const kept = this.#kept.get(to);
    // Frozen: resume() offers them again. Ended: a sender that ends takes what it kept along (docs/links.md).
    if (kept === undefined || kept.length === 0 || this.#frozen || this.#ended) return;
    // Something is on its way to it: its answer will tell, and the quiet after it offers them again.
    if ((this.#outbox.get(to)?.length ?? 0) > 0 || this.#flows.has(to)) return;
    const [oldest, ...rest] = kept as [Outgoing, ...Outgoing[]];
    if (rest.length === 0) this.#dropKept(to);
    else {
      this.#kept.set(to, rest);
      this.#kept_bytes.set(to, (this.#kept_bytes.get(to) ?? 0) - oldest.data.length);
    }
    this.#outgoing(to).push(oldest);
    this.#kick(to);
  }

  #dropKept(to: string): void {
    this.#kept.delete(to);
    this.#kept_bytes.delete(to);
  }

  /** Whether `to` holds as much kept as it may: it is then sent one message at a time, {@link KEPT_REOFFER_MS} apart. */
  #keptFull(to: string): boolean {
    return (this.#kept_bytes.get(to) ?? 0) >= KEPT_BYTES_MAX;
  }

  #undelivered(): number {
    let n = 0;
    for (const list of this.#outbox.values()) n += list.length;
    return n;
  }

  #send(to: string, data: Uint8Array, numbered: number, lane: number): void {
    const seq = (this.#next_seq.get(to) ?? 0) + 1;
    if (numbered !== 0 && numbered !== seq) {
      // The lease's numbering (`_lane_writer.ts`) and this one always agree; a disagreement is a bug, said loudly.
      logger().error({ pid: this.pid, to, numbered, seq }, "a message numbered on a lane disagrees with its link's numbering");
    }
    this.#next_seq.set(to, seq);
    this.#outgoing(to).push({ seq, data });
    const now = Date.now();
    const s = this.#stats.get(to) ?? { messages: 0, bytes: 0, first_unix_ms: now, last_unix_ms: now };
    s.messages += 1;
    s.bytes += data.length;
    s.last_unix_ms = now;
    this.#stats.set(to, s);
    if (lane !== 0) {
      this.#laneSent(to, seq, lane);
      return;
    }
    // Once the messages sent in this run of the event loop are all queued: they travel together, in as few batches as fit.
    if (this.#kicks.size === 0) queueMicrotask(() => this.#kickQueued());
    this.#kicks.add(to);
  }

  /** Message `seq` to `to` went on the worker's lane as delivery `id`: on its way, answered like any batch of one. */
  #laneSent(to: string, seq: number, id: number): void {
    let flow = this.#flows.get(to);
    if (flow === undefined) {
      flow = { in_flight: 0, sent_upto: 0, stalled: false, waiting: false, wait_ms: 1 };
      this.#flows.set(to, flow);
    }
    flow.in_flight += 1;
    // Only right after what was sent: messages before it not sent yet still go (and it again with them, taken once).
    if (flow.sent_upto === seq - 1) flow.sent_upto = seq;
    const sent = flow;
    const answer = this.#transport.laneAnswer?.(id, seq) ?? Promise.reject(new Error("no lanes here"));
    answer
      .catch((err: unknown): DeliverAnswer => {
        logger().debug({ pid: this.pid, to, err: errorField(err) }, "a delivery on a lane was not answered; it is retried");
        return { kind: "moving" };
      })
      .then((a) => {
        this.#proc?.laneAnswered(1);
        this.#answered(to, sent, seq, a);
      });
  }

  #kickQueued(): void {
    const kicks = [...this.#kicks];
    this.#kicks.clear();
    for (const to of kicks) this.#kick(to);
  }

  /** Moves queued messages into the guest's inbox ring while they fit. */
  #fill(): void {
    const proc = this.#proc;
    if (proc === null) return;
    while (this.#queue.length > 0 && proc.deliver(this.#queue[0]!.from, this.#queue[0]!.data)) this.#queue.shift();
    proc.setBacklog(this.#queue.length > 0);
  }

  /** Sends what is not on its way to `to` yet, while fewer than {@link BATCHES_IN_FLIGHT_MAX} batches are. */
  #kick(to: string): void {
    if (this.#frozen) return;
    const list = this.#outbox.get(to);
    if (list === undefined || list.length === 0) return;
    let flow = this.#flows.get(to);
    if (flow === undefined) {
      flow = { in_flight: 0, sent_upto: 0, stalled: false, waiting: false, wait_ms: 1 };
      this.#flows.set(to, flow);
    }
    if (flow.stalled || flow.waiting) return;
    // The list is in number order and starts at the oldest message not yet answered for.
    let start = 0;
    while (start < list.length && list[start]!.seq <= flow.sent_upto) start += 1;
    const full = this.#keptFull(to);
    while (flow.in_flight < (full ? 1 : BATCHES_IN_FLIGHT_MAX) && start < list.length) {
      const messages: Outgoing[] = [];
      let bytes = 0;
      for (let i = start; i < list.length; i += 1) {
        const m = list[i]!;
        if (messages.length === (full ? 1 : BATCH_MESSAGES_MAX) || (messages.length > 0 && bytes + m.data.length > BATCH_BYTES_MAX)) break;
        messages.push(m);
        bytes += m.data.length;
      }
      start += messages.length;
      const last = messages[messages.length - 1]!.seq;
      flow.sent_upto = last;
      flow.in_flight += 1;
      const sent = flow;
      this.#transport
        .deliver(to, { from: this.pid, messages })
        .catch((err: unknown): DeliverAnswer => {
          // Not delivered: kept in the outbox and sent again (sequence numbers make a repeat harmless).
          logger().debug({ pid: this.pid, to, err: errorField(err) }, "a link delivery failed; it is retried");
          return { kind: "moving" };
        })
        .then((answer) => this.#answered(to, sent, last, answer));
    }
  }

  /** The answer to a batch for `to` whose last message is numbered `last`. */
  #answered(to: string, flow: Flow, last: number, answer: DeliverAnswer): void {
    flow.in_flight -= 1;
    const list = this.#outbox.get(to) ?? [];
    let done = 0;
    if (answer.kind === "accepted") {
      while (done < list.length && list[done]!.seq <= answer.upto) done += 1;
      // Not all of it was taken (a full inbox, or a batch that arrived after a gap): the rest goes again.
      if (answer.upto < last) flow.sent_upto = Math.min(flow.sent_upto, answer.upto);
    } else if (answer.kind === "gone") {
      done = list.length;
      this.#dropKept(to);
    } else {
      flow.sent_upto = 0; // moving, unknown or unreachable: all of it goes again
    }
    const taken = list.splice(0, done);
    // A message sent again after a receiver's restore was counted the first time.
    const first = taken.filter((m) => m.seq > (this.#counted.get(to) ?? 0)).length;
    if (taken.length > 0) this.#counted.set(to, Math.max(this.#counted.get(to) ?? 0, taken[taken.length - 1]!.seq));
    if (first > 0) this.#proc?.delivered(first);
    let again = false;
    if (answer.kind === "accepted" && (answer.durable !== undefined || this.#kept.has(to))) {
      // Taken, but the receiver could be resumed from a checkpoint without them: kept until one covers them.
      const durable = answer.durable ?? answer.upto;
      this.#keptFor(to).push(...taken.filter((m) => m.seq > durable));
      again = this.#settleKept(to, answer.upto, durable);
      if (again) flow.sent_upto = Math.min(flow.sent_upto, answer.upto);
    }
    if (done > 0 || again) {
      flow.stalled = false;
      flow.wait_ms = 1;
    } else {
      flow.stalled = true;
    }
    this.#transport.answered?.(to, answer, list.length === 0 && flow.in_flight === 0 && !flow.waiting);
    if (this.#idle !== null && this.#undelivered() === 0) {
      this.#idle();
      return;
    }
    if (list.length === 0 && flow.in_flight === 0) {
      this.#flows.delete(to);
      this.#reofferLater(to);
      return;
    }
    if (!flow.stalled && this.#keptFull(to) && flow.in_flight === 0 && !flow.waiting) {
      // As much kept as allowed: the next message goes after a while, and its answer says whether a checkpoint covers what is kept now.
      flow.waiting = true;
      setTimeout(() => {
        flow.waiting = false;
        this.#kick(to);
      }, KEPT_REOFFER_MS).unref();
      return;
    }
    if (flow.stalled && flow.in_flight === 0 && !flow.waiting) {
      // Busy, moving, unknown or unreachable: try again, backing off.
      flow.waiting = true;
      setTimeout(() => {
        flow.waiting = false;
        flow.stalled = false;
        this.#kick(to);
      }, flow.wait_ms);
      flow.wait_ms = Math.min(RETRY_MS_MAX, flow.wait_ms * 2);
      return;
    }
    this.#kick(to);
  }
}

function bytesOf(list: readonly Outgoing[]): number {
  let n = 0;
  for (const m of list) n += m.data.length;
  return n;
}
