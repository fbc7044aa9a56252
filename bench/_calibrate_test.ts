import { test } from "node:test";
import assert from "node:assert/strict";
import { firstWork, msPerMib, nextWork, PROBE_WORK, STEP_MAX, WORK_MAX } from "./_calibrate.js";

/** A machine on which a MiB written at WORK w takes a + b × w ms. */
const machine = (a: number, b: number) => (w: number): number => a + b * w;

test("a probe no slower than the run without work (a loaded machine) does not send the WORK to its largest", () => {
  // As measured once: the run at WORK 0 slowed by neighbours more than the probe.
  const work = firstWork(50, 12, 11.5);
  assert.equal(work, PROBE_WORK);
  assert.ok(work < WORK_MAX);
});

test("a slope made tiny by noise moves the first guess at most STEP_MAX times from the probe's WORK", () => {
  assert.equal(firstWork(50, 8, 8 + 1e-6), PROBE_WORK * STEP_MAX);
});

test("on a steady machine the first guess is the line's answer, and it reaches the rate", () => {
  const run = machine(7.5, 3.8e-4);
  const work = firstWork(50, run(0), run(PROBE_WORK));
  assert.ok(Math.abs(run(work) - msPerMib(50)) < 0.01, `WORK ${work} gives ${run(work)} ms per MiB`);
});

test("a machine too slow for the rate even without work gets WORK 0", () => {
  assert.equal(firstWork(50, msPerMib(50) + 1, msPerMib(50) + 5), 0);
  assert.equal(nextWork(50, msPerMib(50) + 1, 1000, msPerMib(50) + 3), 0);
});

test("each correction stays within STEP_MAX of the WORK it follows", () => {
  // Far too slow (a run slowed tenfold by the load): down by STEP_MAX at most.
  assert.equal(nextWork(50, 8, 40_000, 800), 10_000);
  // Far too fast: up by STEP_MAX at most.
  assert.equal(nextWork(50, 8, 1000, 8.1), 4000);
  // No slower than without work: up, within STEP_MAX.
  assert.equal(nextWork(50, 8, 1000, 7), 4000);
  // From WORK 0: the probe's WORK.
  assert.equal(nextWork(50, 8, 0, 9), PROBE_WORK);
});

test("the corrections converge on a steady machine from a bad first guess", () => {
  const run = machine(7.5, 3.8e-4);
  let work = 1000;
  for (let i = 0; i < 4; i += 1) work = nextWork(50, run(0), work, run(work));
  assert.ok(Math.abs(run(work) - msPerMib(50)) / msPerMib(50) < 0.1, `WORK ${work} gives ${run(work)} ms per MiB`);
});

test("noise never takes a calibration to dirtier's largest WORK", () => {
  // Every run's time scaled by a load that comes and goes (a fixed sequence: the test is the same each time).
  const run = machine(7.5, 3.8e-4);
  const load = [1, 6, 0.9, 9, 1.2, 0.5, 12, 1, 3, 0.7];
  let k = 0;
  const measure = (w: number): number => run(w) * (load[k++ % load.length] as number);
  let work = firstWork(50, measure(0), measure(PROBE_WORK));
  let most = work;
  for (let i = 0; i < 8; i += 1) {
    work = nextWork(50, run(0), work, measure(work));
    most = Math.max(most, work);
  }
  assert.ok(most <= PROBE_WORK * STEP_MAX ** 4, `WORK reached ${most}`);
});
