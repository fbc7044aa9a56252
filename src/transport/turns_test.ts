import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { nextTurn, turnDue, yieldIfDue } from "./turns.js";

/** Runs this thread for `ms` without a turn of its event loop. */
function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

describe("turns of the event loop", () => {
  it("are due once the thread ran the time asked for since the last one, and not after a turn", async () => {
    await nextTurn();
    assert.equal(turnDue(5), false, "the first look starts the clock");
    busy(6);
    assert.equal(turnDue(5), true);
    await nextTurn();
    assert.equal(turnDue(5), false, "a turn starts it again");
  });

  it("are not due to a loop that waits on I/O between its looks", async () => {
    // From a turn: what ran before this test (the runner's own work, a look of the test before) is not this loop's.
    await nextTurn();
    let checked = 0;
    for (let i = 0; i < 20 && checked < 5; i += 1) {
      assert.equal(turnDue(2), false);
      // A timer is a wait on the event loop as I/O is. On a starved machine it can fire in the timers phase before
      // the loop reached the check phase once (the thread stood still for 3 ms): that wait spanned no turn, and is
      // not counted. One that did must find the look's clock started again.
      let turned = false;
      setImmediate(() => (turned = true));
      await new Promise((resolve) => setTimeout(resolve, 3));
      if (turned) checked += 1;
      else await nextTurn();
    }
    assert.equal(checked, 5, "five waits that spanned a turn");
  });

  it("let what the event loop has to do run in a loop that never waits on it", async () => {
    let ran = false;
    setImmediate(() => (ran = true));
    // A loop of resolved promises only: without yieldIfDue it would end before the immediate ran.
    const until = performance.now() + 20;
    while (performance.now() < until && !ran) {
      await Promise.resolve();
      busy(0.2);
      await yieldIfDue(1);
    }
    assert.equal(ran, true, "the event loop turned within 20 ms");
  });
});
