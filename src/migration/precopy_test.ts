/**
 * The pre-copy round policy (`decideRound`): stop once what the process
 * writes during a round fits the downtime target at the rate the destination
 * confirmed; throttle step by step while rounds stop shrinking; never past
 * the round limit or the throttle's ceiling.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CHUNK_BYTES } from "../memory/mod.js";
import { chunkPages, ConfirmedRate, decideRound, finalCopyBudgetMs, firstChunks, restoreChunks, stopCostMs, takeChunks, type RoundSeen } from "./_precopy.js";

const LIMITS = { max_downtime_ms: 10, rounds_max: 12, auto_converge: true };
/** 100 MB/s confirmed, in bytes per ms. */
const LINK = 100_000;

function seen(over: Partial<RoundSeen>): RoundSeen {
  return { round: 2, pages: 1000, previous_pages: 5000, elapsed_ms: 40, dirty_bytes_per_ms: 10_000, link_bytes_per_ms: LINK, throttle_pct: 0, ...over };
}

describe("pre-copy rounds", () => {
  it("after the first round there is always a second: the dirty rate is not known yet", () => {
    assert.deepEqual(decideRound(seen({ round: 1, previous_pages: Infinity, dirty_bytes_per_ms: Infinity, pages: 1 }), LIMITS), { kind: "go", throttle_pct: 0 });
  });

  it("stops once what is written during a round goes in the downtime target at the confirmed rate", () => {
    // 10 MB/s of writes for 40 ms is 400 KB: 4 ms at 100 MB/s.
    assert.deepEqual(decideRound(seen({}), LIMITS), { kind: "stop" });
    // 50 MB/s for 40 ms is 2 MB: 20 ms, over a 10 ms target; still shrinking, so another round, unthrottled.
    assert.deepEqual(decideRound(seen({ dirty_bytes_per_ms: 50_000 }), LIMITS), { kind: "go", throttle_pct: 0 });
    // The rate that counts is the one the destination confirmed: at 1 GB/s confirmed the same fits.
    assert.deepEqual(decideRound(seen({ dirty_bytes_per_ms: 50_000, link_bytes_per_ms: 1_000_000 }), LIMITS), { kind: "stop" });
  });

  it("a memory that nothing writes stops at once, whatever the rate", () => {
    assert.deepEqual(decideRound(seen({ pages: 0, previous_pages: 0, dirty_bytes_per_ms: 0, link_bytes_per_ms: 0 }), LIMITS), { kind: "stop" });
  });

  it("rounds that stop shrinking raise the throttle 20, 30, ... up to 95, then stop, when the rates call for less", () => {
    let throttle = 0;
    const steps: number[] = [];
    for (let round = 2; round < 40; round += 1) {
      // Writes at 60% of the link: half the link calls for a throttle of 17%, under the first step.
      const next = decideRound(seen({ round, pages: 5000, previous_pages: 5000, dirty_bytes_per_ms: 60_000, throttle_pct: throttle }), { ...LIMITS, rounds_max: 40 });
      if (next.kind === "stop") break;
      throttle = next.throttle_pct;
      steps.push(throttle);
    }
    assert.deepEqual(steps, [20, 30, 40, 50, 60, 70, 80, 90, 95]);
  });

  it("writes far over the link go straight to the throttle that brings them under half of it", () => {
    // 180 MB/s against 100 MB/s confirmed: held 73% of its time (rounded up), it writes 48.6 MB/s.
    assert.deepEqual(decideRound(seen({ pages: 5000, previous_pages: 5000, dirty_bytes_per_ms: 180_000 }), LIMITS), { kind: "go", throttle_pct: 73 });
    // Ten times the link: the most there is.
    assert.deepEqual(decideRound(seen({ pages: 5000, previous_pages: 5000, dirty_bytes_per_ms: 1_000_000 }), LIMITS), { kind: "go", throttle_pct: 95 });
    // Never below the next step of the throttle it already runs under.
    assert.deepEqual(decideRound(seen({ pages: 5000, previous_pages: 5000, dirty_bytes_per_ms: 180_000, throttle_pct: 80 }), LIMITS), { kind: "go", throttle_pct: 90 });
  });

  it("without auto-converge, rounds that stop shrinking stop the process", () => {
    assert.deepEqual(decideRound(seen({ pages: 5000, previous_pages: 4000, dirty_bytes_per_ms: 90_000 }), { ...LIMITS, auto_converge: false }), { kind: "stop" });
  });

  it("the round limit stops it, throttled or not", () => {
    assert.deepEqual(decideRound(seen({ round: 12, pages: 5000, previous_pages: 4000, dirty_bytes_per_ms: 90_000, throttle_pct: 40 }), LIMITS), { kind: "stop" });
  });

  it("what the rest of a stop costs is taken off the target first, leaving the final copy at least a fifth of it", () => {
    assert.equal(finalCopyBudgetMs({ max_downtime_ms: 10 }), 10);
    assert.equal(finalCopyBudgetMs({ max_downtime_ms: 10, stop_cost_ms: 6 }), 4);
    assert.equal(finalCopyBudgetMs({ max_downtime_ms: 10, stop_cost_ms: 9.5 }), 2);
    assert.equal(finalCopyBudgetMs({ max_downtime_ms: 10, stop_cost_ms: 40 }), 2);
    // 10 MB/s for 40 ms is 400 KB, 4 ms at 100 MB/s: it fits 10 ms, and 4 ms exactly, but not 10 ms less a 7 ms stop.
    assert.deepEqual(decideRound(seen({}), { ...LIMITS, stop_cost_ms: 6 }), { kind: "stop" });
    assert.deepEqual(decideRound(seen({}), { ...LIMITS, stop_cost_ms: 7 }), { kind: "go", throttle_pct: 0 });
    // Rounds that stop shrinking against the smaller budget are throttled as against the whole one.
    assert.deepEqual(decideRound(seen({ pages: 5000, previous_pages: 5000, dirty_bytes_per_ms: 60_000 }), { ...LIMITS, stop_cost_ms: 7 }), { kind: "go", throttle_pct: 20 });
  });

  it("a move's stop cost is its downtime less its final copy's time at the confirmed rate, and never below zero", () => {
    // 250 pages of 4 KiB (1,024,000 bytes) at 102.4 MB/s is 10 ms of a 14 ms downtime.
    assert.equal(stopCostMs({ downtime_ms: 14, dirty_pages: [65536, 4000, 250], convergence: { link_bytes_per_s: 102_400_000 } }), 4);
    assert.equal(stopCostMs({ downtime_ms: 3, dirty_pages: [65536, 250], convergence: { link_bytes_per_s: 102_400_000 } }), 0);
    // Nothing confirmed, nothing to learn.
    assert.equal(stopCostMs({ downtime_ms: 14, dirty_pages: [] }), null);
    assert.equal(stopCostMs({ downtime_ms: 14, dirty_pages: [250], convergence: { link_bytes_per_s: 0 } }), null);
  });

  it("the confirmed rate is the data connection's rounds', all together; a first round on the record connection counts only until one of those", () => {
    const rate = new ConfirmedRate();
    rate.add(1_000_000_000, 1000, true); // 1 GB/s on the record connection
    assert.equal(rate.bytesPerMs(), 1_000_000);
    rate.add(4_000_000, 10, false); // 400 MB/s as PAGES frames
    assert.equal(rate.bytesPerMs(), 400_000);
    rate.add(8192, 1.8, false); // a round of two pages: mostly its round trip
    assert.equal(rate.bytesPerMs(), (4_000_000 + 8192) / 11.8);
  });
});

describe("post-copy's first chunks", () => {
  it("the restore's chunks cover the region a rewind borrows at the top of memory, and nothing below it", () => {
    const size = 64 * CHUNK_BYTES;
    assert.deepEqual(restoreChunks(size, 100), [63]);
    // borrowTop lends the stack, its 8-byte header and up to 15 bytes of alignment: a chunk holds at most a stack of 65,528 bytes.
    assert.deepEqual(restoreChunks(size, CHUNK_BYTES - 8), [63]);
    assert.deepEqual(restoreChunks(size, CHUNK_BYTES - 7), [62, 63]);
    assert.deepEqual(restoreChunks(size, 3 * CHUNK_BYTES), [60, 61, 62, 63]);
    // A stack larger than memory (refused later by the restore's checks): all of it, no chunk below zero.
    assert.deepEqual(restoreChunks(2 * CHUNK_BYTES, 5 * CHUNK_BYTES), [0, 1]);
  });

  it("the first chunks are those around each i32 global that points into memory", () => {
    const size = 64 * CHUNK_BYTES;
    const globals = [
      { type: "i32", bits: BigInt(10 * CHUNK_BYTES + 5) },
      { type: "i64", bits: 5n },
      { type: "i32", bits: BigInt(size + 1) },
      { type: "i32", bits: 7n },
    ];
    assert.deepEqual(firstChunks(size, globals), [10, 9, 0]);
  });

  it("takes the wanted chunks out of the missing runs, keeping the rest in order", () => {
    assert.deepEqual(takeChunks([[0, 10]], [9, 0, 4]), { taken: [0, 4, 9], rest: [[1, 3], [5, 4]] });
    assert.deepEqual(takeChunks([[0, 2], [5, 3]], [3, 7, 5]), { taken: [5, 7], rest: [[0, 2], [6, 1]] });
    // Not missing (hybrid's rounds sent it): not taken.
    assert.deepEqual(takeChunks([[4, 2]], [1]), { taken: [], rest: [[4, 2]] });
    assert.deepEqual(takeChunks([], [1]), { taken: [], rest: [] });
  });

  it("a chunk's pages are views of memory, in order", () => {
    const memory = new Uint8Array(3 * CHUNK_BYTES);
    for (let i = 0; i < memory.length; i += 4096) memory[i] = (i / 4096) & 0xff;
    const pages = [...chunkPages(memory, [2, 0])];
    const per_chunk = CHUNK_BYTES / 4096;
    assert.equal(pages.length, 2 * per_chunk);
    assert.deepEqual(pages.map((p) => p.index), [...Array(per_chunk).keys()].map((i) => 2 * per_chunk + i).concat([...Array(per_chunk).keys()]));
    for (const p of pages) {
      assert.equal(p.data.length, 4096);
      assert.equal(p.data[0], p.index & 0xff);
      assert.equal(p.data.buffer, memory.buffer);
    }
  });
});
