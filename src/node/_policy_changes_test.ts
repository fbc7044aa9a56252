/** `ferry policy set`: changes checked whole, applied typed; a bad one changes nothing. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FerryError } from "../errors.js";
import { POLICY_PARAMS_DEFAULT } from "../policy/mod.js";
import { applyPolicyChanges } from "./_policy_changes.js";

const current = { params: POLICY_PARAMS_DEFAULT, balance: true, cpus: 2 };
const badRequest = (e: unknown): boolean => e instanceof FerryError && e.code === "ERR_BAD_REQUEST";

describe("policy changes", () => {
  it("applies numbers, mode, colocate, balance and cpus from strings or typed values", () => {
    const next = applyPolicyChanges(current, { hysteresis: "0.5", moves_per_round_max: 2, mode: "pack", colocate: "false", balance: "off", cpus: "4" });
    assert.equal(next.params.hysteresis, 0.5);
    assert.equal(next.params.moves_per_round_max, 2);
    assert.equal(next.params.mode, "pack");
    assert.equal(next.params.colocate, false);
    assert.deepEqual([next.balance, next.cpus], [false, 4]);
    assert.equal(current.params.hysteresis, POLICY_PARAMS_DEFAULT.hysteresis, "the current settings are left as they were");
  });

  it("refuses unknown keys, the cost model, and values out of range or of the wrong kind", () => {
    const sets: Record<string, string | number | boolean>[] = [{ nope: "1" }, { model: "1" }, { hysteresis: "-1" }, { hysteresis: "x" }, { hysteresis: true }, { moves_per_round_max: "1.5" }, { mode: "fast" }, { balance: "maybe" }, { cpus: "0" }, { colocate: "1" }, { toString: "1" }];
    for (const set of sets) {
      assert.throws(() => applyPolicyChanges(current, set), badRequest, JSON.stringify(set));
    }
  });
});
