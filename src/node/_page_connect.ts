/**
 * The source's side of opening a post-copy page channel (docs/cluster.md,
 * "Page channel"). Without TLS it is the upgraded connection itself. With
 * TLS the upgrade, authenticated both ways, brings a grant (a ticket and two
 * keys); the channel is a second, plain TCP connection to the same address
 * that presents the ticket, its frames sealed with the keys.
 */
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { FerryError } from "../errors.js";
import type { PageChannel } from "../migration/mod.js";
import { connectTcp, nodeNamed, type Dialer } from "./_dialer.js";
import { decodeGrant, PAGE_DATA_MAGIC, PAGE_GRANT_BYTES, type PageGrant } from "./_page_tickets.js";
import { DEMAND_SUFFIX, PAGES_PATH, PAGES_PROTOCOL } from "./_postcopy.js";
import { upgrade } from "./_upgrade.js";

/** Longest wait for the grant once the upgrade is answered (the destination sends it with the answer). */
const GRANT_WAIT_MS = 5_000;
/** Longest wait for the page-data connection to be accepted (the ticket dies 10 s after it was granted). */
const CONNECT_TIMEOUT_MS = 5_000;

/**
 * Opens the page channel of `session` to node `name` at `address` (with
 * `demand`, its demand channel); the page-data connection goes to that same address.
 */
export async function connectPages(dialer: Dialer, address: string, session: string, name: string, demand = false): Promise<PageChannel> {
  const up = await upgrade(dialer, address, `${PAGES_PATH}${session}${demand ? DEMAND_SUFFIX : ""}`, PAGES_PROTOCOL, nodeNamed(name));
  if (dialer.tls === null) return up;
  let grant: PageGrant;
  try {
    grant = decodeGrant(await readGrant(up.socket, up.head, address));
  } finally {
    // The grant is all this connection carries.
    up.socket.destroy();
  }
  let socket: Socket;
  try {
    socket = await connectTcp(address, CONNECT_TIMEOUT_MS);
  } catch (err: unknown) {
    grant.keys.to_destination.fill(0);
    grant.keys.to_source.fill(0);
    throw err;
  }
  socket.write(Buffer.concat([PAGE_DATA_MAGIC, grant.ticket]));
  return { socket, head: new Uint8Array(0), keys: grant.keys };
}

/** Reads exactly the grant from the upgraded connection (`head`: what came with the answer). */
function readGrant(socket: Duplex, head: Uint8Array, address: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let got = Buffer.from(head);
    const finish = (err: Error | null): void => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("close", onEnd);
      socket.off("error", onError);
      if (err !== null) reject(err);
      else resolve(got);
    };
    const bad = (why: string): FerryError => new FerryError("ERR_PEER", `node ${address} ${why} instead of a page-channel grant of ${PAGE_GRANT_BYTES} bytes`);
    const check = (): void => {
      if (got.length > PAGE_GRANT_BYTES) finish(bad(`sent ${got.length} bytes`));
      else if (got.length === PAGE_GRANT_BYTES) finish(null);
    };
    const onData = (chunk: Buffer): void => {
      got = Buffer.concat([got, chunk]);
      check();
    };
    const onEnd = (): void => finish(bad(`closed after ${got.length} bytes`));
    const onError = (err: Error): void => finish(new FerryError("ERR_PEER_UNREACHABLE", `node ${address} broke the page-channel upgrade: ${err.message}`, { cause: err }));
    const timer = setTimeout(() => finish(bad(`sent ${got.length} bytes in ${GRANT_WAIT_MS} ms`)), GRANT_WAIT_MS);
    socket.on("data", onData);
    socket.on("end", onEnd);
    socket.on("close", onEnd);
    socket.on("error", onError);
    check();
  });
}
