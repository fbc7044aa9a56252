/**
 * The listening socket of a node with TLS. One port serves two kinds of
 * connection, told apart by their first bytes: TLS (a handshake record
 * starts with 0x16), handed to the HTTPS server as if it had accepted it;
 * and post-copy's page data (PAGE_DATA_MAGIC and a ticket, `_page_tickets.ts`),
 * handed over once the ticket is in. Anything else is closed unanswered, as
 * is a connection that does not say which it is within `sniff_ms`.
 */
import net from "node:net";
import { PAGE_DATA_HELLO_BYTES, PAGE_DATA_MAGIC } from "./_page_tickets.js";

/** First byte of a TLS handshake record. */
const TLS_HANDSHAKE = 0x16;
/**
 * Longest wait for a connection to say what it is: a TLS client sends its
 * hello at once, and a page-data connection its magic and ticket (whose
 * ticket lives 10 s). A connection that sends nothing holds a socket.
 */
export const SNIFF_MS_DEFAULT = 5_000;

/** Where the front sends each connection. */
export interface FrontRoutes {
  /** A TLS connection, nothing consumed (what was read is put back). */
  tls(socket: net.Socket): void;
  /** A page-data connection: its ticket; nothing past it was read and the socket is paused. */
  pageData(socket: net.Socket, ticket: Buffer): void;
}

/** Options of the front. */
export interface FrontOptions {
  sniff_ms?: number;
}

/** A listening front: listen on `server`. */
export interface Front {
  readonly server: net.Server;
  /** Destroys the connections still being sorted (a node that stops does not wait for them). */
  dropSorting(): void;
}

/** A server that sorts each connection it accepts by its first bytes. */
export function createFront(routes: FrontRoutes, options: FrontOptions = {}): Front {
  const sniff_ms = options.sniff_ms ?? SNIFF_MS_DEFAULT;
  const sorting = new Set<net.Socket>();
  // No delay as the HTTPS server sets it on its own sockets: small answers leave at once.
  const server = net.createServer({ noDelay: true }, (socket) => {
    sorting.add(socket);
    let got: Buffer = Buffer.alloc(0);
    const done = (): void => {
      clearTimeout(timer);
      sorting.delete(socket);
      socket.off("data", onData);
      socket.off("error", onError);
    };
    const drop = (): void => {
      done();
      socket.destroy();
    };
    // A peer that resets while being sorted: nothing was served, nothing to report.
    const onError = (): void => drop();
    const onData = (chunk: Buffer): void => {
      got = got.length === 0 ? chunk : Buffer.concat([got, chunk]);
      if (got[0] === TLS_HANDSHAKE) {
        done();
        socket.pause();
        socket.unshift(got);
        routes.tls(socket);
        return;
      }
      const n = Math.min(got.length, PAGE_DATA_MAGIC.length);
      // Neither TLS nor page data (plain HTTP to a TLS node, a scanner): closed unanswered.
      if (!got.subarray(0, n).equals(PAGE_DATA_MAGIC.subarray(0, n))) return drop();
      if (got.length < PAGE_DATA_HELLO_BYTES) return;
      // The source waits for the destination's HELLO: anything past the ticket is not the source.
      if (got.length > PAGE_DATA_HELLO_BYTES) return drop();
      done();
      socket.pause();
      routes.pageData(socket, got.subarray(PAGE_DATA_MAGIC.length));
    };
    const timer = setTimeout(drop, sniff_ms);
    socket.on("data", onData);
    socket.on("error", onError);
    socket.on("close", () => {
      clearTimeout(timer);
      sorting.delete(socket);
    });
  });
  return {
    server,
    dropSorting() {
      for (const s of sorting) s.destroy();
      sorting.clear();
    },
  };
}
