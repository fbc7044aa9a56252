/**
 * Doors for stop-copy's record connections (docs/cluster.md, "Sealed
 * BULK"). An incoming migration opens one: a one-time ticket and a fresh
 * key, which READY carries to the source. With TLS (inside mutual TLS) the
 * source dials the node's address in plain TCP and presents PAGE_DATA_MAGIC
 * and the ticket, as a post-copy page channel does (the front sorts both by
 * their first bytes); the records are sealed with the key. Without TLS
 * (nodes with no front) it opens an upgrade to BULK_PATH and the ticket;
 * the records are tagged with the key, in the clear. Either way the door
 * answers BULK_GO and hands the socket to the migration. Tickets are
 * `_page_tickets.ts`'s: one use, 10 s, compared in constant time.
 */
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { FerryError } from "../errors.js";
import type { BulkCipher } from "../migration/mod.js";
import { connectTcp, nodeNamed, type Dialer } from "./_dialer.js";
import { PAGE_DATA_MAGIC, PageTickets, TICKET_BYTES } from "./_page_tickets.js";
import { upgrade } from "./_upgrade.js";

/** The upgrade path of a door between nodes without TLS; the ticket follows, base64url. */
export const BULK_PATH = "/v1/internal/bulk/";
/** The upgrade's protocol. */
export const BULK_PROTOCOL = "ferry-bulk/1";

/** What a door answers once it took a connection: the source sends its records only after this, so they never reach the front's sorting. */
export const BULK_GO = Buffer.from("FRYBLKGO", "latin1");

/** One migration's door. */
export interface BulkDoor {
  ticket: Uint8Array;
  /** The key of the records (to the destination). */
  key: Uint8Array;
  /** How the records are protected: sealed with TLS, tagged without. */
  cipher: BulkCipher;
  /** The source's connection, once it came through. */
  socket: Promise<Socket>;
  /** Closes the door (the migration is over): a connection that comes later is dropped; the key is wiped. */
  close(): void;
}

/** A node's open doors. */
export class BulkDoors {
  readonly #tickets = new PageTickets();
  readonly #waiting = new Map<string, (socket: Socket) => void>();
  #next = 0;

  /** Opens a door for one incoming migration, whose records are protected by `cipher`. */
  open(cipher: BulkCipher): BulkDoor {
    const session = `bulk-${(this.#next += 1)}`;
    const grant = this.#tickets.issue(session);
    // One direction only: the source sends records and reads nothing sealed.
    grant.keys.to_source.fill(0);
    let arrived!: (socket: Socket) => void;
    const socket = new Promise<Socket>((resolve) => (arrived = resolve));
    this.#waiting.set(session, arrived);
    return {
      ticket: grant.ticket,
      key: grant.keys.to_destination,
      cipher,
      socket,
      close: () => {
        this.#waiting.delete(session);
        grant.keys.to_destination.fill(0);
      },
    };
  }

  /** Takes a connection that presented `ticket`, if it is one of these doors'; false if the ticket is not one of this node's doors. */
  accept(socket: Socket, ticket: Buffer): boolean {
    const redeemed = this.#tickets.redeem(ticket);
    if (redeemed === null) return false;
    redeemed.keys.to_destination.fill(0);
    redeemed.keys.to_source.fill(0);
    const arrived = this.#waiting.get(redeemed.session);
    this.#waiting.delete(redeemed.session);
    if (arrived === undefined) {
      // Its migration is over already.
      socket.destroy();
      return true;
    }
    socket.write(BULK_GO);
    arrived(socket);
    return true;
  }
}

/** Longest wait for a door to answer BULK_GO (its ticket dies 10 s after READY anyway). */
const DOOR_WAIT_MS = 5_000;

/** Opens the sealed BULK connection to `address` through the door `ticket` names; resolves once the door said BULK_GO. */
export async function dialBulkDoor(address: string, ticket: Uint8Array): Promise<Socket> {
  const socket = await connectTcp(address, DOOR_WAIT_MS);
  socket.write(Buffer.concat([PAGE_DATA_MAGIC, ticket]));
  return await awaitGo(socket, Buffer.alloc(0), address);
}

/** Without TLS: opens the record connection to node `name` at `address` as an upgrade to the door `ticket` names; resolves once the door said BULK_GO. */
export async function dialBulkUpgrade(dialer: Dialer, address: string, name: string, ticket: Uint8Array): Promise<Duplex> {
  const up = await upgrade(dialer, address, `${BULK_PATH}${Buffer.from(ticket).toString("base64url")}`, BULK_PROTOCOL, nodeNamed(name), true);
  return await awaitGo(up.socket, Buffer.from(up.head), address);
}

/**
 * Without TLS: takes an upgrade to BULK_PATH (acceptUpgrade checked the
 * path). Answers 101, and hands the socket to the door its ticket names;
 * anything else is dropped.
 */
export function acceptBulkUpgrade(doors: BulkDoors, url: string, socket: Duplex, head: Buffer): void {
  const ticket = Buffer.from(url.slice(BULK_PATH.length), "base64url");
  // The source sends nothing before BULK_GO: bytes already here are not a source's.
  if (ticket.length !== TICKET_BYTES || head.length !== 0) {
    socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n");
    return;
  }
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: ${BULK_PROTOCOL}\r\nconnection: Upgrade\r\n\r\n`);
  if (!doors.accept(socket as Socket, ticket)) socket.destroy();
}

/**
 * Reads `go` (BULK_GO unless said; `head`: what came already) and resolves
 * with the socket, paused, nothing past it read; `what` names the
 * connection in errors.
 */
export function awaitGo<S extends Duplex>(socket: S, head: Buffer, address: string, go: Buffer = BULK_GO, what = "the sealed page connection"): Promise<S> {
  return new Promise<S>((resolve, reject) => {
    let got = head;
    const finish = (err: Error | null): void => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("close", onClose);
      socket.off("error", onError);
      if (err === null) {
        socket.pause();
        resolve(socket);
      } else {
        socket.destroy();
        reject(err);
      }
    };
    const onData = (chunk: Buffer): void => {
      got = Buffer.concat([got, chunk]);
      if (got.length < go.length) return;
      finish(got.equals(go) ? null : new FerryError("ERR_PEER", `node ${address} answered ${what} with ${got.length} other bytes`));
    };
    const onClose = (): void => finish(new FerryError("ERR_PEER", `node ${address} closed ${what} (its door was closed, or the ticket was not its)`));
    const onError = (err: Error): void => finish(new FerryError("ERR_PEER_UNREACHABLE", `node ${address}: ${err.message}`, { cause: err }));
    const timer = setTimeout(() => finish(new FerryError("ERR_PEER", `node ${address} did not open its door within ${DOOR_WAIT_MS} ms`)), DOOR_WAIT_MS);
    socket.on("data", onData);
    socket.on("close", onClose);
    socket.on("error", onError);
    if (got.length > 0) onData(Buffer.alloc(0));
  });
}
