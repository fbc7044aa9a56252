/** Module files: only a regular file of bounded size is read, so /dev/zero, a FIFO or a huge file is refused at once. */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { FerryError } from "../errors.js";
import { readModuleFile } from "./module_file.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-module-file-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("module files", () => {
  it("a regular file is read whole", () => {
    const file = path.join(dir, "m.wasm");
    fs.writeFileSync(file, Buffer.alloc(100_000, 3));
    assert.ok(Buffer.from(readModuleFile(file)).equals(Buffer.alloc(100_000, 3)));
  });

  it("a device, a FIFO and a directory are ERR_MODULE_NOT_FILE, without waiting or reading", () => {
    const fifo = path.join(dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    for (const file of ["/dev/zero", fifo, dir]) {
      assert.throws(() => readModuleFile(file), (e: unknown) => e instanceof FerryError && e.code === "ERR_MODULE_NOT_FILE", file);
    }
  });

  it("a file over the limit is ERR_MODULE_TOO_LARGE before it is read", () => {
    const file = path.join(dir, "huge.wasm");
    // Sparse: the size is what is checked, nothing is written or read.
    fs.writeFileSync(file, "");
    fs.truncateSync(file, 300 * 1024 * 1024);
    assert.throws(() => readModuleFile(file), { code: "ERR_MODULE_TOO_LARGE" });
    assert.throws(() => readModuleFile(file, 10), { code: "ERR_MODULE_TOO_LARGE" });
  });
});
