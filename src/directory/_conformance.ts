/**
 * The cases every directory backend must pass, run against each of them
 * (memory and embedded beside this file, the served one and etcd in
 * test/directory_backends.test.ts). Each case gets a fresh directory from
 * `open`, with pids and node names of its own, so backends that share a
 * store (one etcd) do not see each other's cases.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { FerryError } from "../errors.js";
import type { Directory, DirectoryChange, Member } from "./types.js";

/** How a backend is opened for the suite. */
export interface ConformanceOptions {
  /** A fresh directory (and what closes whatever backs it). */
  open(): Promise<{ directory: Directory; close(): Promise<void> }>;
  /** The lease the membership cases ask for (the backend may round it up). */
  ttl_ms: number;
  /**
   * How long after a lease runs out the backend may take to notice it: 0
   * for backends that time each lease (memory, embedded); etcd looks for
   * expired leases every 500 ms (its lessor's check interval), so a death
   * may come up to that much later.
   */
  expiry_check_ms?: number;
  /** Set to skip the whole suite, saying why. */
  skip?: string | false;
}

let unique = 0;
/** A name no other case of this run uses (node names: letters, digits, _). */
function fresh(stem: string): string {
  unique += 1;
  return `${stem}${process.pid}x${unique}`;
}

/**
 * The lease of the cases that end one by revoking or replacing it, never by
 * letting it run out: one as short as `ttl_ms` could run out between two
 * calls on a busy machine, and the member would die before the case ends it.
 */
const LEASE_KEPT_MS = 60_000;

/**
 * How much later than the lease's end plus the backend's expiry check a
 * death may come, as a watcher sees it, before the case calls the expiry
 * broken: a whole lease more. Timers firing late and the watch's delivery
 * on a loaded machine stay far inside it (tens of ms on a quiet one); a
 * lease that never runs out, or runs out only at some later sweep, does
 * not. How soon deaths come is measured by `npm run bench -- --only=directory`.
 */
const deathMarginMs = (ttl_ms: number): number => ttl_ms;

/** Polls until `check` holds, failing after `timeout_ms` (the cases wait on state, never on sleeps). */
async function until(what: string, check: () => boolean | Promise<boolean>, timeout_ms: number): Promise<void> {
  const deadline = Date.now() + timeout_ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Registers the suite for the backend called `name`. */
export function directoryConformance(name: string, options: ConformanceOptions): void {
  describe(`directory conformance: ${name}`, { skip: options.skip ?? false }, () => {
    const opened: { close(): Promise<void> }[] = [];
    const open = async (): Promise<Directory> => {
      const o = await options.open();
      opened.push(o);
      return o.directory;
    };
    after(async () => {
      for (const o of opened) await o.close();
    });

    it("creates a record once, running at its home, and lists it by runner and home", async () => {
      const d = await open();
      const home = fresh("h");
      const pid = `${home}-1`;
      const r = await d.createProcess({ pid, home });
      assert.deepEqual({ ...r, updated_unix_ms: 0 }, { pid, home, runner: home, state: "running", moves: 0, last_checkpoint: null, reason: null, exit_code: null, updated_unix_ms: 0 });
      await assert.rejects(d.createProcess({ pid, home }), (e: unknown) => e instanceof FerryError && e.code === "ERR_DIRECTORY_CONFLICT");
      assert.equal((await d.process(pid))?.runner, home);
      assert.equal(await d.process(`${home}-2`), null);
      assert.deepEqual((await d.processes({ home })).map((p) => p.pid), [pid]);
      assert.deepEqual((await d.processes({ runner: home })).map((p) => p.pid), [pid]);
      assert.deepEqual(await d.processes({ runner: fresh("nobody") }), []);
    });

    it("changes a record only by compare-and-set on its move counter; a stale update never wins", async () => {
      const d = await open();
      const home = fresh("h");
      const pid = `${home}-1`;
      await d.createProcess({ pid, home });
      const moved = await d.updateProcess(pid, 0, { runner: "b", moves: 1 });
      assert.ok(moved.ok);
      assert.equal(moved.record.moves, 1);
      // A second move told with the old counter (a delayed retry) is refused, and the record names the move that won.
      const stale = await d.updateProcess(pid, 0, { runner: "c", moves: 1 });
      assert.equal(stale.ok, false);
      assert.ok(!stale.ok && stale.reason === "stale" && stale.current?.runner === "b");
      // A jump of the counter is refused too.
      const jump = await d.updateProcess(pid, 1, { runner: "c", moves: 3 });
      assert.ok(!jump.ok && jump.reason === "invalid");
      const checkpoint = await d.updateProcess(pid, 1, { last_checkpoint: { node: "c", seq: 4, moves: 1 } });
      assert.ok(checkpoint.ok && checkpoint.record.last_checkpoint?.seq === 4 && checkpoint.record.runner === "b");
      const lost = await d.updateProcess(pid, 1, { state: "lost", reason: "node b died" });
      assert.ok(lost.ok && lost.record.state === "lost");
      // An ended record never changes again.
      const after_end = await d.updateProcess(pid, 1, { state: "running" });
      assert.ok(!after_end.ok && after_end.reason === "ended");
      const missing = await d.updateProcess(`${home}-9`, 0, { state: "exited" });
      assert.ok(!missing.ok && missing.reason === "missing" && missing.current === null);
      const read = await d.process(pid);
      assert.deepEqual([read?.state, read?.reason, read?.runner, read?.moves, read?.last_checkpoint], ["lost", "node b died", "b", 1, { node: "c", seq: 4, moves: 1 }]);
    });

    it("lets exactly one of many concurrent moves with the same counter win", async () => {
      const d = await open();
      const home = fresh("h");
      const pid = `${home}-1`;
      await d.createProcess({ pid, home });
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => d.updateProcess(pid, 0, { runner: `r${i}`, moves: 1 })));
      const won = results.filter((r) => r.ok);
      assert.equal(won.length, 1);
      assert.equal((await d.process(pid))?.runner, won[0]?.ok === true ? won[0].record.runner : "");
    });

    it("moves a record's home with its next move (failover of a dead home), by compare-and-set like any change", async () => {
      const d = await open();
      const home = fresh("h");
      const pid = `${home}-1`;
      await d.createProcess({ pid, home });
      const taken = await d.updateProcess(pid, 0, { home: "k", runner: "k", moves: 1 });
      assert.ok(taken.ok && taken.record.home === "k" && taken.record.runner === "k" && taken.record.moves === 1);
      // A second taker with the old counter loses.
      const second = await d.updateProcess(pid, 0, { home: "j", runner: "j", moves: 1 });
      assert.ok(!second.ok && second.reason === "stale" && second.current?.home === "k");
      assert.deepEqual((await d.processes({ home: "k" })).map((p) => p.pid), [pid]);
      assert.deepEqual(await d.processes({ home }), []);
    });

    it("tells watchers of records and members as they change", async () => {
      const d = await open();
      const seen: DirectoryChange[] = [];
      const stop = await d.watch((c) => seen.push(c));
      const home = fresh("h");
      await d.createProcess({ pid: `${home}-1`, home });
      await d.updateProcess(`${home}-1`, 0, { state: "exited" });
      const lease = await d.grantLease({ name: home, address: "127.0.0.1:1" }, LEASE_KEPT_MS);
      await d.revokeLease(lease.id);
      const mine = (): DirectoryChange[] => seen.filter((c) => (c.kind === "process" ? c.record.home === home : c.member.name === home));
      await until("four changes", () => mine().length >= 4, 10_000);
      stop();
      assert.deepEqual(
        mine().map((c) => (c.kind === "process" ? `process ${c.record.state}` : `member ${c.member.state}`)),
        ["process running", "process exited", "member alive", "member dead"],
      );
    });

    it("keeps a member alive while it renews its lease, and declares it dead once it stops: never before the lease runs out, at most the lease plus the backend's expiry check and a margin after", async () => {
      const d = await open();
      const name = fresh("n");
      const deaths: { at: number; member: Member }[] = [];
      const stop = await d.watch((c) => {
        if (c.kind === "member" && c.member.name === name && c.member.state === "dead") deaths.push({ at: Date.now(), member: c.member });
      });
      const lease = await d.grantLease({ name, address: "127.0.0.1:2" }, options.ttl_ms);
      assert.ok(lease.ttl_ms >= options.ttl_ms);
      // Renewed every third of the lease for two whole leases: never dead.
      // The last renewal was sent at `last_renewal` and answered (so applied) by `renewed`.
      let last_renewal = Date.now();
      let renewed = last_renewal;
      const renew_until = Date.now() + 2 * lease.ttl_ms;
      while (Date.now() < renew_until) {
        last_renewal = Date.now();
        await d.keepAlive(lease.id);
        renewed = Date.now();
        await new Promise((r) => setTimeout(r, lease.ttl_ms / 3));
      }
      assert.equal(deaths.length, 0, "declared dead while it renewed its lease");
      assert.equal((await d.members()).find((m) => m.name === name)?.state, "alive");
      // Renewals stop: declared dead, and not before the lease ran out since the last one was sent.
      await until(`${name} declared dead`, () => deaths.length > 0, lease.ttl_ms + 10_000);
      stop();
      const death = deaths.at(0);
      assert.ok(death !== undefined);
      assert.ok(death.at - last_renewal >= lease.ttl_ms - 20, `declared dead ${death.at - last_renewal} ms after its last renewal, within its ${lease.ttl_ms} ms lease`);
      // The failure-detection bound (docs/directory.md, "Leases and failure detection").
      const bound_ms = lease.ttl_ms + (options.expiry_check_ms ?? 0) + deathMarginMs(lease.ttl_ms);
      assert.ok(death.at - renewed <= bound_ms, `declared dead ${death.at - renewed} ms after its last renewal was answered, past the bound of ${bound_ms} ms (a ${lease.ttl_ms} ms lease)`);
      assert.equal(death.member.address, "127.0.0.1:2");
      assert.equal((await d.members()).find((m) => m.name === name)?.state, "dead");
      await assert.rejects(d.keepAlive(lease.id), (e: unknown) => e instanceof FerryError && e.code === "ERR_LEASE_EXPIRED");
    });

    it("declares a member dead at once when it revokes its lease, and alive again under a new one", async () => {
      const d = await open();
      const name = fresh("n");
      const states: string[] = [];
      const stop = await d.watch((c) => {
        if (c.kind === "member" && c.member.name === name) states.push(c.member.state);
      });
      const first = await d.grantLease({ name, address: "127.0.0.1:3" }, LEASE_KEPT_MS);
      // A second lease for the same name (the node restarted): the first incarnation dies, then the new one lives.
      const second = await d.grantLease({ name, address: "127.0.0.1:4" }, LEASE_KEPT_MS);
      await assert.rejects(d.keepAlive(first.id), (e: unknown) => e instanceof FerryError && e.code === "ERR_LEASE_EXPIRED");
      await d.keepAlive(second.id);
      const member = (await d.members()).find((m) => m.name === name);
      assert.deepEqual([member?.state, member?.address], ["alive", "127.0.0.1:4"]);
      await d.revokeLease(second.id);
      await until("four member changes", () => states.length >= 4, 10_000);
      stop();
      assert.deepEqual(states, ["alive", "dead", "alive", "dead"]);
      assert.equal((await d.members()).find((m) => m.name === name)?.state, "dead");
    });
  });
}
