import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FerryError } from "../errors.js";
import { retry, retryable } from "./_retry.js";

describe("retry", () => {
  it("tries again on a failure that may pass, and returns the first success", async () => {
    let n = 0;
    const value = await retry(async () => {
      n += 1;
      if (n < 3) throw new FerryError("ERR_LOCATION_PENDING", "not yet");
      return n;
    }, { give_up_ms: 10_000 });
    assert.equal(value, 3);
  });

  it("stops at once on a refusal that will never change", async () => {
    let n = 0;
    await assert.rejects(
      retry(async () => {
        n += 1;
        throw new FerryError("ERR_LOCATION_STALE", "stale");
      }, { give_up_ms: 10_000 }),
      (err: unknown) => err instanceof FerryError && err.code === "ERR_LOCATION_STALE",
    );
    assert.equal(n, 1);
  });

  it("gives up with the last failure once its time is up", async () => {
    await assert.rejects(
      retry(() => Promise.reject(new FerryError("ERR_PEER_UNREACHABLE", "down")), { give_up_ms: 100 }),
      (err: unknown) => err instanceof FerryError && err.code === "ERR_PEER_UNREACHABLE",
    );
    assert.equal(retryable(new Error("plain")), false);
  });
});
