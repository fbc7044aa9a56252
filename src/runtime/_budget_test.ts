import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PollBudget, POLL_BUDGET_MAX, POLL_BUDGET_MIN, POLL_BUDGET_START, POLL_INTERVAL_MS } from "./_budget.js";

/** A guest whose units each take `unit_ms`: returns the interval between crossings once settled. */
function settle(unit_ms: number): number {
  let now = 0;
  const budget = new PollBudget(now);
  let units = POLL_BUDGET_START;
  let interval = 0;
  for (let i = 0; i < 50; i += 1) {
    interval = units * unit_ms;
    now += interval;
    units = budget.next(now);
    assert.ok(units >= POLL_BUDGET_MIN && units <= POLL_BUDGET_MAX);
  }
  return interval;
}

describe("poll budget", () => {
  it("settles near the aimed interval for slow units (a recursion with short loops) and fast ones (a tight loop)", () => {
    for (const unit_ms of [0.0005, 0.00002]) {
      const interval = settle(unit_ms);
      assert.ok(interval > POLL_INTERVAL_MS / 2 && interval < POLL_INTERVAL_MS * 2, `${unit_ms} ms a unit: ${interval} ms between crossings`);
    }
  });

  it("stays within its bounds for units too slow or too fast to reach the aim", () => {
    assert.ok(settle(1) <= POLL_BUDGET_MIN * 1);
    assert.ok(settle(1e-9) <= POLL_BUDGET_MAX * 1e-9);
  });

  it("moves at most fourfold in one step, so one long pause (a blocking call) does not collapse it", () => {
    const budget = new PollBudget(0);
    const first = budget.next(POLL_INTERVAL_MS);
    assert.equal(first, POLL_BUDGET_START);
    assert.equal(budget.next(POLL_INTERVAL_MS + 10_000), POLL_BUDGET_START / 4);
    assert.equal(budget.next(POLL_INTERVAL_MS + 10_000), POLL_BUDGET_START, "a clock that did not move counts as fast");
  });
});
