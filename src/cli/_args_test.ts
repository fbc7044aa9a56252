/** Sizes and durations on the command line. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseDuration, parseSize } from "./_args.js";

describe("parseSize", () => {
  it("reads bytes and binary units", () => {
    assert.equal(parseSize("4096"), 4096);
    assert.equal(parseSize("64K"), 65536);
    assert.equal(parseSize("64M"), 64 * 1024 * 1024);
    assert.equal(parseSize("1g"), 1024 ** 3);
    assert.equal(parseSize("2GiB"), 2 * 1024 ** 3);
    assert.equal(parseSize("512MB"), 512 * 1024 * 1024);
  });

  it("refuses what is not a whole size", () => {
    for (const bad of ["", "M", "1.5G", "-1", "1X", "1 M B", "0x10", "99999999999999999T"]) assert.equal(parseSize(bad), null, bad);
  });
});

describe("parseDuration", () => {
  it("reads a whole number with its unit, in milliseconds", () => {
    assert.equal(parseDuration("250ms"), 250);
    assert.equal(parseDuration("30s"), 30_000);
    assert.equal(parseDuration("10m"), 600_000);
    assert.equal(parseDuration("2h"), 7_200_000);
    assert.equal(parseDuration("1d"), 86_400_000);
  });

  it("refuses what is not one", () => {
    for (const bad of ["", "10", "1.5h", "-1s", "1w", "h", "1 h x"]) assert.equal(parseDuration(bad), null, bad);
  });
});
