/**
 * A directory served by another process (`ferry up`'s embedded one), seen
 * through its HTTP API. This file is the protocol — paths, bodies, and the
 * answers checked against their schemas — over a {@link DirectoryTransport}
 * the node supplies (mutual TLS with the cluster's credentials, timeouts),
 * so the directory layer opens no sockets of its own. The server side is
 * `src/node/directory_http.ts`.
 *
 * API (all JSON, under /v1/directory):
 * - `POST /processes` {pid, home} → record; 409 ERR_DIRECTORY_CONFLICT
 * - `GET /processes?runner=&home=` → {processes}; `GET /processes/PID` → {record}
 * - `POST /processes/PID/update` {expect_moves, change} → a CasResult
 * - `POST /leases` {name, address, ttl_ms} → lease; `POST /leases/ID/keepalive`;
 *   `DELETE /leases/ID` (only the lease's node may renew or end it)
 * - `GET /members` → {members}; `GET /watch`: text/event-stream, one change per event
 */
import * as v from "valibot";
import { FerryError } from "../errors.js";
import { errorField, logger } from "../log/mod.js";
import { list, parse, text } from "../validate.js";
import { MemberSchema, ProcessRecordSchema, type CasResult, type Directory, type DirectoryChange, type DirectoryWatcher, type Lease, type Member, type NewProcess, type ProcessChange, type ProcessFilter, type ProcessRecord } from "./types.js";

/** How a remote directory reaches its server. */
export interface DirectoryTransport {
  /** One JSON request; rejects with the server's error code, or ERR_DIRECTORY_UNAVAILABLE when it cannot be reached. */
  request(method: "GET" | "POST" | "DELETE", path: string, body?: unknown): Promise<unknown>;
  /**
   * Opens the event stream at `path`: `onData` gets each event's data, and
   * `onEnd` is called once when the stream ends or fails. Returns the close.
   */
  stream(path: string, onData: (data: string) => void, onEnd: (err: Error | null) => void): () => void;
}

/** An answer that is not what the protocol says: the server is as good as unreachable. */
const ANSWER = { code: "ERR_DIRECTORY_UNAVAILABLE" } as const;

/** How long a broken watch waits before it is opened again. */
const WATCH_RETRY_MS = 500;

/** A record, or none. */
export const RecordAnswerSchema = v.object({ record: v.nullable(ProcessRecordSchema) });
/** Records. */
export const ProcessesAnswerSchema = v.object({ processes: list(ProcessRecordSchema, 10_000_000) });
/** A compare-and-set's answer. */
export const CasAnswerSchema = v.union([
  v.object({ ok: v.literal(true), record: ProcessRecordSchema }),
  v.object({ ok: v.literal(false), reason: v.picklist(["stale", "ended", "missing", "invalid"]), current: v.nullable(ProcessRecordSchema) }),
]);
/** A lease. */
export const LeaseAnswerSchema = v.object({ id: v.pipe(text(40, 1), v.regex(/^\d+$/)), ttl_ms: v.pipe(v.number(), v.integer(), v.minValue(1)) });
/** Members. */
export const MembersAnswerSchema = v.object({ members: list(MemberSchema, 100_000) });
/** One change of the watch stream. */
export const ChangeSchema = v.union([
  v.object({ kind: v.literal("member"), member: MemberSchema, reason: v.nullable(text(4000)) }),
  v.object({ kind: v.literal("process"), record: ProcessRecordSchema }),
]);

/** The client of a served directory. */
export class RemoteDirectory implements Directory {
  readonly kind = "remote" as const;
  readonly #t: DirectoryTransport;
  readonly #what: string;
  readonly #stops = new Set<() => void>();

  /** `what` names the server in errors (its URL). */
  constructor(transport: DirectoryTransport, what: string) {
    this.#t = transport;
    this.#what = what;
  }

  async createProcess(p: NewProcess): Promise<ProcessRecord> {
    return parse(v.object({ record: ProcessRecordSchema }), await this.#t.request("POST", "/v1/directory/processes", p), this.#answer(), ANSWER).record;
  }

  async process(pid: string): Promise<ProcessRecord | null> {
    return parse(RecordAnswerSchema, await this.#t.request("GET", `/v1/directory/processes/${encodeURIComponent(pid)}`), this.#answer(), ANSWER).record;
  }

  async processes(filter?: ProcessFilter): Promise<ProcessRecord[]> {
    const q = new URLSearchParams();
    if (filter?.runner !== undefined) q.set("runner", filter.runner);
    if (filter?.home !== undefined) q.set("home", filter.home);
    const query = q.size === 0 ? "" : `?${q.toString()}`;
    return parse(ProcessesAnswerSchema, await this.#t.request("GET", `/v1/directory/processes${query}`), this.#answer(), ANSWER).processes;
  }

  async updateProcess(pid: string, expect_moves: number, change: ProcessChange): Promise<CasResult> {
    const value = await this.#t.request("POST", `/v1/directory/processes/${encodeURIComponent(pid)}/update`, { expect_moves, change });
    return parse(CasAnswerSchema, value, this.#answer(), ANSWER);
  }

  async grantLease(member: { name: string; address: string }, ttl_ms: number): Promise<Lease> {
    return parse(LeaseAnswerSchema, await this.#t.request("POST", "/v1/directory/leases", { ...member, ttl_ms }), this.#answer(), ANSWER);
  }

  async keepAlive(lease_id: string): Promise<void> {
    await this.#t.request("POST", `/v1/directory/leases/${encodeURIComponent(lease_id)}/keepalive`);
  }

  async revokeLease(lease_id: string): Promise<void> {
    await this.#t.request("DELETE", `/v1/directory/leases/${encodeURIComponent(lease_id)}`);
  }

  async members(): Promise<Member[]> {
    return parse(MembersAnswerSchema, await this.#t.request("GET", "/v1/directory/members"), this.#answer(), ANSWER).members;
  }

  /**
   * Watches the server's stream, opened again after WATCH_RETRY_MS when it
   * breaks. Changes made while it was broken are not replayed: a watcher
   * that must not miss one reads the state again (Membership does, on a timer).
   */
  watch(watcher: DirectoryWatcher): Promise<() => void> {
    let stopped = false;
    let close: (() => void) | null = null;
    let retry: NodeJS.Timeout | null = null;
    const open = (first: (err: Error | null) => void): void => {
      let opened = false;
      close = this.#t.stream(
        "/v1/directory/watch",
        (data) => {
          if (data === "") {
            // The server's first event says it is watching.
            if (!opened) first(null);
            opened = true;
            return;
          }
          let change: DirectoryChange;
          try {
            change = parse(ChangeSchema, JSON.parse(data), this.#answer(), ANSWER);
          } catch (err: unknown) {
            logger().warn({ directory: this.#what, err: errorField(err) }, "the directory sent a change that is not one; skipped");
            return;
          }
          watcher(change);
        },
        (err) => {
          if (!opened) first(err ?? new FerryError("ERR_DIRECTORY_UNAVAILABLE", `the directory at ${this.#what} closed its watch stream`));
          opened = true;
          if (stopped) return;
          logger().warn({ directory: this.#what, err: err === null ? null : errorField(err) }, "the directory's watch stream broke; opening it again");
          // A reopened stream's failure comes back here and is logged above; only the first opening has a caller to tell.
          retry = setTimeout(() => open(() => undefined), WATCH_RETRY_MS);
          retry.unref();
        },
      );
    };
    return new Promise((resolve, reject) => {
      open((err) => {
        if (err !== null) {
          stopped = true;
          close?.();
          reject(err);
          return;
        }
        const stop = (): void => {
          stopped = true;
          if (retry !== null) clearTimeout(retry);
          close?.();
          this.#stops.delete(stop);
        };
        this.#stops.add(stop);
        resolve(stop);
      });
    });
  }

  close(): Promise<void> {
    for (const stop of [...this.#stops]) stop();
    return Promise.resolve();
  }

  #answer(): string {
    return `the directory at ${this.#what}'s answer`;
  }
}
