/**
 * A node's membership: it holds a lease in the directory and renews it
 * (the heartbeat), and it follows the other members' states. Failure
 * detection is the lease itself: a node that stops renewing is declared
 * dead by the directory when its lease runs out — within `ttl_ms` of its
 * last renewal, never while it still holds the lease — and every member
 * hears it at once through its watch.
 *
 * The view is kept by the watch, and read again whole every `ttl_ms`
 * (a watch that broke and reopened may have missed a change); each state
 * change is reported once, in order.
 */
import { errorField, logger, type Logger } from "../log/mod.js";
import { FerryError } from "../errors.js";
import type { Directory, Lease, Member, ProcessRecord } from "./types.js";

/** A member's state changed (or was first seen): `reason` says why it died. */
export interface MemberChange {
  member: Member;
  /** The state it had before (null: first seen). */
  was: "alive" | "dead" | null;
  reason: string | null;
}

/** Options of a {@link Membership}. */
export interface MembershipOptions {
  name: string;
  address: string;
  /** The lease: declared dead at most this long after the last renewal. */
  ttl_ms: number;
  log?: Logger;
}

/** How often a lease is renewed, as a share of its length: two renewals may fail before it runs out. */
const RENEWALS_PER_LEASE = 3;

/** Membership of one node. */
export class Membership {
  readonly directory: Directory;
  readonly name: string;
  readonly #address: string;
  readonly #ttl_ms: number;
  readonly #log: Logger;
  readonly #view = new Map<string, Member>();
  readonly #member_listeners = new Set<(change: MemberChange) => void>();
  readonly #process_listeners = new Set<(record: ProcessRecord) => void>();
  #lease: Lease | null = null;
  #heartbeat: NodeJS.Timeout | null = null;
  #resync: NodeJS.Timeout | null = null;
  #unwatch: (() => void) | null = null;
  #stopped = false;
  #renewing = false;
  /**
   * Until when (performance.now() ms) this node's lease surely holds: the
   * moment the last grant or renewal that succeeded was *sent*, plus the
   * lease's length. The directory counts from when it got the request, later
   * than that, so past this moment the cluster may already take this node
   * for dead (fencing: `src/node/_fence.ts`).
   */
  #valid_until_ms = -Infinity;

  constructor(directory: Directory, options: MembershipOptions) {
    this.directory = directory;
    this.name = options.name;
    this.#address = options.address;
    this.#ttl_ms = options.ttl_ms;
    this.#log = options.log ?? logger();
  }

  /** The lease held now (null before start, or while it is being taken again). */
  get lease(): Lease | null {
    return this.#lease;
  }

  /** How long this node's lease surely holds yet, in ms (0 or less: it may have run out, and the cluster may take this node for dead). */
  leaseLeftMs(): number {
    return this.#lease === null ? 0 : this.#valid_until_ms - performance.now();
  }

  /** The length of this node's lease, in ms. */
  get ttl_ms(): number {
    return this.#ttl_ms;
  }

  /** The members as last seen. */
  members(): Member[] {
    return [...this.#view.values()].map((m) => ({ ...m }));
  }

  /** The member called `name`, as last seen. */
  member(name: string): Member | undefined {
    const m = this.#view.get(name);
    return m === undefined ? undefined : { ...m };
  }

  /** Calls `listener` on every change of a member's state; returns the unsubscribe. */
  onMember(listener: (change: MemberChange) => void): () => void {
    this.#member_listeners.add(listener);
    return () => void this.#member_listeners.delete(listener);
  }

  /** Calls `listener` with every process record as it changes; returns the unsubscribe. */
  onProcess(listener: (record: ProcessRecord) => void): () => void {
    this.#process_listeners.add(listener);
    return () => void this.#process_listeners.delete(listener);
  }

  /** Watches, takes the lease, and starts renewing it; rejects if the directory cannot be reached. */
  async start(): Promise<void> {
    this.#unwatch = await this.directory.watch((change) => {
      if (change.kind === "member") this.#see(change.member, change.reason);
      else for (const l of this.#process_listeners) l(change.record);
    });
    await this.#grant();
    await this.#readAll();
    this.#heartbeat = setInterval(() => void this.#renew(), Math.max(1, Math.floor(this.#ttl_ms / RENEWALS_PER_LEASE)));
    this.#resync = setInterval(() => void this.#readAll(), this.#ttl_ms);
  }

  /** Stops renewing; with `leave`, revokes the lease so the others see this node dead at once. */
  async stop(leave: boolean): Promise<void> {
    this.#stopped = true;
    if (this.#heartbeat !== null) clearInterval(this.#heartbeat);
    if (this.#resync !== null) clearInterval(this.#resync);
    this.#unwatch?.();
    const lease = this.#lease;
    this.#lease = null;
    if (leave && lease !== null) {
      await this.directory.revokeLease(lease.id).catch((err: unknown) => {
        this.#log.warn({ err: errorField(err) }, "could not revoke this node's lease; the others see it dead when it runs out");
      });
    }
  }

  async #grant(): Promise<void> {
    const sent = performance.now();
    this.#lease = await this.directory.grantLease({ name: this.name, address: this.#address }, this.#ttl_ms);
    this.#valid_until_ms = sent + this.#lease.ttl_ms;
    this.#log.info({ lease: this.#lease.id, ttl_ms: this.#lease.ttl_ms, directory: this.directory.kind }, `holding lease ${this.#lease.id} in the directory (${this.#lease.ttl_ms} ms)`);
  }

  /** One heartbeat: renew, or, if the lease ran out (this node was declared dead), take a new one. */
  async #renew(): Promise<void> {
    if (this.#renewing || this.#stopped) return;
    this.#renewing = true;
    try {
      if (this.#lease === null) await this.#grant();
      else {
        // Held here: stop() may drop the lease while the renewal is on its way.
        const lease = this.#lease;
        const sent = performance.now();
        await this.directory.keepAlive(lease.id);
        if (this.#lease === lease) this.#valid_until_ms = sent + lease.ttl_ms;
      }
    } catch (err: unknown) {
      if (err instanceof FerryError && err.code === "ERR_LEASE_EXPIRED") {
        this.#log.error({ err: errorField(err) }, "this node's lease ran out: the cluster has declared it dead. Taking a new lease");
        this.#lease = null;
        // At once, not a heartbeat later: every moment without a lease, the node counts as dead.
        await this.#grant().catch((e: unknown) => this.#log.warn({ err: errorField(e) }, "could not take a new lease; the next heartbeat tries again"));
      } else {
        // The directory may be back by the next heartbeat; until the lease runs out nothing is lost.
        this.#log.warn({ err: errorField(err) }, "could not renew this node's lease");
      }
    } finally {
      this.#renewing = false;
    }
  }

  async #readAll(): Promise<void> {
    try {
      for (const m of await this.directory.members()) this.#see(m, m.state === "dead" ? "dead when the directory was read" : null);
    } catch (err: unknown) {
      this.#log.warn({ err: errorField(err) }, "could not read the directory's members");
    }
  }

  #see(member: Member, reason: string | null): void {
    const before = this.#view.get(member.name);
    this.#view.set(member.name, member);
    if (before !== undefined && before.state === member.state) return;
    const change: MemberChange = { member: { ...member }, was: before?.state ?? null, reason };
    for (const l of this.#member_listeners) {
      try {
        l(change);
      } catch (err: unknown) {
        // One listener's fault must not keep the change from the others.
        this.#log.error({ err: errorField(err), peer: member.name }, "a membership listener failed");
      }
    }
  }
}
