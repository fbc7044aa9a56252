import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RECLAIM_BYTES_MIN, RECLAIM_MEMORIES_MAX, reclaimPending, reclaimSoon } from "./_reclaim.js";

async function collected(): Promise<void> {
  // The collection is half a second after it is due; bounded, and each turn looks again.
  for (let i = 0; i < 200 && reclaimPending().due; i += 1) await new Promise((r) => setTimeout(r, 25));
  assert.deepEqual(reclaimPending(), { bytes: 0, memories: 0, due: false });
}

describe("reclaimSoon", () => {
  it("collects once enough pages wait, or enough memories whose pages were given back", async () => {
    assert.deepEqual(reclaimPending(), { bytes: 0, memories: 0, due: false });
    // Memories whose pages are gone cost only their address space: many wait.
    for (let i = 1; i < RECLAIM_MEMORIES_MAX; i += 1) {
      reclaimSoon(1024 * 1024 * 1024, { pages_discarded: true });
      assert.deepEqual(reclaimPending(), { bytes: 0, memories: i, due: false });
    }
    reclaimSoon(1024 * 1024 * 1024, { pages_discarded: true });
    assert.equal(reclaimPending().due, true, "the last memory's address space brought on no collection");
    await collected();
    // Pages still mapped: a collection once their bytes add up.
    reclaimSoon(RECLAIM_BYTES_MIN - 1);
    assert.deepEqual(reclaimPending(), { bytes: RECLAIM_BYTES_MIN - 1, memories: 0, due: false });
    reclaimSoon(1);
    assert.equal(reclaimPending().due, true, "16 MiB of mapped pages brought on no collection");
    await collected();
  });
});
