/** The standby ledger: reservations within the quota, given back once. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FerryError } from "../errors.js";
import { StandbyLedger } from "./_standbys.js";

const quota = (e: unknown): boolean => e instanceof FerryError && e.code === "ERR_QUOTA";

describe("standby ledger", () => {
  it("reserves within the quota and refuses beyond it, changing nothing", () => {
    const ledger = new StandbyLedger(100);
    const a = ledger.reserve("a", 60);
    assert.throws(() => ledger.reserve("b", 41), quota);
    assert.deepEqual([ledger.count, ledger.bytes], [1, 60]);
    const b = ledger.reserve("b", 40);
    assert.throws(() => a.grow(61), quota);
    assert.equal(a.bytes, 60);
    b.release();
    a.grow(100);
    assert.deepEqual([ledger.count, ledger.bytes], [1, 100]);
    a.release();
    a.release();
    assert.deepEqual([ledger.count, ledger.bytes], [0, 0]);
    a.grow(1000);
    assert.equal(ledger.bytes, 0, "a released ticket grows nothing");
  });
});
