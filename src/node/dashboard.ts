/**
 * The web dashboard a node serves at `/` (docs/operations.md, "Dashboard";
 * docs/trust.md, "The dashboard").
 *
 * - `GET /`, `GET /login`, `GET /assets/NAME`: the page, built into
 *   `dist/web/` by `npm run build`. The same for every cluster, so served to
 *   anyone who reaches the node over TLS; it holds no data.
 * - `POST /dashboard/logins` (client certificate): a one-time login token
 *   for `ferry dashboard`.
 * - `POST /dashboard/session` `{token}`: the page trades the token for a
 *   session cookie; `DELETE /dashboard/session` logs out.
 * - `/dashboard/api/...`: data and actions, for a session cookie (or a
 *   client certificate, `ferry top`): `session`, `overview`, `processes`,
 *   and a short list of control API requests under `/dashboard/api/v1/...`.
 *   Every request but GET needs the session's CSRF token and the page's own
 *   origin.
 * - `GET /dashboard/peer/local` (node certificates): a peer's share.
 *
 * Nothing here runs unless a request comes: no timers, no collection.
 */
import type http from "node:http";
import { readFile } from "node:fs/promises";
import * as v from "valibot";
import { FerryError } from "../errors.js";
import { peerIdentity, type Identity } from "../trust/mod.js";
import type { FerryNode } from "./node.js";
import { readRequest, sendJson } from "./_http.js";
import { DashboardSessions, SESSION_LIFETIME_MS, type SessionView } from "./dashboard_sessions.js";
import { serveOverview, servePeerLocal, serveProcesses } from "./_dashboard_api.js";

/** Where `npm run build` puts the page, next to the compiled sources (`dist/src/node/` → `dist/web/`). */
const WEB_DIR = new URL("../../web/", import.meta.url);
/** Names of the page's files: no slashes, no dots at the start, so no path leaves WEB_DIR. */
const ASSET_NAME = /^[a-z0-9_-]+(\.[a-z0-9]+)+$/;
const CONTENT_TYPES: Record<string, string> = { js: "text/javascript; charset=utf-8", css: "text/css; charset=utf-8", html: "text/html; charset=utf-8", png: "image/png", svg: "image/svg+xml", map: "application/json" };

/**
 * Headers of every dashboard answer: the page runs only its own scripts and
 * styles, talks only to its own node, is never framed (clickjacking), and
 * leaks no URL to anyone.
 */
const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
};

/** The header carrying a session's CSRF token. */
export const CSRF_HEADER = "x-ferry-csrf";

/**
 * The control API requests a dashboard session may make (under
 * `/dashboard/api`), by method: what the page shows and the actions it
 * offers. Not tokens (a browser session must not mint credentials), not
 * runs, not the node-to-node API.
 */
const SESSION_ALLOWED: readonly { method: string; path: RegExp }[] = [
  { method: "GET", path: /^\/v1\/(node|nodes|links|processes)$/ },
  { method: "GET", path: /^\/v1\/events$/ },
  { method: "GET", path: /^\/v1\/processes\/[A-Za-z0-9_]{1,32}-\d{1,15}$/ },
  { method: "POST", path: /^\/v1\/processes\/[A-Za-z0-9_]{1,32}-\d{1,15}\/migrate$/ },
  { method: "DELETE", path: /^\/v1\/processes\/[A-Za-z0-9_]{1,32}-\d{1,15}$/ },
  { method: "POST", path: /^\/v1\/nodes\/[A-Za-z0-9_]{1,32}\/(drain|undrain)$/ },
];

/** `POST /dashboard/session`. */
const LoginSchema = v.object({ token: v.pipe(v.string(), v.maxLength(200)) });

const sessions = new WeakMap<FerryNode, DashboardSessions>();

/** A node's dashboard sessions (made on first use: a node nobody logs in to has none). */
export function dashboardSessions(node: FerryNode): DashboardSessions {
  let s = sessions.get(node);
  if (s === undefined) {
    s = new DashboardSessions();
    sessions.set(node, s);
  }
  return s;
}

/** Whether a path is the dashboard's (served by {@link serveDashboard}, before the control API's checks). */
export function isDashboardPath(pathname: string): boolean {
  return pathname === "/" || pathname === "/login" || pathname.startsWith("/assets/") || pathname === "/dashboard" || pathname.startsWith("/dashboard/");
}

/** How the dashboard hands a request to the control API, acting as `as`. */
export type RouteAs = (req: http.IncomingMessage, res: http.ServerResponse, as: Identity | null) => Promise<void>;

/** Serves one dashboard request; errors are thrown for the caller's error answer. */
export async function serveDashboard(node: FerryNode, url: URL, req: http.IncomingMessage, res: http.ServerResponse, routeAs: RouteAs): Promise<void> {
  for (const [k, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, value);
  const method = req.method ?? "GET";
  const path = url.pathname;
  if (path === "/" || path === "/login") return await serveAsset(res, "index.html", method);
  if (path.startsWith("/assets/")) return await serveAsset(res, path.slice("/assets/".length), method);
  res.setHeader("cache-control", "no-store");
  const peer = node.tls === null ? null : peerIdentity(req.socket);
  if (path === "/dashboard/logins" && method === "POST") {
    // Only a holder of a client certificate may open a browser session: the session acts as that client.
    if (node.tls !== null && peer?.role !== "client") throw new FerryError("ERR_FORBIDDEN", "a dashboard login is given to a client certificate only: run `ferry dashboard`");
    const login = dashboardSessions(node).createLogin({ name: peer?.name ?? "insecure" });
    return sendJson(res, 201, { ...login, node: node.name, address: node.address, path: `/login#${login.token}`, tls: node.tls !== null });
  }
  if (path === "/dashboard/session") return await sessionRoute(node, req, res, method);
  if (path === "/dashboard/peer/local" && method === "GET") {
    if (node.tls !== null && peer?.role !== "node") throw new FerryError("ERR_FORBIDDEN", "/dashboard/peer is for the cluster's nodes only");
    return servePeerLocal(node, url, res);
  }
  if (path.startsWith("/dashboard/api/")) {
    const who = authenticate(node, req, peer, method);
    const rest = path.slice("/dashboard/api".length);
    if (rest === "/session" && method === "GET") {
      return sendJson(res, 200, { node: node.name, user: who.identity?.name ?? null, csrf: who.session?.csrf ?? null, expires_unix_ms: who.session?.expires_unix_ms ?? null, tls: node.tls !== null });
    }
    if (rest === "/overview" && method === "GET") return await serveOverview(node, res);
    if (rest === "/processes" && method === "GET") return await serveProcesses(node, url, res);
    if (!SESSION_ALLOWED.some((a) => a.method === method && a.path.test(rest))) throw new FerryError("ERR_FORBIDDEN", `the dashboard may not ${method} ${rest}`);
    // Actions are worth a line each; the page's polls are not.
    if (who.identity !== null) node.log[method === "GET" ? "debug" : "info"]({ user: who.identity.name, method, path: rest }, `dashboard: ${who.identity.name} ${method} ${rest}`);
    req.url = rest + url.search;
    // The session's secrets stay here: a request the control API forwards to a peer does not carry them.
    delete req.headers["cookie"];
    delete req.headers[CSRF_HEADER];
    return await routeAs(req, res, who.identity);
  }
  throw new FerryError("ERR_NOT_FOUND", `no such path ${method} ${path}`);
}

/** Who makes a dashboard API request: a live session (checked for CSRF on anything but GET), or a client or node certificate. */
function authenticate(node: FerryNode, req: http.IncomingMessage, peer: Identity | null, method: string): { identity: Identity | null; session: SessionView | null } {
  // Without TLS a node authenticates nobody (`--insecure`), and neither does its dashboard.
  if (node.tls === null) return { identity: null, session: null };
  if (peer?.role === "scrape") throw new FerryError("ERR_FORBIDDEN", `scrape ${peer.name} may read GET /metrics only, not the dashboard`);
  if (peer !== null) return { identity: peer, session: null };
  const session = dashboardSessions(node).check(cookieOf(req, cookieName(node)));
  if (session === null) throw new FerryError("ERR_SESSION", "not logged in to this node's dashboard, or the session has ended: run `ferry dashboard` and open the URL it prints");
  if (method !== "GET" && method !== "HEAD") checkCsrf(node, req, session);
  return { identity: { role: "client", name: session.user }, session };
}

/** `POST /dashboard/session` (log in with a token) and `DELETE /dashboard/session` (log out). */
async function sessionRoute(node: FerryNode, req: http.IncomingMessage, res: http.ServerResponse, method: string): Promise<void> {
  const store = dashboardSessions(node);
  const name = cookieName(node);
  if (method === "POST") {
    // A page of another origin must not log a browser in to a session of its choosing.
    checkOrigin(node, req);
    const { token } = await readRequest(req, LoginSchema);
    const { id, session } = store.redeem(token);
    res.setHeader("set-cookie", cookie(node, name, id, Math.floor(SESSION_LIFETIME_MS / 1000)));
    node.log.info({ user: session.user }, `dashboard: ${session.user} logged in`);
    return sendJson(res, 200, { user: session.user, node: node.name, csrf: session.csrf, expires_unix_ms: session.expires_unix_ms });
  }
  if (method === "DELETE") {
    const id = cookieOf(req, name);
    const session = store.check(id);
    if (session !== null) checkCsrf(node, req, session);
    store.end(id);
    res.setHeader("set-cookie", cookie(node, name, "", 0));
    return sendJson(res, 200, { logged_out: true });
  }
  throw new FerryError("ERR_NOT_FOUND", `no ${method} on /dashboard/session`);
}

/** An action of a session: its CSRF token in {@link CSRF_HEADER}, from the node's own origin. */
function checkCsrf(node: FerryNode, req: http.IncomingMessage, session: SessionView): void {
  checkOrigin(node, req);
  const given = req.headers[CSRF_HEADER];
  if (!DashboardSessions.csrfMatches(session, typeof given === "string" ? given : undefined)) {
    throw new FerryError("ERR_CSRF", `a dashboard action needs the session's CSRF token in the ${CSRF_HEADER} header`);
  }
}

/**
 * A browser says where a request comes from (`Origin`, sent on every POST
 * and DELETE); it must be this node's own page, as the browser reached it.
 */
function checkOrigin(node: FerryNode, req: http.IncomingMessage): void {
  const origin = req.headers["origin"];
  const host = req.headers["host"];
  const scheme = node.tls === null ? "http" : "https";
  if (typeof origin !== "string" || typeof host !== "string" || origin !== `${scheme}://${host}`) {
    throw new FerryError("ERR_CSRF", `a dashboard action must come from the dashboard's own page (Origin ${JSON.stringify(origin ?? null)})`);
  }
}

/** The session cookie's name: with TLS, `__Host-` makes the browser insist on Secure, Path=/ and no Domain. */
function cookieName(node: FerryNode): string {
  return node.tls === null ? "ferry_session" : "__Host-ferry_session";
}

function cookie(node: FerryNode, name: string, value: string, max_age_s: number): string {
  return `${name}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${max_age_s}${node.tls === null ? "" : "; Secure"}`;
}

/** A cookie's value from the request's Cookie header. */
export function cookieOf(req: http.IncomingMessage, name: string): string | undefined {
  const header = req.headers["cookie"];
  if (typeof header !== "string") return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

const assets = new Map<string, Buffer>();

/** One file of the built page, read once and kept (they are small, and the same until the node is rebuilt and restarted). */
async function serveAsset(res: http.ServerResponse, name: string, method: string): Promise<void> {
  if (method !== "GET" && method !== "HEAD") throw new FerryError("ERR_NOT_FOUND", `no ${method} on the dashboard's page`);
  if (!ASSET_NAME.test(name)) throw new FerryError("ERR_NOT_FOUND", `no asset ${JSON.stringify(name)}`);
  let bytes = assets.get(name);
  if (bytes === undefined) {
    try {
      bytes = await readFile(new URL(name, WEB_DIR));
    } catch (err: unknown) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      throw new FerryError("ERR_NOT_FOUND", name === "index.html" ? "the dashboard's page is not built here: run `npm run build`" : `no asset ${JSON.stringify(name)}`, { cause: err });
    }
    assets.set(name, bytes);
  }
  const ext = name.slice(name.lastIndexOf(".") + 1);
  res.writeHead(200, { "content-type": CONTENT_TYPES[ext] ?? "application/octet-stream", "content-length": bytes.length, "cache-control": "no-cache" });
  res.end(method === "HEAD" ? undefined : bytes);
}
