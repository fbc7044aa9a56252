/**
 * The directory on etcd (`--directory etcd://HOST:PORT,...`), for clusters
 * of several machines, through the `etcd3` client. etcd does the consensus;
 * this file only maps the interface onto it:
 *
 * - `PREFIX/procs/PID`: a process record (JSON). Created with a transaction
 *   that requires the key to be absent; changed by reading it, applying the
 *   compare-and-set rules of `types.ts`, and writing it back in a
 *   transaction that requires the key's mod revision to be the one read, so
 *   no other write can come between (retried when one did).
 * - `PREFIX/members/NAME`: a node's registration (address, lease length), kept.
 * - `PREFIX/alive/NAME`: attached to the node's lease, so etcd deletes it
 *   when the lease runs out or is revoked: that deletion *is* the node's
 *   death, seen by every watcher at once.
 *
 * Leases are etcd's (whole seconds: a lease asked for in milliseconds is
 * rounded up, and etcd may raise it to its own minimum, about 1.5 election
 * timeouts). Watches are one etcd watch on PREFIX with previous values.
 */
import { Etcd3, type IKeyValue } from "etcd3";
import * as v from "valibot";
import { FerryError } from "../errors.js";
import { errorField, logger } from "../log/mod.js";
import { parseJson } from "../validate.js";
import { applyChange, LEASE_TTL_MS_MAX, LEASE_TTL_MS_MIN, matches, newRecord, ProcessRecordSchema, type CasResult, type Directory, type DirectoryWatcher, type Lease, type Member, type NewProcess, type ProcessChange, type ProcessFilter, type ProcessRecord } from "./types.js";
import { HostPort } from "../process_spec.js";
import { integer, text } from "../validate.js";

/** How long one call to etcd may take before the directory is called unavailable. */
export const ETCD_CALL_TIMEOUT_MS = 5000;

/** Compare-and-set attempts lost to concurrent writes of the same record before giving up; each loss means another write succeeded. */
const CAS_ATTEMPTS_MAX = 64;

/** What `alive/NAME` and `members/NAME` hold. */
const RegistrationSchema = v.object({ address: HostPort, ttl_ms: integer(LEASE_TTL_MS_MIN, LEASE_TTL_MS_MAX), lease: v.optional(v.pipe(text(40, 1), v.regex(/^\d+$/))) });

/** Options of an {@link EtcdDirectory}. */
export interface EtcdOptions {
  /** etcd endpoints, HOST:PORT. */
  endpoints: string[];
  /** Keys live under this prefix (default "/ferry/"), so clusters (and tests) can share one etcd. */
  prefix?: string;
  /**
   * TLS to etcd (`etcds://`): the CA that signed etcd's certificate (PEM),
   * and, for etcd's client-certificate authentication, this client's
   * certificate chain and key (PEM). Absent: plain gRPC.
   */
  tls?: { ca_pem: Buffer; cert_pem?: Buffer; key_pem?: Buffer };
}

/** The etcd directory. */
export class EtcdDirectory implements Directory {
  readonly kind = "etcd" as const;
  readonly #client: Etcd3;
  readonly #prefix: string;
  readonly #what: string;
  readonly #stops = new Set<() => void>();

  constructor(options: EtcdOptions) {
    this.#prefix = options.prefix ?? "/ferry/";
    this.#what = `etcd at ${options.endpoints.join(",")}`;
    const tls = options.tls;
    this.#client = new Etcd3({
      hosts: options.endpoints.map((e) => `${tls === undefined ? "http" : "https"}://${e}`),
      ...(tls === undefined ? {} : { credentials: { rootCertificate: tls.ca_pem, ...(tls.cert_pem !== undefined ? { certChain: tls.cert_pem } : {}), ...(tls.key_pem !== undefined ? { privateKey: tls.key_pem } : {}) } }),
      dialTimeout: ETCD_CALL_TIMEOUT_MS,
      // Every call has a deadline: an etcd that does not answer makes the call fail, never hang.
      defaultCallOptions: () => ({ deadline: Date.now() + ETCD_CALL_TIMEOUT_MS }),
    });
  }

  async createProcess(p: NewProcess): Promise<ProcessRecord> {
    const record = newRecord(p, Date.now());
    const key = this.#proc(p.pid);
    const result = await this.#call(() => this.#client.if(key, "Create", "==", 0).then(this.#client.put(key).value(JSON.stringify(record))).commit());
    if (!result.succeeded) throw new FerryError("ERR_DIRECTORY_CONFLICT", `the directory has a record of ${p.pid} already`);
    return record;
  }

  async process(pid: string): Promise<ProcessRecord | null> {
    const value = await this.#call(() => this.#client.get(this.#proc(pid)).string());
    return value === null ? null : this.#record(value);
  }

  async processes(filter?: ProcessFilter): Promise<ProcessRecord[]> {
    const all = await this.#call(() => this.#client.getAll().prefix(`${this.#prefix}procs/`).strings());
    return Object.values(all)
      .map((value) => this.#record(value))
      .filter((r) => matches(r, filter));
  }

  async updateProcess(pid: string, expect_moves: number, change: ProcessChange): Promise<CasResult> {
    const key = this.#proc(pid);
    for (let attempt = 0; attempt < CAS_ATTEMPTS_MAX; attempt += 1) {
      const read = await this.#call(() => this.#client.get(key).exec());
      const kv = read.kvs[0];
      const current = kv === undefined ? null : this.#record(kv.value.toString("utf8"));
      const result = applyChange(current, expect_moves, change, Date.now());
      if (!result.ok || kv === undefined) return result;
      const written = await this.#call(() => this.#client.if(key, "Mod", "==", kv.mod_revision).then(this.#client.put(key).value(JSON.stringify(result.record))).commit());
      if (written.succeeded) return result;
      // Another write came between the read and this one: read again and decide again.
    }
    throw new FerryError("ERR_DIRECTORY_UNAVAILABLE", `${pid}: ${CAS_ATTEMPTS_MAX} compare-and-set attempts in a row lost to other writes of its record in ${this.#what}`);
  }

  async grantLease(member: { name: string; address: string }, ttl_ms: number): Promise<Lease> {
    const granted = await this.#call(() => this.#client.leaseClient.leaseGrant({ TTL: Math.ceil(ttl_ms / 1000), ID: 0 }));
    const id = String(granted.ID);
    const held_ms = Math.max(ttl_ms, Number(granted.TTL) * 1000);
    const alive = this.#key("alive", member.name);
    // The lease of an earlier incarnation of this node goes first, so watchers see it die before this one lives.
    const before = await this.#call(() => this.#client.get(alive).string());
    if (before !== null) {
      const old = v.safeParse(RegistrationSchema, safeJson(before));
      if (old.success && old.output.lease !== undefined && old.output.lease !== id) await this.#revoke(old.output.lease);
    }
    const registration = JSON.stringify({ address: member.address, ttl_ms: held_ms });
    const leased = JSON.stringify({ address: member.address, ttl_ms: held_ms, lease: id });
    await this.#call(() => this.#client.put(this.#key("members", member.name)).value(registration).exec());
    await this.#call(() => this.#client.put(alive).value(leased).lease(id).exec());
    return { id, ttl_ms: held_ms };
  }

  async keepAlive(lease_id: string): Promise<void> {
    const stream = await this.#call(() => this.#client.leaseClient.leaseKeepAlive());
    try {
      const answer = await new Promise<{ TTL: string }>((resolve, reject) => {
        const timer = setTimeout(() => reject(new FerryError("ERR_DIRECTORY_UNAVAILABLE", `${this.#what} did not renew lease ${lease_id} within ${ETCD_CALL_TIMEOUT_MS} ms`)), ETCD_CALL_TIMEOUT_MS);
        stream.on("data", (res: { TTL: string }) => {
          clearTimeout(timer);
          resolve(res);
        });
        stream.on("error", (err: Error) => {
          clearTimeout(timer);
          reject(unavailable(this.#what, err));
        });
        stream.write({ ID: lease_id });
      });
      // etcd answers a TTL of 0 (or less) for a lease it no longer has.
      if (Number(answer.TTL) <= 0) throw new FerryError("ERR_LEASE_EXPIRED", `lease ${lease_id} has run out or was revoked`);
    } finally {
      stream.end();
    }
  }

  async revokeLease(lease_id: string): Promise<void> {
    await this.#revoke(lease_id);
  }

  async members(): Promise<Member[]> {
    const [registered, alive] = await Promise.all([
      this.#call(() => this.#client.getAll().prefix(`${this.#prefix}members/`).strings()),
      this.#call(() => this.#client.getAll().prefix(`${this.#prefix}alive/`).keys()),
    ]);
    const living = new Set(alive.map((k) => k.slice(`${this.#prefix}alive/`.length)));
    const out: Member[] = [];
    for (const [key, value] of Object.entries(registered)) {
      const name = key.slice(`${this.#prefix}members/`.length);
      const reg = v.safeParse(RegistrationSchema, safeJson(value));
      if (!reg.success) continue;
      out.push({ name, address: reg.output.address, ttl_ms: reg.output.ttl_ms, state: living.has(name) ? "alive" : "dead" });
    }
    return out;
  }

  async watch(watcher: DirectoryWatcher): Promise<() => void> {
    const w = this.#client.watch().prefix(this.#prefix).withPreviousKV().watcher();
    const alive = `${this.#prefix}alive/`;
    const procs = `${this.#prefix}procs/`;
    const member = (kv: IKeyValue, state: "alive" | "dead"): void => {
      const name = kv.key.toString("utf8").slice(alive.length);
      const reg = v.safeParse(RegistrationSchema, safeJson(kv.value.toString("utf8")));
      if (!reg.success) return;
      watcher({ kind: "member", member: { name, address: reg.output.address, ttl_ms: reg.output.ttl_ms, state }, reason: state === "dead" ? `the lease of node ${name} ended in etcd (not renewed within ${reg.output.ttl_ms} ms, or revoked)` : null });
    };
    w.on("put", (kv) => {
      const key = kv.key.toString("utf8");
      try {
        if (key.startsWith(alive)) member(kv, "alive");
        else if (key.startsWith(procs)) watcher({ kind: "process", record: this.#record(kv.value.toString("utf8")) });
      } catch (err: unknown) {
        logger().warn({ directory: this.#what, key, err: errorField(err) }, "a directory key that does not hold what it should; skipped");
      }
    });
    w.on("delete", (kv, previous) => {
      if (kv.key.toString("utf8").startsWith(alive) && previous !== undefined) member(previous, "dead");
    });
    w.on("error", (err) => logger().warn({ directory: this.#what, err: errorField(err) }, "the etcd watch failed; the client reconnects it"));
    // etcd3 keeps trying to open a watch for as long as it takes: here it must be open within the call timeout, or fail.
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        w.removeAllListeners("connected");
        w.cancel().catch((err: unknown) => logger().debug({ err: errorField(err) }, "cancelling a watch that never opened failed"));
        reject(new FerryError("ERR_DIRECTORY_UNAVAILABLE", `${this.#what} opened no watch within ${ETCD_CALL_TIMEOUT_MS} ms: is etcd running there, and reachable from here?`));
      }, ETCD_CALL_TIMEOUT_MS);
      w.once("connected", () => {
        clearTimeout(timer);
        resolve();
      });
    });
    const stop = (): void => {
      this.#stops.delete(stop);
      w.cancel().catch((err: unknown) => logger().debug({ err: errorField(err) }, "cancelling an etcd watch failed (the connection is going)"));
    };
    this.#stops.add(stop);
    return stop;
  }

  async close(): Promise<void> {
    for (const stop of [...this.#stops]) stop();
    this.#client.close();
    return Promise.resolve();
  }

  async #revoke(lease_id: string): Promise<void> {
    try {
      await this.#client.leaseClient.leaseRevoke({ ID: lease_id });
    } catch (err: unknown) {
      // A lease that has run out already is what revoking wants.
      if (err instanceof Error && err.name === "EtcdLeaseInvalidError") return;
      throw unavailable(this.#what, err);
    }
  }

  #proc(pid: string): string {
    return this.#key("procs", pid);
  }

  #key(kind: "procs" | "members" | "alive", name: string): string {
    return `${this.#prefix}${kind}/${name}`;
  }

  #record(value: string): ProcessRecord {
    return parseJson(ProcessRecordSchema, value, `a process record in ${this.#what}`, { code: "ERR_DIRECTORY_UNAVAILABLE" });
  }

  async #call<T>(f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (err: unknown) {
      throw unavailable(this.#what, err);
    }
  }
}

function unavailable(what: string, err: unknown): FerryError {
  if (err instanceof FerryError) return err;
  return new FerryError("ERR_DIRECTORY_UNAVAILABLE", `${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    // Not ours (someone else's key under the prefix): the schema check refuses it.
    return null;
  }
}
