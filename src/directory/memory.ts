/**
 * The directory in one process's memory: the unit tests' backend, and the
 * core of the embedded one (`embedded.ts` adds a file, `serve.ts` serves it
 * to the nodes of `ferry up`). Every change is one synchronous step of this
 * process, so compare-and-set needs no lock. Leases run out on a timer per
 * lease, armed again on each renewal: a member is declared dead only once a
 * whole `ttl_ms` has passed since its last renewal reached here.
 */
import { FerryError } from "../errors.js";
import { errorField, logger } from "../log/mod.js";
import { applyChange, matches, newRecord, type CasResult, type Directory, type DirectoryChange, type DirectoryWatcher, type Lease, type Member, type NewProcess, type ProcessChange, type ProcessFilter, type ProcessRecord } from "./types.js";

/** What a backend built on this one saves: every record and member (leases are not: they die with the process that times them). */
export interface MemorySnapshot {
  processes: ProcessRecord[];
  members: Member[];
}

/** Options of a {@link MemoryDirectory}. */
export interface MemoryDirectoryOptions {
  /** What it starts with (members in it are all dead: no lease outlives its timer). */
  snapshot?: MemorySnapshot;
  /** Called after every change, synchronously, with the whole state (the embedded backend writes its file here). */
  persist?: (snapshot: MemorySnapshot) => void;
  kind?: "memory" | "embedded";
}

interface HeldLease {
  id: string;
  name: string;
  ttl_ms: number;
  timer: NodeJS.Timeout;
  /** When it runs out (`performance.now()`): the timer fires no earlier than the loop's cached time allows, which on a busy loop is before this. */
  expires_ms: number;
}

/** The in-memory directory. */
export class MemoryDirectory implements Directory {
  readonly kind: "memory" | "embedded";
  readonly #processes = new Map<string, ProcessRecord>();
  readonly #members = new Map<string, Member>();
  readonly #leases = new Map<string, HeldLease>();
  /** The lease each alive member holds, by name. */
  readonly #held = new Map<string, string>();
  readonly #watchers = new Set<DirectoryWatcher>();
  readonly #persist: ((snapshot: MemorySnapshot) => void) | undefined;
  #next_lease = 1;
  #closed = false;

  constructor(options: MemoryDirectoryOptions = {}) {
    this.kind = options.kind ?? "memory";
    this.#persist = options.persist;
    for (const p of options.snapshot?.processes ?? []) this.#processes.set(p.pid, p);
    for (const m of options.snapshot?.members ?? []) this.#members.set(m.name, { ...m, state: "dead" });
  }

  createProcess(p: NewProcess): Promise<ProcessRecord> {
    if (this.#processes.has(p.pid)) return Promise.reject(new FerryError("ERR_DIRECTORY_CONFLICT", `the directory has a record of ${p.pid} already`));
    const record = newRecord(p, Date.now());
    this.#processes.set(p.pid, record);
    this.#changed({ kind: "process", record });
    return Promise.resolve({ ...record });
  }

  process(pid: string): Promise<ProcessRecord | null> {
    const r = this.#processes.get(pid);
    return Promise.resolve(r === undefined ? null : { ...r });
  }

  processes(filter?: ProcessFilter): Promise<ProcessRecord[]> {
    return Promise.resolve([...this.#processes.values()].filter((r) => matches(r, filter)).map((r) => ({ ...r })));
  }

  updateProcess(pid: string, expect_moves: number, change: ProcessChange): Promise<CasResult> {
    const result = applyChange(this.#processes.get(pid) ?? null, expect_moves, change, Date.now());
    if (result.ok) {
      this.#processes.set(pid, result.record);
      this.#changed({ kind: "process", record: result.record });
      return Promise.resolve({ ok: true, record: { ...result.record } });
    }
    return Promise.resolve(result);
  }

  grantLease(member: { name: string; address: string }, ttl_ms: number): Promise<Lease> {
    if (this.#closed) return Promise.reject(new FerryError("ERR_DIRECTORY_UNAVAILABLE", "the directory is closed"));
    const old = this.#held.get(member.name);
    if (old !== undefined) this.#end(old, `node ${member.name} took a new lease (it restarted)`);
    const id = String(this.#next_lease);
    this.#next_lease += 1;
    this.#leases.set(id, { id, name: member.name, ttl_ms, timer: this.#timer(id, ttl_ms), expires_ms: performance.now() + ttl_ms });
    this.#held.set(member.name, id);
    const alive: Member = { name: member.name, address: member.address, state: "alive", ttl_ms };
    this.#members.set(member.name, alive);
    this.#changed({ kind: "member", member: alive, reason: null });
    return Promise.resolve({ id, ttl_ms });
  }

  keepAlive(lease_id: string): Promise<void> {
    const lease = this.#leases.get(lease_id);
    if (lease === undefined) return Promise.reject(new FerryError("ERR_LEASE_EXPIRED", `lease ${lease_id} has run out or was revoked`));
    clearTimeout(lease.timer);
    lease.timer = this.#timer(lease_id, lease.ttl_ms);
    lease.expires_ms = performance.now() + lease.ttl_ms;
    return Promise.resolve();
  }

  revokeLease(lease_id: string): Promise<void> {
    const lease = this.#leases.get(lease_id);
    if (lease !== undefined) this.#end(lease_id, `node ${lease.name} left (its lease was revoked)`);
    return Promise.resolve();
  }

  /** The node that holds lease `lease_id`, if it is held (a server checks that only it renews or ends it). */
  leaseHolder(lease_id: string): string | undefined {
    return this.#leases.get(lease_id)?.name;
  }

  members(): Promise<Member[]> {
    return Promise.resolve([...this.#members.values()].map((m) => ({ ...m })));
  }

  watch(watcher: DirectoryWatcher): Promise<() => void> {
    this.#watchers.add(watcher);
    return Promise.resolve(() => void this.#watchers.delete(watcher));
  }

  /** Stops every lease timer (no member is declared dead after this) and every watcher. */
  close(): Promise<void> {
    this.#closed = true;
    for (const lease of this.#leases.values()) clearTimeout(lease.timer);
    this.#leases.clear();
    this.#watchers.clear();
    return Promise.resolve();
  }

  #timer(lease_id: string, ttl_ms: number): NodeJS.Timeout {
    const timer = setTimeout(() => {
      const lease = this.#leases.get(lease_id);
      if (lease === undefined) return;
      // A timer counts from the event loop's time as of its last turn, which a busy turn leaves behind: never end a lease before its time.
      const left_ms = lease.expires_ms - performance.now();
      if (left_ms > 0) lease.timer = this.#timer(lease_id, Math.ceil(left_ms));
      else this.#end(lease_id, `node ${lease.name} did not renew its lease within ${lease.ttl_ms} ms`);
    }, ttl_ms);
    // A lease alone does not keep a process alive.
    timer.unref();
    return timer;
  }

  /** Ends lease `lease_id`: its member is dead, and watchers are told why. */
  #end(lease_id: string, reason: string): void {
    const lease = this.#leases.get(lease_id);
    if (lease === undefined) return;
    clearTimeout(lease.timer);
    this.#leases.delete(lease_id);
    if (this.#held.get(lease.name) !== lease_id) return;
    this.#held.delete(lease.name);
    const member = this.#members.get(lease.name);
    if (member === undefined) return;
    const dead: Member = { ...member, state: "dead" };
    this.#members.set(lease.name, dead);
    this.#changed({ kind: "member", member: dead, reason });
  }

  #changed(change: DirectoryChange): void {
    if (this.#persist !== undefined) {
      this.#persist({ processes: [...this.#processes.values()], members: [...this.#members.values()] });
    }
    for (const w of this.#watchers) {
      try {
        w(change);
      } catch (err: unknown) {
        // One watcher's fault must not keep the change from the others.
        logger().error({ err: errorField(err) }, "a directory watcher failed");
      }
    }
  }
}
