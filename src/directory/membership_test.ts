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

describe("membership", () => {
  it("stays alive across many leases while its heartbeat runs, and is seen dead once it stops renewing", async () => {
    const d = new MemoryDirectory();
    const a = new Membership(d, { name: "a", address: "127.0.0.1:1", ttl_ms: 300 });
    const b = new Membership(d, { name: "b", address: "127.0.0.1:2", ttl_ms: 300 });
    const seen: MemberChange[] = [];
    b.onMember((c) => seen.push(c));
    try {
      await a.start();
      await b.start();
      await until("b to see a alive", () => b.member("a")?.state === "alive");
      // Five leases long: the heartbeat (every 100 ms) keeps it.
      const since = Date.now();
      await until("five leases to pass", () => Date.now() - since > 1500);
      assert.equal(b.member("a")?.state, "alive");
      assert.equal(seen.filter((c) => c.member.name === "a" && c.member.state === "dead").length, 0);
      // Stopped without leaving (as a crash would): dead once the lease runs out.
      const stopped = Date.now();
      await a.stop(false);
      await until("b to see a dead", () => b.member("a")?.state === "dead");
      assert.ok(Date.now() - stopped >= 300 - 110, "declared dead before its lease could have run out");
      const death = seen.find((c) => c.member.name === "a" && c.member.state === "dead");
      assert.equal(death?.was, "alive");
      assert.match(death?.reason ?? "", /did not renew its lease within 300 ms/);
    } finally {
      await b.stop(true);
      await d.close();
    }
  });

  it("is seen dead at once when it leaves, and takes a new lease when its own ran out", async () => {
    const d = new MemoryDirectory();
    const a = new Membership(d, { name: "a", address: "127.0.0.1:1", ttl_ms: 300 });
    const b = new Membership(d, { name: "b", address: "127.0.0.1:2", ttl_ms: 300 });
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
