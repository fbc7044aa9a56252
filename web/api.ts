/**
 * The page's client of its node: JSON over the dashboard's API, with the
 * session cookie (sent by the browser, never seen by this code) and, on
 * every action, the session's CSRF token.
 */
import type { NodeDown, NodeStats as NodeUp, ProcessPage, ProcessRow } from "../src/node/dashboard_rows.js";

export type { ProcessPage, ProcessRow };

/** One node as `GET /dashboard/api/overview` lists it: its figures, or that it does not answer. */
export type NodeStats = NodeUp | NodeDown;

/** `GET /dashboard/api/overview`. */
export interface Overview {
  node: string;
  time_unix_ms: number;
  nodes: NodeStats[];
}

/** `GET /dashboard/api/session`. */
export interface Session {
  node: string;
  user: string | null;
  csrf: string | null;
  expires_unix_ms: number | null;
}

/** One pair of `GET /v1/links`. */
export interface LinkPair {
  from: string;
  to: string;
  messages: number;
  bytes: number;
  messages_per_s: number;
  bytes_per_s: number;
}

/** An event of `GET /v1/events` (the fields the page reads). */
export interface ClusterEvent {
  type: string;
  node: string;
  seq: number;
  time_unix_ms: number;
  pid?: string;
  to?: string;
  strategy?: string;
  phase?: string;
  round?: number;
  bytes?: number;
  memory_bytes?: number;
  /** `migration.phase` at a pre-copy round's end, from the second. */
  dirty_bytes_per_s?: number;
  total_ms?: number;
  downtime_ms?: number;
  code?: string;
  message?: string;
  peer?: string | null;
  reason?: string;
}

/** An answer that was an error: the API's code and message. */
export class ApiError extends Error {
  readonly code: string;
  readonly status: number;

  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = "ApiError";
    this.code = code;
    this.status = status;
  }
}

let csrf: string | null = null;

/** The CSRF token actions carry (learned at login or from the session). */
export function setCsrf(token: string | null): void {
  csrf = token;
}

/** A JSON request to the node; throws ApiError on an error answer. */
export async function api<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && csrf !== null) headers["x-ferry-csrf"] = csrf;
  const res = await fetch(path, { method, headers, credentials: "same-origin", cache: "no-store", ...(signal === undefined ? {} : { signal }), ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const text = await res.text();
  let value: unknown = null;
  try {
    value = text === "" ? null : JSON.parse(text);
  } catch {
    // Not JSON (a proxy's error page): the status says what went wrong.
    value = null;
  }
  if (!res.ok) {
    const err = (value as { error?: { code?: string; message?: string } } | null)?.error;
    throw new ApiError(res.status, err?.code ?? "ERR_HTTP", err?.message ?? `the node answered ${res.status}`);
  }
  return value as T;
}
