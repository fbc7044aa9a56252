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
import { socketPeek, type SocketPeek } from "../memory/mod.js";

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
  /**
   * Looks at a socket's first bytes without reading them (default: the
   * native addon's, where it is built). Null: read them and put them back,
   * which costs TLS connections read throughput afterwards (Node's TLS layer
   * then reads in small pieces).
   */
  peek?: SocketPeek | null;
}

/** Pause before looking again at a connection that has not sent its first bytes yet (after the quick looks). */
const PEEK_RETRY_MS = 1;
/**
 * Looks again on the next turns of the event loop first: a TLS client sends
 * its hello right after connecting, so it is usually there a few microseconds
 * later, and a timer would add a millisecond to every new connection.
 */
const PEEK_QUICK_LOOKS = 32;

/** A listening front: listen on `server`. */
export interface Front {
  readonly server: net.Server;
  /** Destroys the connections still being sorted (a node that stops does not wait for them). */
  dropSorting(): void;
}

/** A server that sorts each connection it accepts by its first bytes. */
export function createFront(routes: FrontRoutes, options: FrontOptions = {}): Front {
  const sniff_ms = options.sniff_ms ?? SNIFF_MS_DEFAULT;
  const peek = options.peek === undefined ? socketPeek() : options.peek;
  const sorting = new Set<net.Socket>();
  // No delay as the HTTPS server sets it on its own sockets: small answers leave at once.
  // Paused: nothing is read before the first bytes say what the connection is.
  const server = net.createServer({ noDelay: true, pauseOnConnect: true }, (socket) => {
    sorting.add(socket);
    let got: Buffer = Buffer.alloc(0);
    let retry: NodeJS.Timeout | undefined;
    let looks = 0;
    const done = (): void => {
      clearTimeout(timer);
      clearTimeout(retry);
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
    socket.on("error", onError);
    const read = (): void => {
      socket.on("data", onData);
      socket.resume();
    };
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (peek === null || typeof fd !== "number" || fd < 0) {
      read();
    } else {
      // A TLS connection goes to the HTTPS server with nothing read; anything else is read here.
      const look = (): void => {
        if (socket.destroyed) return;
        let first: Buffer | null;
        try {
          first = peek(fd, 1);
        } catch {
          // The socket failed under us (reset): nothing was served.
          drop();
          return;
        }
        if (first === null) return drop();
        if (first.length === 0) {
          looks += 1;
          if (looks <= PEEK_QUICK_LOOKS) setImmediate(look);
          else retry = setTimeout(look, PEEK_RETRY_MS);
          return;
        }
        if (first[0] === TLS_HANDSHAKE) {
          done();
          routes.tls(socket);
          return;
        }
        read();
      };
      look();
    }
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
