/**
 * The destination's side of post-copy on a node: the sessions of processes
 * that run here while some of their pages are still at the source, and the
 * page channel the source opens for each, handed to the native page-serving
 * threads. Without TLS the channel is an HTTP upgrade on the control port,
 * handed over as it is. With TLS the upgrade only grants a ticket and keys
 * (`_page_tickets.ts`); the channel itself is the plain TCP connection that
 * brings the ticket back, its frames sealed with those keys.
 *
 * A session ends one of three ways: every page arrived (commit: the source
 * drops its copy); the process ended here first (the source is told to
 * stop); or the link stayed down for `recover_ms`, and the process is failed
 * with the pages it lost named — never resumed on pages that are not its own.
 */
import { errorField, logger } from "../log/mod.js";
import type http from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { CHUNK_BYTES, describeRanges, RemotePages, type PageChannelKeys, type RemoteEvents } from "../memory/mod.js";
import type { Handover } from "../migration/mod.js";
import type { GuestProcess } from "../runtime/mod.js";
import { encodeGrant, type PageTickets } from "./_page_tickets.js";

/** The upgrade token of the page channel. */
export const PAGES_PROTOCOL = "ferry-pages/1";
/** Path prefix of the page channel; the session follows. */
export const PAGES_PATH = "/v1/internal/pages/";
/** After the session in the path: the demand channel (answers to faults only), not the page channel. */
export const DEMAND_SUFFIX = "/demand";
/** How long a page channel that arrives before its session (the image is still being restored) waits for it. */
const SESSION_WAIT_MS = 30_000;
/** Ended sessions remembered. */
const ENDED_KEPT = 256;

/**
 * A standby's memory registered for post-copy while the source still runs
 * (the offer is prepared): opening a session (userfaultfd, its threads) is
 * then no part of the downtime. Nothing comes from the source until the
 * handover sizes it and drops the chunks it names; until then every fault is
 * a zero page, as in plain memory.
 */
export class PreparedPages {
  readonly #pages: RemotePages;
  #events: RemoteEvents | null = null;
  #taken = false;

  constructor(view: Uint8Array) {
    this.#pages = new RemotePages(view, 0, { down: () => this.#events?.down(), complete: () => this.#events?.complete() });
  }

  /** Writes whole pages sent before the handover (see {@link RemotePages.write}); only until the session is taken. */
  write(memory: Uint8Array, byte_offset: number, data: Uint8Array): void {
    if (this.#taken) throw new Error("prepared pages are written only before they are taken");
    this.#pages.write(memory, byte_offset, data);
  }

  /** Hands the session over to its owner, whose events it tells from now on. */
  take(events: RemoteEvents): RemotePages {
    if (this.#taken) throw new Error("prepared pages are taken once");
    this.#taken = true;
    this.#events = events;
    return this.#pages;
  }

  /** Closes it if no session took it (the landing was dropped); nothing is missing yet, so nothing is zero-filled. */
  close(): void {
    if (this.#taken) return;
    this.#taken = true;
    this.#pages.fail();
    this.#pages.close();
  }
}

/** One process running here with pages still at the source. */
export class IncomingPostCopy {
  readonly session: string;
  readonly pid: string;
  readonly #pages: RemotePages;
  readonly #proc: GuestProcess;
  readonly #recover_ms: number;
  readonly #source: string;
  readonly #sessions: PostCopySessions;
  #timer: NodeJS.Timeout | null = null;
  /** Whether a page channel was ever attached: until one is, the link counts as down. */
  #connected = false;
  #ended = false;
  /** Keeps it from hibernating while pages are missing: hibernating reads its whole memory. */
  readonly #unpin: () => void;

  constructor(
    sessions: PostCopySessions,
    pid: string,
    proc: GuestProcess,
    handover: Handover,
    options: { recover_ms: number; source: string; prepared?: PreparedPages | null },
  ) {
    this.session = handover.session;
    this.pid = pid;
    this.#proc = proc;
    this.#sessions = sessions;
    this.#recover_ms = options.recover_ms;
    this.#source = options.source;
    this.#unpin = proc.pin();
    const events: RemoteEvents = { down: () => this.#down(), complete: () => this.#complete() };
    const prepared = options.prepared ?? null;
    this.#pages = prepared === null ? new RemotePages(new Uint8Array(proc.memory.buffer), handover.remote_bytes, events) : prepared.take(events);
    try {
      if (prepared !== null) this.#pages.resize(handover.remote_bytes);
      for (const [first, count] of handover.missing) this.#pages.drop(first * CHUNK_BYTES, count * CHUNK_BYTES);
    } catch (err: unknown) {
      this.#pages.fail();
      this.#pages.close();
      this.#unpin();
      throw err;
    }
    // Killing it (or stopping the node) must wake threads waiting on pages first.
    proc.beforeTerminate(() => {
      if (!this.#pages.complete) this.#pages.fail();
    });
    void proc.exited.then(() => this.#end());
  }

  /**
   * Takes the session's page channels: those that came before (attached
   * now: each a thread of its own and a HELLO to the source) and those to
   * come. Called once, when the missing chunks are dropped: a migration's
   * destination calls it as the process starts to rewind, since a fault
   * meanwhile waits only for this, and the rewind reads nothing missing.
   */
  open(): void {
    this.#sessions.add(this);
    if (this.#pages.complete) this.#complete();
    // None yet (the source's attempts failed, or it opens one only now): that is a link down too, and if the source dies before one comes, nothing else would ever end the wait.
    else if (!this.#connected) this.#down();
  }

  /** The process runs: what its drops set aside is freed now, off this thread. */
  settle(): void {
    if (!this.#ended) this.#pages.settle();
  }

  /** Hands a page channel (or with `demand` the demand channel) the source opened to the native threads, sealed with `keys` when given. */
  attach(socket: Duplex, keys?: PageChannelKeys, demand = false): void {
    if (this.#ended) {
      socket.destroy();
      return;
    }
    if (demand) {
      // Its loss costs time, never a page: the page channel is what recover_ms watches.
      this.#pages.attach(socket, keys, { demand: true });
      return;
    }
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#pages.attach(socket, keys);
    this.#connected = true;
  }

  #down(): void {
    if (this.#ended || this.#timer !== null) return;
    // Not come yet is the usual case of a post-copy whose stop was quicker than the channel's handshake: not worth a line.
    if (this.#connected) logger().info({ pid: this.pid, source: this.#source }, `the post-copy page channel of ${this.pid} is down; it is lost unless the source comes back within ${(this.#recover_ms / 1000).toFixed(1)} s`);
    this.#timer = setTimeout(() => void this.#lose(), this.#recover_ms);
    this.#timer.unref();
  }

  async #lose(): Promise<void> {
    if (this.#ended || this.#pages.complete) return;
    this.#proc.beforeTerminate(null);
    // Told to halt first: the zero pages that wake its threads are never acted on.
    this.#proc.halt();
    const lost = this.#pages.fail();
    const message = `post-copy from ${this.#source} broke and did not recover within ${(this.#recover_ms / 1000).toFixed(1)} s; ${describeRanges(lost)} never arrived`;
    logger().warn({ pid: this.pid, source: this.#source }, message);
    await this.#proc.terminate({ kind: "lost", message });
  }

  #complete(): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#proc.beforeTerminate(null);
    this.#pages.close();
    this.#sessions.delete(this);
    this.#unpin();
  }

  /** The process ended here (exit, kill, loss) before every page arrived. */
  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    if (!this.#pages.complete) this.#pages.fail();
    this.#pages.close();
    this.#sessions.delete(this);
    this.#unpin();
  }
}

/** What a page channel is handed to once its upgrade (or its ticket) is accepted. */
interface PageTarget {
  readonly pid: string;
  attach(socket: Duplex, keys?: PageChannelKeys, demand?: boolean): void;
}

/**
 * A session the offer named, expected here before the HANDOVER: its page
 * channel's handshake is done while the source still runs the process, and
 * the channel waits here until the session is set up, then goes to it
 * (`IncomingPostCopy`), before the process runs. Nothing is read from the
 * channel meanwhile: the source sends nothing until the destination's HELLO.
 */
export class PendingPageSession implements PageTarget {
  readonly session: string;
  readonly pid: string;
  readonly #sessions: PostCopySessions;
  #queued: { socket: Duplex; keys: PageChannelKeys | undefined; demand: boolean }[] = [];
  /** The session once set up: a channel found here before then (a wait resolved earlier) goes on to it. */
  #bound: IncomingPostCopy | null = null;
  #closed = false;

  constructor(sessions: PostCopySessions, session: string, pid: string) {
    this.#sessions = sessions;
    this.session = session;
    this.pid = pid;
  }

  attach(socket: Duplex, keys?: PageChannelKeys, demand = false): void {
    if (this.#bound !== null) {
      this.#bound.attach(socket, keys, demand);
      return;
    }
    if (this.#closed) {
      socket.destroy();
      return;
    }
    socket.on("error", () => undefined);
    // The caller wipes its keys once this returns.
    const copy = keys === undefined ? undefined : { to_destination: Buffer.from(keys.to_destination), to_source: Buffer.from(keys.to_source) };
    this.#queued.push({ socket, keys: copy, demand });
  }

  /** The session is set up: the channels that came meanwhile go to it, in order. */
  bind(target: IncomingPostCopy): void {
    if (this.#closed) return;
    this.#bound = target;
    this.#closed = true;
    for (const q of this.#queued.splice(0)) {
      attachOrDrop(target, q.socket, q.keys, q.demand);
      wipe(q.keys);
    }
  }

  /** The migration failed before the HANDOVER: the channels that came are closed, and a later one is turned away. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const q of this.#queued.splice(0)) {
      q.socket.destroy();
      wipe(q.keys);
    }
    this.#sessions.forget(this);
  }
}

function wipe(keys: PageChannelKeys | undefined): void {
  keys?.to_destination.fill(0);
  keys?.to_source.fill(0);
}

/** The node's post-copy sessions, by session and by pid. */
export class PostCopySessions {
  readonly #sessions = new Map<string, IncomingPostCopy>();
  /** Sessions offers named, not set up yet. */
  readonly #pending = new Map<string, PendingPageSession>();
  readonly #waiting = new Map<string, ((s: PageTarget | null) => void)[]>();
  /** Sessions that ended lately: a late page channel is turned away at once. */
  readonly #ended = new Set<string>();
  /** The node is stopping: no session is set up any more, so none is waited for. */
  #closed = false;

  /**
   * The node is stopping: a page channel waiting for its session is turned
   * away now, and so is any that comes later. (One held for its 30 s would
   * hold the node's listener, which closes only once every connection has.)
   */
  close(): void {
    this.#closed = true;
    const waiting = [...this.#waiting.values()].flat();
    this.#waiting.clear();
    for (const resolve of waiting) resolve(null);
    for (const p of [...this.#pending.values()]) p.close();
  }

  /**
   * A session an offer named for process `pid`: its page channel is taken
   * from now on and waits for the session. Null when the name is in use here
   * (or was lately), or the node is stopping: the channel then waits for the
   * HANDOVER, as without a name.
   */
  expect(session: string, pid: string): PendingPageSession | null {
    if (this.#closed || this.#sessions.has(session) || this.#pending.has(session) || this.#ended.has(session)) return null;
    const pending = new PendingPageSession(this, session, pid);
    this.#pending.set(session, pending);
    for (const resolve of this.#waiting.get(session) ?? []) resolve(pending);
    this.#waiting.delete(session);
    return pending;
  }

  /** A pending session closed: no channel goes to it any more. */
  forget(p: PendingPageSession): void {
    if (this.#pending.get(p.session) !== p) return;
    this.#pending.delete(p.session);
    this.#ended.add(p.session);
    if (this.#ended.size > ENDED_KEPT) this.#ended.delete(this.#ended.values().next().value as string);
  }

  add(s: IncomingPostCopy): void {
    this.#sessions.set(s.session, s);
    const pending = this.#pending.get(s.session);
    this.#pending.delete(s.session);
    pending?.bind(s);
    for (const resolve of this.#waiting.get(s.session) ?? []) resolve(s);
    this.#waiting.delete(s.session);
  }

  delete(s: IncomingPostCopy): void {
    if (this.#sessions.get(s.session) === s) this.#sessions.delete(s.session);
    this.#ended.add(s.session);
    if (this.#ended.size > ENDED_KEPT) this.#ended.delete(this.#ended.values().next().value as string);
  }

  /** A session being served now, or one an offer named that is not set up yet. */
  get(session: string): PageTarget | undefined {
    return this.#sessions.get(session) ?? this.#pending.get(session);
  }

  /** The session of a process still receiving pages here. */
  forPid(pid: string): IncomingPostCopy | undefined {
    for (const s of this.#sessions.values()) if (s.pid === pid) return s;
    return undefined;
  }

  /** The session (or the offer that named it), waiting up to `timeout_ms` for it. */
  wait(session: string, timeout_ms: number): Promise<PageTarget | null> {
    const now = this.get(session);
    if (now !== undefined) return Promise.resolve(now);
    if (this.#ended.has(session) || this.#closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      const list = this.#waiting.get(session) ?? [];
      const timer = setTimeout(() => {
        const left = (this.#waiting.get(session) ?? []).filter((f) => f !== done);
        if (left.length === 0) this.#waiting.delete(session);
        else this.#waiting.set(session, left);
        resolve(null);
      }, timeout_ms);
      const done = (s: PageTarget | null): void => {
        clearTimeout(timer);
        resolve(s);
      };
      list.push(done);
      this.#waiting.set(session, list);
    });
  }
}

/**
 * Accepts a page channel's upgrade on the control server. Without TLS
 * (`tickets` null) the upgraded socket is the channel and goes to its
 * session. With TLS the answer carries a grant (`_page_tickets.ts`) and the
 * connection closes: the channel is the page-data connection that follows.
 */
export function acceptPages(sessions: PostCopySessions, tickets: PageTickets | null, req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
  const { session, demand } = channelOf((req.url ?? "").slice(PAGES_PATH.length));
  if ((req.headers.upgrade ?? "").toLowerCase() !== PAGES_PROTOCOL || head.length > 0) {
    socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n");
    return;
  }
  // A source that gives up resets the connection; its session's own timers say what that means.
  socket.on("error", () => undefined);
  void sessions.wait(session, SESSION_WAIT_MS).then((s) => {
    if (s === null) {
      socket.end("HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
      return;
    }
    const answer = `HTTP/1.1 101 Switching Protocols\r\nupgrade: ${PAGES_PROTOCOL}\r\nconnection: Upgrade\r\n\r\n`;
    if (tickets !== null) {
      // The ticket is bound to the channel (page or demand), so each has its own and one never voids the other's.
      const grant = encodeGrant(tickets.issue(`${session}${demand ? DEMAND_SUFFIX : ""}`));
      socket.end(Buffer.concat([Buffer.from(answer, "latin1"), grant]), () => grant.fill(0));
      return;
    }
    // The answer must be out before the socket changes hands.
    socket.write(answer, (err) => {
      if (err) {
        socket.destroy();
        return;
      }
      attachOrDrop(s, socket, undefined, demand);
    });
  });
}

/** The session and the channel a page path (or a ticket's binding) names. */
function channelOf(name: string): { session: string; demand: boolean } {
  return name.endsWith(DEMAND_SUFFIX) ? { session: name.slice(0, -DEMAND_SUFFIX.length), demand: true } : { session: name, demand: false };
}

/**
 * Takes a page-data connection the front sorted out (node with TLS): the
 * ticket must be live, and its session still served here; anything else is
 * closed unanswered, and the source, if it is one, asks for a new ticket.
 */
export function acceptPageData(sessions: PostCopySessions, tickets: PageTickets, socket: Socket, ticket: Buffer): void {
  const redeemed = tickets.redeem(ticket);
  const channel = redeemed === null ? null : channelOf(redeemed.session);
  const s = channel === null ? undefined : sessions.get(channel.session);
  if (redeemed === null || channel === null || s === undefined) {
    socket.destroy();
    return;
  }
  attachOrDrop(s, socket, redeemed.keys, channel.demand);
  redeemed.keys.to_destination.fill(0);
  redeemed.keys.to_source.fill(0);
}

function attachOrDrop(s: PageTarget, socket: Duplex, keys?: PageChannelKeys, demand = false): void {
  try {
    s.attach(socket, keys, demand);
  } catch (err: unknown) {
    // The socket is destroyed either way; the session waits for the source's next channel.
    logger().info({ pid: s.pid, err: errorField(err) }, "a post-copy page channel could not be attached; waiting for the source's next one");
    socket.destroy();
  }
}
