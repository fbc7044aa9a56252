/** A node's membership over the in-memory directory: the heartbeat keeps it alive, silence or leaving makes it dead, and a node whose lease ran out takes a new one. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MemoryDirectory } from "./memory.js";
import { Membership, type MemberChange } from "./membership.js";

async function until(what: string, check: () => boolean, timeout_ms = 10_000): Promise<void> {
  const deadline = Date.now() + timeout_ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * The lease of these members. The heartbeat renews it every third, so a
 * stall of the event loop of two thirds of it (a busy machine) is survived;
 * with 300 ms, a 200 ms stall declared a live member dead.
 */
const TTL_MS = 1000;

describe("membership", () => {
  it("stays alive across many leases while its heartbeat runs, and is seen dead once it stops renewing", async () => {
    const d = new MemoryDirectory();
    const a = new Membership(d, { name: "a", address: "127.0.0.1:1", ttl_ms: TTL_MS });
    const b = new Membership(d, { name: "b", address: "127.0.0.1:2", ttl_ms: TTL_MS });
    const seen: MemberChange[] = [];
    b.onMember((c) => seen.push(c));
    try {
      await a.start();
      await b.start();
      await until("b to see a alive", () => b.member("a")?.state === "alive");
      // Three leases long: the heartbeat keeps it.
      const since = Date.now();
      await until("three leases to pass", () => Date.now() - since > 3 * TTL_MS);
      assert.equal(b.member("a")?.state, "alive");
      assert.equal(seen.filter((c) => c.member.name === "a" && c.member.state === "dead").length, 0);
      // Stopped without leaving (as a crash would): dead once the lease runs out.
      // Its lease surely holds until its last renewal was sent plus the lease; the directory counts from when it got it, later.
      const valid_until_ms = performance.now() + a.leaseLeftMs();
      await a.stop(false);
      await until("b to see a dead", () => b.member("a")?.state === "dead");
      assert.ok(performance.now() >= valid_until_ms, "declared dead before its lease could have run out");
      const death = seen.find((c) => c.member.name === "a" && c.member.state === "dead");
      assert.equal(death?.was, "alive");
      assert.match(death?.reason ?? "", new RegExp(`did not renew its lease within ${TTL_MS} ms`));
    } finally {
      await b.stop(true);
      await d.close();
    }
  });

  it("is seen dead at once when it leaves, and takes a new lease when its own ran out", async () => {
    const d = new MemoryDirectory();
    const a = new Membership(d, { name: "a", address: "127.0.0.1:1", ttl_ms: TTL_MS });
    const b = new Membership(d, { name: "b", address: "127.0.0.1:2", ttl_ms: TTL_MS });
    try {
      await a.start();
      await b.start();
      const first = a.lease?.id;
      // Its lease ends behind its back (a pause longer than the lease): the next heartbeat finds it gone and takes a new one.
      await d.revokeLease(first ?? "");
      await until("a to hold a new lease", () => a.lease !== null && a.lease.id !== first);
      await until("b to see a alive again", () => b.member("a")?.state === "alive");
      await a.stop(true);
      assert.equal((await d.members()).find((m) => m.name === "a")?.state, "dead");
      await until("b to see a dead", () => b.member("a")?.state === "dead");
    } finally {
      await b.stop(true);
      await d.close();
    }
  });
});
