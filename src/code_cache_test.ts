import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { readChecked, writeChecked } from "./code_cache.js";

describe("files kept with their digest", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-code-cache-"));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("read back as written, in a folder and a file of this user's only", () => {
    const file = path.join(dir, "made", "a.bin");
    const data = Buffer.from("what was kept");
    assert.equal(writeChecked(file, data), true);
    assert.deepEqual(readChecked(file), data);
    assert.equal(fs.statSync(path.dirname(file)).mode & 0o777, 0o700);
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ["a.bin"], "no temporary file is left");
  });

  it("are not read when missing, cut short or changed", () => {
    assert.equal(readChecked(path.join(dir, "missing.bin")), undefined);
    const file = path.join(dir, "b.bin");
    assert.equal(writeChecked(file, Buffer.from("0123456789")), true);
    const whole = fs.readFileSync(file);
    fs.writeFileSync(file, whole.subarray(0, whole.length - 1));
    assert.equal(readChecked(file), undefined, "cut short");
    const changed = Buffer.from(whole);
    changed.writeUInt8(changed.readUInt8(changed.length - 1) ^ 1, changed.length - 1);
    fs.writeFileSync(file, changed);
    assert.equal(readChecked(file), undefined, "a byte changed");
    fs.writeFileSync(file, whole.subarray(0, 32));
    assert.equal(readChecked(file), undefined, "a digest and nothing else");
  });

  it("say so when the folder cannot be written, and leave nothing behind", () => {
    const blocker = path.join(dir, "a-file");
    fs.writeFileSync(blocker, "");
    assert.equal(writeChecked(path.join(blocker, "c.bin"), Buffer.from("x")), false);
  });
});
