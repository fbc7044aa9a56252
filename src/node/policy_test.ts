/** What a node allows: directories under its roots (without saying what exists outside), low ports. */
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { FerryError } from "../errors.js";
import { Policy } from "./policy.js";

const code = (fn: () => unknown): string => {
  try {
    fn();
    return "ok";
  } catch (err: unknown) {
    if (err instanceof FerryError) return err.code;
    throw err;
  }
};

describe("node policy", () => {
  const base = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "ferry-policy-")));
  const root = path.join(base, "root");
  const outside = path.join(base, "outside");
  fs.mkdirSync(path.join(root, "d", "e"), { recursive: true });
  fs.mkdirSync(path.join(outside, "x"), { recursive: true });
  fs.writeFileSync(path.join(root, "d", "f.txt"), "f");
  fs.writeFileSync(path.join(root, "file"), "not a dir");
  fs.symlinkSync(outside, path.join(root, "out"));
  fs.symlinkSync(path.join(outside, "missing"), path.join(root, "dangling"));
  fs.symlinkSync(path.join(root, "d"), path.join(root, "in"));
  fs.symlinkSync("loop", path.join(root, "loop"));
  fs.symlinkSync(root, path.join(base, "alias"));
  after(() => fs.rmSync(base, { recursive: true, force: true }));
  const policy = new Policy("n1", { allow_dirs: [root] });
  const dir = (host: string): string => code(() => policy.preopens([{ host, guest: "/g" }]));

  it("gives directories under a root, also through symlinks that stay inside", () => {
    for (const host of [root, path.join(root, "d"), path.join(root, "d", "e"), path.join(root, "in")]) assert.equal(dir(host), "ok", host);
  });

  it("refuses whatever lies outside, existing or not, in the same way", () => {
    for (const host of ["/", "/etc", "/etc/nope", outside, path.join(outside, "x"), path.join(outside, "nope"), path.join(root, "out"), path.join(root, "out", "x"), path.join(root, "out", "nope"), path.join(root, "dangling"), path.join(root, "dangling", "deeper"), `${root}x`]) {
      assert.equal(dir(host), "ERR_FORBIDDEN", host);
    }
    assert.equal(dir(`${root}/../outside`), "ERR_FORBIDDEN", "a path that is not normal is not trusted");
    // As written it lies outside: refused before anything looks at where it leads.
    assert.equal(dir(path.join(base, "alias", "d")), "ERR_FORBIDDEN");
  });

  it("says missing only of what would lie under a root", () => {
    assert.equal(dir(path.join(root, "nope")), "ERR_MISSING_DIRECTORY");
    assert.equal(dir(path.join(root, "d", "nope", "deeper")), "ERR_MISSING_DIRECTORY");
    assert.equal(dir(path.join(root, "file")), "ERR_MISSING_DIRECTORY");
    assert.equal(dir(path.join(root, "loop")), "ERR_MISSING_DIRECTORY");
  });

  it("allows no directory without a root; a root that does not exist is a usage error", () => {
    assert.equal(code(() => new Policy("n1").preopens([{ host: root, guest: "/g" }])), "ERR_FORBIDDEN");
    assert.equal(code(() => new Policy("n1", { allow_dirs: [path.join(base, "nope")] })), "ERR_USAGE");
    assert.equal(code(() => new Policy("n1", { allow_dirs: ["/"] }).preopens([{ host: "/etc", guest: "/g" }])), "ok");
  });

  it("checks open files under the process's directories before it checks they exist", () => {
    const dirs = [{ host: path.join(root, "d") }];
    assert.equal(code(() => policy.checkOpenFiles("p", [path.join(root, "d", "f.txt")], dirs)), "ok");
    assert.equal(code(() => policy.checkOpenFiles("p", ["/etc/shadow"], dirs)), "ERR_FORBIDDEN");
    assert.equal(code(() => policy.checkOpenFiles("p", ["/etc/no-such-file"], dirs)), "ERR_FORBIDDEN");
    assert.equal(code(() => policy.checkOpenFiles("p", [path.join(root, "d", "gone")], dirs)), "ERR_MISSING_FILE");
  });

  it("refuses ports 1-1023 unless allowed", () => {
    assert.equal(code(() => policy.checkListen(["127.0.0.1:80"])), "ERR_FORBIDDEN");
    assert.equal(code(() => policy.checkListen(["[::1]:1023"])), "ERR_FORBIDDEN");
    assert.equal(code(() => policy.checkListen(["127.0.0.1:0", "127.0.0.1:1024"])), "ok");
    assert.equal(code(() => new Policy("n1", { allow_low_ports: true }).checkListen(["127.0.0.1:80"])), "ok");
  });
});
