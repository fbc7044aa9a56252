/**
 * The dashboard's logins (docs/trust.md, "The dashboard"). A browser cannot
 * present the cluster's client certificate, so a member who can (`ferry
 * dashboard`, with its client certificate) asks a node for a one-time login
 * token; the page trades that token once for a session: an HttpOnly cookie
 * that names the session, and a CSRF token the page sends back with every
 * action. The node keeps only SHA-256 hashes of tokens and session ids, in
 * memory: a restart logs everyone out, and a dump of the store opens nothing.
 *
 * Nothing here runs on a timer: expired entries are dropped when the store is
 * next used, so a node whose dashboard nobody watches spends nothing on it.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { FerryError } from "../errors.js";

/** Life of a login token: long enough to click the printed URL, short enough that one found later in a scrollback is spent. */
export const LOGIN_TOKEN_TTL_MS = 2 * 60_000;
/** A session unused for this long ends (the page polls every few seconds while it is open). */
export const SESSION_IDLE_MS = 30 * 60_000;
/** A session ends this long after login however busy: a day's work, then `ferry dashboard` again. */
export const SESSION_LIFETIME_MS = 12 * 60 * 60_000;
/** Unredeemed login tokens a node keeps at most (the oldest goes first): each is one `ferry dashboard` run. */
export const LOGIN_TOKENS_MAX = 64;
/** Live sessions a node keeps at most (the least recently used goes first): each is a browser tab's login. */
export const SESSIONS_MAX = 64;
/** Bytes of every secret (token, session id, CSRF token): 256 bits, not guessable. */
const SECRET_BYTES = 32;
/** Prefix of a login token's text: says what it is, and its format's version. */
const LOGIN_PREFIX = "fdl1.";
/** What a login token or session id looks like: the prefix (tokens) and 43 base64url characters. */
const SECRET_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/** Who a session acts for: the client whose certificate asked for its login token. */
export interface SessionUser {
  /** The client's name (its certificate's); the dashboard's actions act as this client. */
  name: string;
}

/** A live session, as the page may learn it. */
export interface SessionView {
  user: string;
  /** Sent back in the `x-ferry-csrf` header of every action. */
  csrf: string;
  created_unix_ms: number;
  expires_unix_ms: number;
}

interface PendingLogin {
  hash: Buffer;
  user: string;
  expires_unix_ms: number;
}

interface Session {
  user: string;
  csrf: string;
  created_unix_ms: number;
  last_used_unix_ms: number;
}

/** A node's dashboard logins: tokens not yet redeemed, and live sessions. */
export class DashboardSessions {
  readonly #now: () => number;
  readonly #logins: PendingLogin[] = [];
  /** Session id hash (hex) → session; a Map keeps insertion order, refreshed on use, so the first is the least recently used. */
  readonly #sessions = new Map<string, Session>();

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** A new login token for `user`, redeemable once within {@link LOGIN_TOKEN_TTL_MS}. */
  createLogin(user: SessionUser): { token: string; expires_unix_ms: number } {
    this.#sweep();
    const secret = randomBytes(SECRET_BYTES).toString("base64url");
    const expires_unix_ms = this.#now() + LOGIN_TOKEN_TTL_MS;
    this.#logins.push({ hash: hashOf(secret), user: user.name, expires_unix_ms });
    if (this.#logins.length > LOGIN_TOKENS_MAX) this.#logins.shift();
    return { token: LOGIN_PREFIX + secret, expires_unix_ms };
  }

  /**
   * Redeems a login token for a new session: its id (the cookie's value) and
   * what the page may know of it. ERR_SESSION if the token is malformed,
   * unknown, used or expired; the token is spent either way once found.
   */
  redeem(token: string): { id: string; session: SessionView } {
    this.#sweep();
    const secret = token.startsWith(LOGIN_PREFIX) ? token.slice(LOGIN_PREFIX.length) : "";
    if (!SECRET_PATTERN.test(secret)) throw new FerryError("ERR_SESSION", "not a dashboard login token: run `ferry dashboard` and open the URL it prints");
    const h = hashOf(secret);
    const i = this.#logins.findIndex((l) => timingSafeEqual(l.hash, h));
    const login = i < 0 ? undefined : this.#logins[i];
    if (login === undefined) throw new FerryError("ERR_SESSION", "this login token is unknown, used or expired (each works once, for 2 minutes): run `ferry dashboard` again");
    this.#logins.splice(i, 1);
    const id = randomBytes(SECRET_BYTES).toString("base64url");
    const now = this.#now();
    const session: Session = { user: login.user, csrf: randomBytes(SECRET_BYTES).toString("base64url"), created_unix_ms: now, last_used_unix_ms: now };
    this.#sessions.set(hashOf(id).toString("hex"), session);
    if (this.#sessions.size > SESSIONS_MAX) this.#sessions.delete(this.#sessions.keys().next().value as string);
    return { id, session: view(session) };
  }

  /** The live session a cookie names, marked used now; null if there is none (unknown, expired, malformed). */
  check(id: string | undefined): SessionView | null {
    if (id === undefined || !SECRET_PATTERN.test(id)) return null;
    this.#sweep();
    const key = hashOf(id).toString("hex");
    const session = this.#sessions.get(key);
    if (session === undefined) return null;
    session.last_used_unix_ms = this.#now();
    // Moved to the end: the store drops the least recently used first.
    this.#sessions.delete(key);
    this.#sessions.set(key, session);
    return view(session);
  }

  /** Whether `given` is the CSRF token of `session`, compared in constant time. */
  static csrfMatches(session: SessionView, given: string | undefined): boolean {
    if (given === undefined) return false;
    const a = Buffer.from(session.csrf);
    const b = Buffer.from(given);
    return a.length === b.length && timingSafeEqual(a, b);
  }

  /** Ends the session a cookie names (logout); nothing if there is none. */
  end(id: string | undefined): void {
    if (id === undefined || !SECRET_PATTERN.test(id)) return;
    this.#sessions.delete(hashOf(id).toString("hex"));
  }

  /** Live sessions and pending login tokens (for tests and the node's own view). */
  get counts(): { sessions: number; logins: number } {
    this.#sweep();
    return { sessions: this.#sessions.size, logins: this.#logins.length };
  }

  #sweep(): void {
    const now = this.#now();
    for (let i = this.#logins.length - 1; i >= 0; i -= 1) if ((this.#logins[i] as PendingLogin).expires_unix_ms <= now) this.#logins.splice(i, 1);
    for (const [key, s] of this.#sessions) if (expiresAt(s) <= now) this.#sessions.delete(key);
  }
}

function expiresAt(s: Session): number {
  return Math.min(s.last_used_unix_ms + SESSION_IDLE_MS, s.created_unix_ms + SESSION_LIFETIME_MS);
}

function view(s: Session): SessionView {
  return { user: s.user, csrf: s.csrf, created_unix_ms: s.created_unix_ms, expires_unix_ms: expiresAt(s) };
}

function hashOf(secret: string): Buffer {
  return createHash("sha256").update(secret).digest();
}
