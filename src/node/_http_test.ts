/** Error answers take their status from the registry; anything but a FerryError is the node's fault. */
import assert from "node:assert/strict";
import type http from "node:http";
import { describe, it } from "node:test";
import { FerryError } from "../errors.js";
import { sendError } from "./_http.js";

function answer(err: unknown): { status: number; body: { error: { code: string; message: string } } } {
  const got = { status: 0, body: "" };
  const res = {
    headersSent: false,
    writeHead(status: number) {
      got.status = status;
      return this;
    },
    end(body: string) {
      got.body = body;
    },
  } as unknown as http.ServerResponse;
  sendError(res, err);
  return { status: got.status, body: JSON.parse(got.body) as { error: { code: string; message: string } } };
}

describe("sendError", () => {
  it("answers a FerryError with its code's registered status", () => {
    assert.equal(answer(new FerryError("ERR_FORBIDDEN", "no")).status, 403);
    assert.equal(answer(new FerryError("ERR_QUOTA", "full")).status, 503);
    assert.deepEqual(answer(new FerryError("ERR_BAD_REQUEST", "bad")).body, { error: { code: "ERR_BAD_REQUEST", message: "bad" } });
  });

  it("answers anything else with 500 ERR_INTERNAL, never a 4xx", () => {
    for (const err of [new TypeError("x is undefined"), new RangeError("offset"), "a string", Object.assign(new Error("fs"), { code: "ENOENT" })]) {
      const a = answer(err);
      assert.equal(a.status, 500);
      assert.equal(a.body.error.code, "ERR_INTERNAL");
    }
  });
});
