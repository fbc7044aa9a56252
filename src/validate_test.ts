/** The validation helper and its building blocks. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as v from "valibot";
import { FerryError } from "./errors.js";
import { base64, integer, list, parse, parseJson, queryUint, text, Uint } from "./validate.js";

function rejects(fn: () => unknown, code: string, message: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof FerryError && e.code === code && message.test(e.message));
}

describe("parse", () => {
  const Body = v.object({ a: Uint, b: v.optional(list(v.object({ c: text(3) }), 2), []) });

  it("returns the value typed, defaults filled in and unknown keys dropped", () => {
    assert.deepEqual(parse(Body, { a: 1, extra: true }, "body"), { a: 1, b: [] });
  });

  it("names what failed and the path of each offending field", () => {
    rejects(() => parse(Body, { a: 1.5 }, "request body"), "ERR_BAD_REQUEST", /^request body: a: must be a whole number$/);
    rejects(() => parse(Body, { a: 1, b: [{ c: "long" }] }, "body"), "ERR_BAD_REQUEST", /b\.0\.c: must have at most 3 characters/);
    rejects(() => parse(Body, null, "body"), "ERR_BAD_REQUEST", /^body: want Object, got null$/);
    rejects(() => parse(Body, { a: -1 }, "OFFER frame", { code: "ERR_MIGRATION_PROTOCOL" }), "ERR_MIGRATION_PROTOCOL", /OFFER frame: a: must be at least 0/);
  });

  it("reports a few issues, and how many more", () => {
    const Many = v.object({ a: Uint, b: Uint, c: Uint, d: Uint, e: Uint });
    rejects(() => parse(Many, {}, "body"), "ERR_BAD_REQUEST", /\(and 2 more\)$/);
  });

  it("treats text that is not JSON as a bad shape", () => {
    rejects(() => parseJson(Body, Buffer.from("{"), "body"), "ERR_BAD_REQUEST", /^body is not JSON$/);
    assert.deepEqual(parseJson(Body, '{"a": 3}', "body"), { a: 3, b: [] });
  });
});

describe("building blocks", () => {
  it("integer refuses NaN, infinities, fractions and what is out of range", () => {
    const s = integer(0, 10);
    for (const bad of [NaN, Infinity, -Infinity, 0.5, -1, 11, "1", null]) assert.equal(v.safeParse(s, bad).success, false, String(bad));
    for (const good of [0, 10, 5]) assert.equal(v.safeParse(s, good).success, true);
  });

  it("text refuses NUL and what is too long", () => {
    assert.equal(v.safeParse(text(4), "a\0b").success, false);
    assert.equal(v.safeParse(text(4), "abcde").success, false);
    assert.equal(v.safeParse(text(4, 1), "").success, false);
    assert.equal(v.safeParse(text(4), "abcd").success, true);
  });

  it("base64 refuses other characters and bounds the decoded size", () => {
    assert.equal(v.safeParse(base64(3), "YWJj").success, true);
    assert.equal(v.safeParse(base64(3), "YWJjZA==").success, false);
    assert.equal(v.safeParse(base64(100), "!!").success, false);
  });

  it("queryUint takes plain decimal whole numbers only", () => {
    assert.equal(parse(queryUint(100), "42", "q"), 42);
    for (const bad of ["1.5", "-1", "1e3", " 1", "0x10", "", "NaN", "101", "99999999999999999"]) {
      assert.equal(v.safeParse(queryUint(100), bad).success, false, bad);
    }
  });
});
