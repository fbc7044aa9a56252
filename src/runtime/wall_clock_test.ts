import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { wallClock } from "./_wall_clock.js";

const MS = 1_000_000n;

/**
 * A system whose true wall time is `wall_ns` (settable), with a monotonic clock of another epoch; its start time
 * is exact, or `start_late_ns` behind.
 */
function system(start_wall_ns: bigint, start_late_ns = 0n): { advance(ns: bigint): void; setWall(ns: bigint): void; readonly wall_ns: bigint; sources: Parameters<typeof wallClock>[0] } {
  let wall_ns = start_wall_ns;
  let monotonic_ns = 987_654_321n;
  return {
    advance(ns) {
      wall_ns += ns;
      monotonic_ns += ns;
    },
    setWall(ns) {
      wall_ns = ns;
    },
    get wall_ns() {
      return wall_ns;
    },
    sources: { wall_ms: () => Number(wall_ns / MS), monotonic_ns: () => monotonic_ns, start_ns: () => wall_ns - start_late_ns },
  };
}

describe("the guest's wall clock", () => {
  it("counts microseconds between readings, where Date.now() counts whole milliseconds", () => {
    const sys = system(1_700_000_000_000n * MS);
    const read = wallClock(sys.sources);
    const first = read();
    for (let i = 0; i < 50; i += 1) {
      sys.advance(7_000n);
      const r = read();
      assert.ok(r > first, "time goes on below the millisecond");
    }
    const a = read();
    sys.advance(250_000n);
    assert.equal(read() - a, 250_000n, "a quarter of a millisecond reads as one");
  });

  it("reads the system's wall clock exactly from the start it is given", () => {
    const sys = system(1_700_000_000_000n * MS + 123_456n);
    const read = wallClock(sys.sources);
    for (let i = 0; i < 100; i += 1) {
      sys.advance(3_217n);
      assert.equal(read(), sys.wall_ns);
    }
  });

  it("is never a millisecond or more from the system's wall clock, and a late start's lag shrinks to that of the reading nearest a millisecond's start", () => {
    // A start 0.9 ms late (a start time truncated to the millisecond, 0.9 ms into it).
    const sys = system(1_700_000_000_000n * MS + 900_000n, 900_000n);
    const read = wallClock(sys.sources);
    let worst_late = 0n;
    for (let i = 0; i < 2_000; i += 1) {
      sys.advance(37_000n + BigInt(i % 13) * 1_000n);
      const r = read();
      const late = sys.wall_ns - r;
      assert.ok(late >= 0n && late < MS, `reading ${r} against the wall's ${sys.wall_ns}`);
      if (i > 1_000 && late > worst_late) worst_late = late;
    }
    // Readings land every 37-49 µs: one soon falls within that of a millisecond's start and re-anchors there.
    assert.ok(worst_late < 50_000n, `still ${worst_late} ns late after 2,000 readings`);
  });

  it("follows the wall clock when it is set back or forward, at the next reading", () => {
    const sys = system(1_700_000_000_000n * MS);
    const read = wallClock(sys.sources);
    sys.advance(3n * MS);
    read();
    for (const to of [1_600_000_000_000n * MS + 123_456n, 1_800_000_000_000n * MS + 999_999n]) {
      sys.setWall(to);
      const r = read();
      assert.ok(r - sys.wall_ns < MS && sys.wall_ns - r < MS, `set to ${to}: read ${r}`);
      sys.advance(10_000n);
      assert.ok(read() - r <= 10_000n + MS);
    }
  });

  it("steps back only by what a faster monotonic clock gained, never by a millisecond", () => {
    // The monotonic clock runs 0.1% fast against the wall clock (NTP slewing can make them part).
    let wall_ns = 1_700_000_000_000n * MS + 400_000n;
    let monotonic_ns = 5n * MS;
    const read = wallClock({ wall_ms: () => Number(wall_ns / MS), monotonic_ns: () => monotonic_ns, start_ns: () => wall_ns });
    let last = read();
    for (let i = 0; i < 20_000; i += 1) {
      wall_ns += 37_000n;
      monotonic_ns += 37_037n;
      const r = read();
      assert.ok(last - r < 1_000n, `stepped back ${last - r} ns at reading ${i}`);
      assert.ok(r - wall_ns < MS && wall_ns - r < MS);
      last = r;
    }
  });
});
