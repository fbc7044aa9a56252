/**
 * One-time join tokens. `ferry token create` asks a member that holds the
 * cluster CA for a token; `ferry node start --join TOKEN` and `ferry login
 * TOKEN` redeem it there for a certificate. The token carries the member's
 * address and the CA's fingerprint, so the joiner can check it talks to the
 * real cluster before it sends anything, and a secret the member keeps only
 * as a hash, so a token works once and a leaked token store is worth nothing.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { FerryError } from "../errors.js";
import type { Role } from "./pki.js";

/** Prefix of every token: its format's version. */
const TOKEN_PREFIX = "ferry1.";
/** Bytes of a token's secret: 256 bits, not guessable. */
const SECRET_BYTES = 32;
/** Default life of a token. */
export const TOKEN_TTL_MS_DEFAULT = 60 * 60_000;
/** Longest life a token may be given: a join is an act of an operator, not a standing door. */
export const TOKEN_TTL_MS_MAX = 7 * 24 * 60 * 60_000;
/** Unredeemed tokens a member keeps at most (older ones are dropped first). */
const TOKENS_MAX = 1024;
/** Longest token text read. */
const TOKEN_CHARS_MAX = 1024;

/** What a token says. */
export interface JoinToken {
  /** The member to redeem it at, HOST:PORT. */
  address: string;
  /** SHA-256 of the cluster CA certificate, hex. */
  ca_fingerprint: string;
  /** What it makes its holder. */
  role: Role;
  /** The secret, base64url. */
  secret: string;
  /** The only name that may redeem it, if its creator fixed one. */
  name?: string;
}

/** Formats a token as the text a user copies. */
export function formatToken(t: JoinToken): string {
  const body = JSON.stringify({ a: t.address, f: t.ca_fingerprint, r: t.role, s: t.secret, ...(t.name !== undefined ? { n: t.name } : {}) });
  return TOKEN_PREFIX + Buffer.from(body).toString("base64url");
}

/** Parses a token's text; throws ERR_TOKEN when it is not one. */
export function parseToken(text: string): JoinToken {
  const bad = (why: string): FerryError => new FerryError("ERR_TOKEN", `not a Ferry join token (${why}): copy it whole from \`ferry token create\``);
  const trimmed = text.trim();
  if (trimmed.length > TOKEN_CHARS_MAX || !trimmed.startsWith(TOKEN_PREFIX)) throw bad("wrong prefix or length");
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(trimmed.slice(TOKEN_PREFIX.length), "base64url").toString("utf8"));
  } catch {
    // Which byte failed to parse would not help: the fix is the same, to copy the token whole.
    throw bad("not base64url JSON");
  }
  const o = v as Record<string, unknown> | null;
  if (
    o === null ||
    typeof o !== "object" ||
    typeof o["a"] !== "string" ||
    !/^[^\s/]+:\d{1,5}$/.test(o["a"]) ||
    typeof o["f"] !== "string" ||
    !/^[0-9a-f]{64}$/.test(o["f"]) ||
    (o["r"] !== "node" && o["r"] !== "client" && o["r"] !== "scrape") ||
    typeof o["s"] !== "string" ||
    !/^[A-Za-z0-9_-]{43}$/.test(o["s"]) ||
    (o["n"] !== undefined && (typeof o["n"] !== "string" || !/^[A-Za-z0-9_.@-]{1,64}$/.test(o["n"])))
  ) {
    throw bad("missing or malformed fields");
  }
  return { address: o["a"], ca_fingerprint: o["f"], role: o["r"], secret: o["s"], ...(typeof o["n"] === "string" ? { name: o["n"] } : {}) };
}

interface Pending {
  hash: Buffer;
  role: Role;
  /** The name its holder must take, if the creator fixed one. */
  name: string | undefined;
  expires_unix_ms: number;
}

/** A member's unredeemed tokens (in memory: a restart voids them). */
export class TokenStore {
  readonly #pending: Pending[] = [];
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** A new token for `role`, redeemable once within `ttl_ms`. */
  create(role: Role, options: { address: string; ca_fingerprint: string; ttl_ms?: number; name?: string }): { token: string; expires_unix_ms: number } {
    const ttl_ms = options.ttl_ms ?? TOKEN_TTL_MS_DEFAULT;
    if (!Number.isInteger(ttl_ms) || ttl_ms <= 0 || ttl_ms > TOKEN_TTL_MS_MAX) throw new FerryError("ERR_BAD_REQUEST", `a token lives 1 ms to ${TOKEN_TTL_MS_MAX} ms`);
    this.#sweep();
    const secret = randomBytes(SECRET_BYTES).toString("base64url");
    const expires_unix_ms = this.#now() + ttl_ms;
    this.#pending.push({ hash: hash(secret), role, name: options.name, expires_unix_ms });
    if (this.#pending.length > TOKENS_MAX) this.#pending.shift();
    const token = formatToken({ address: options.address, ca_fingerprint: options.ca_fingerprint, role, secret, ...(options.name !== undefined ? { name: options.name } : {}) });
    return { token, expires_unix_ms };
  }

  /**
   * Redeems a secret for `role` and `name`: true once, for a live token of
   * that role whose fixed name (if any) is `name`; the token is gone after.
   */
  redeem(secret: string, role: Role, name: string): void {
    this.#sweep();
    const h = hash(secret);
    const i = this.#pending.findIndex((p) => timingSafeEqual(p.hash, h));
    const found = i < 0 ? undefined : this.#pending[i];
    if (found === undefined || found.role !== role) throw new FerryError("ERR_TOKEN", `this token is unknown, used, expired, or not for a ${role}: ask for a new one (ferry token create)`);
    if (found.name !== undefined && found.name !== name) throw new FerryError("ERR_TOKEN", `this token is for ${found.name}, not ${name}`);
    this.#pending.splice(i, 1);
  }

  #sweep(): void {
    const now = this.#now();
    for (let i = this.#pending.length - 1; i >= 0; i -= 1) if ((this.#pending[i] as Pending).expires_unix_ms <= now) this.#pending.splice(i, 1);
  }
}

function hash(secret: string): Buffer {
  return createHash("sha256").update(secret).digest();
}
