import { describe, test } from "node:test";
import assert from "node:assert/strict";

import { Errno, ErrnoError, errno_name, errno_of } from "./errno.js";

describe("errno", () => {
  test("values follow the witx enum order, 0 to 76", () => {
    const values = Object.values(Errno);
    assert.equal(values.length, 77);
    values.forEach((v, i) => assert.equal(v, i));
  });

  test("the values wasi-libc programs check most", () => {
    const expected: Record<string, number> = {
      success: 0, "2big": 1, acces: 2, again: 6, badf: 8, exist: 20, fault: 21, inval: 28, io: 29, isdir: 31,
      loop: 32, nametoolong: 37, noent: 44, nosys: 52, notdir: 54, notempty: 55, notsup: 58, perm: 63,
      spipe: 70, xdev: 75, notcapable: 76,
    };
    for (const [name, value] of Object.entries(expected)) assert.equal(Errno[name as keyof typeof Errno], value, name);
  });

  test("Node system errors map through the table; unknown codes are io; other errors are not mapped", () => {
    const sys = (code: string) => Object.assign(new Error(code), { code, syscall: "open" });
    assert.equal(errno_of(sys("ENOENT")), Errno.noent);
    assert.equal(errno_of(sys("EEXIST")), Errno.exist);
    assert.equal(errno_of(sys("ENOTEMPTY")), Errno.notempty);
    assert.equal(errno_of(sys("EXDEV")), Errno.xdev);
    assert.equal(errno_of(sys("ELOOP")), Errno.loop);
    assert.equal(errno_of(sys("EWHATEVER")), Errno.io);
    assert.equal(errno_of(new ErrnoError(Errno.spipe)), Errno.spipe);
    assert.equal(errno_of(new TypeError("bug")), undefined);
    assert.equal(errno_of(Object.assign(new RangeError("x"), { code: "ERR_OUT_OF_RANGE" })), undefined);
    assert.equal(errno_of(42), undefined);
    assert.equal(errno_name(Errno.notcapable), "notcapable");
  });

  test("an ErrnoError holds its errno and message but no stack frames, and leaves the stack trace limit as it was", () => {
    const before = Error.stackTraceLimit;
    const error = new ErrnoError(Errno.noent, "no such file");
    assert.equal(error.errno, Errno.noent);
    assert.equal(error.message, "no such file");
    assert.ok(error instanceof Error);
    assert.equal(error.stack, "ErrnoError: no such file");
    assert.equal(Error.stackTraceLimit, before);
    // Other errors still capture their frames.
    assert.ok((new Error("x").stack ?? "").includes("\n    at "));
  });
});
