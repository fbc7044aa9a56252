/**
 * Tickets of post-copy's page channel on a node with TLS (docs/cluster.md,
 * "Page channel"). The source opens the channel as a mutual-TLS upgrade, so
 * only a member node gets this far; the destination answers with a grant —
 * a one-time ticket and two fresh keys, confidential inside TLS — and
 * closes. The source then opens a plain TCP connection to the same address,
 * starting with PAGE_DATA_MAGIC and the ticket; the ticket says which
 * session it is for, and the keys seal every frame after it, so the native
 * threads read the socket itself with no TLS between them and the source.
 *
 * A ticket is spent on first use, dies after TICKET_TTL_MS, and a newer
 * grant for the same session voids the older: at most one door per session.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import type net from "node:net";
import { RECORD_KEY_BYTES, type PageChannelKeys } from "../memory/mod.js";

/** First bytes of a page-data connection (its first byte can never be a TLS handshake's 0x16). */
export const PAGE_DATA_MAGIC = Buffer.from("FRYPGS01", "latin1");
/** Bytes of a ticket: 256 bits, not guessable. */
export const TICKET_BYTES = 32;
/** What a page-data connection sends before anything else: the magic, then the ticket. */
export const PAGE_DATA_HELLO_BYTES = PAGE_DATA_MAGIC.length + TICKET_BYTES;
/** Bytes of a grant on the TLS upgrade: ticket, key to the destination, key to the source. */
export const PAGE_GRANT_BYTES = TICKET_BYTES + 2 * RECORD_KEY_BYTES;
/** How long a ticket lives: the source dials as soon as it has it; a ticket held longer is not the source's. */
export const TICKET_TTL_MS = 10_000;
/** Tickets pending at most (the oldest go first): one per session being connected, and a node takes few at once. */
export const TICKETS_MAX = 256;

/** What the destination hands the source over TLS. */
export interface PageGrant {
  ticket: Buffer;
  keys: PageChannelKeys;
}

/** The grant's bytes on the wire: ticket (32), key to the destination (32), key to the source (32). */
export function encodeGrant(g: PageGrant): Buffer {
  return Buffer.concat([g.ticket, g.keys.to_destination, g.keys.to_source]);
}

/** A grant from its bytes (exactly PAGE_GRANT_BYTES). */
export function decodeGrant(bytes: Uint8Array): PageGrant {
  if (bytes.length !== PAGE_GRANT_BYTES) throw new RangeError(`a page-channel grant has ${PAGE_GRANT_BYTES} bytes, not ${bytes.length}`);
  const b = Buffer.from(bytes);
  return {
    ticket: b.subarray(0, TICKET_BYTES),
    keys: { to_destination: b.subarray(TICKET_BYTES, TICKET_BYTES + RECORD_KEY_BYTES), to_source: b.subarray(TICKET_BYTES + RECORD_KEY_BYTES) },
  };
}

interface Pending {
  session: string;
  ticket: Buffer;
  keys: PageChannelKeys;
  expires_ms: number;
}

/** A node's pending page-channel tickets (in memory: a restart voids them, and the source asks again). */
export class PageTickets {
  readonly #pending: Pending[] = [];
  readonly #now: () => number;
  readonly #ttl_ms: number;

  constructor(options: { now?: () => number; ttl_ms?: number } = {}) {
    this.#now = options.now ?? (() => performance.now());
    this.#ttl_ms = options.ttl_ms ?? TICKET_TTL_MS;
  }

  /** Tickets pending now. */
  get size(): number {
    this.#sweep();
    return this.#pending.length;
  }

  /** A fresh ticket and keys for one connection of `session`; any earlier ticket of the session is void. */
  issue(session: string): PageGrant {
    this.#sweep();
    for (let i = this.#pending.length - 1; i >= 0; i -= 1) if ((this.#pending[i] as Pending).session === session) this.#pending.splice(i, 1);
    const grant: PageGrant = { ticket: randomBytes(TICKET_BYTES), keys: { to_destination: randomBytes(RECORD_KEY_BYTES), to_source: randomBytes(RECORD_KEY_BYTES) } };
    this.#pending.push({ session, ...grant, expires_ms: this.#now() + this.#ttl_ms });
    if (this.#pending.length > TICKETS_MAX) this.#pending.shift();
    return grant;
  }

  /**
   * Spends a ticket: its session and keys, once, while it lives; null for
   * any other bytes. Every pending ticket is compared in full, so the time
   * taken says nothing of how close a guess came.
   */
  redeem(ticket: Uint8Array): { session: string; keys: PageChannelKeys } | null {
    this.#sweep();
    if (ticket.length !== TICKET_BYTES) return null;
    let found = -1;
    for (let i = 0; i < this.#pending.length; i += 1) {
      if (timingSafeEqual((this.#pending[i] as Pending).ticket, ticket)) found = i;
    }
    if (found < 0) return null;
    const [p] = this.#pending.splice(found, 1) as [Pending];
    return { session: p.session, keys: p.keys };
  }

  #sweep(): void {
    const now = this.#now();
    for (let i = this.#pending.length - 1; i >= 0; i -= 1) if ((this.#pending[i] as Pending).expires_ms <= now) this.#pending.splice(i, 1);
  }
}

/**
 * Doors of one kind opened by ticket (link lanes, net lanes): what each
 * ticket was issued for, and the connections served through them, at most
 * `served_max` at once.
 */
export class TicketDoors<T> {
  readonly #tickets = new PageTickets();
  readonly #granted = new Map<string, T>();
  readonly #open = new Set<net.Socket>();
  readonly #kind: string;
  readonly #served_max: number;
  #next = 0;

  /** `kind` names the sessions of its tickets. */
  constructor(kind: string, served_max: number) {
    this.#kind = kind;
    this.#served_max = served_max;
  }

  /** Whether `served_max` connections are served now: no door opens until one closes. */
  get full(): boolean {
    return this.#open.size >= this.#served_max;
  }

  get served_max(): number {
    return this.#served_max;
  }

  /** A ticket and fresh keys for one connection, for `what` (the caller checks {@link full} first). */
  issue(what: T): PageGrant {
    const session = `${this.#kind}-${(this.#next += 1)}`;
    const grant = this.#tickets.issue(session);
    this.#granted.set(session, what);
    // The tickets keep only the newest TICKETS_MAX: what the ones they let go were for is forgotten with them.
    if (this.#granted.size > TICKETS_MAX) this.#granted.delete(this.#granted.keys().next().value as string);
    return grant;
  }

  /**
   * Takes a connection that presented `ticket`: null if the ticket is none
   * of these doors'; "spent" if it was, but what it was for is forgotten
   * (the socket is destroyed); else what it was issued for and its keys,
   * the socket answered `go` and counted as served until it closes.
   */
  accept(socket: net.Socket, ticket: Buffer, go: Buffer): { what: T; keys: PageChannelKeys } | "spent" | null {
    const redeemed = this.#tickets.redeem(ticket);
    if (redeemed === null) return null;
    const what = this.#granted.get(redeemed.session);
    this.#granted.delete(redeemed.session);
    if (what === undefined) {
      socket.destroy();
      return "spent";
    }
    socket.setNoDelay(true);
    socket.write(go);
    this.#open.add(socket);
    socket.once("close", () => this.#open.delete(socket));
    return { what, keys: redeemed.keys };
  }

  /** Connections served now. */
  get size(): number {
    return this.#open.size;
  }

  /** Closes every connection served (the node stops). */
  close(): void {
    for (const s of this.#open) s.destroy();
    this.#open.clear();
  }
}
