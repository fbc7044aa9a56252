import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { Errno } from "./mod.js";
import { Guest, remove_temp_dirs, temp_dir } from "./_testing.js";
import { Fdstat, FdFlags, OFlags, RIGHTS_FILE, Rights } from "./_layout.js";

after(remove_temp_dirs);

function start(): ReturnType<typeof Guest.start> & { dir: string } {
  const dir = temp_dir();
  return { dir, ...Guest.start({ preopens: [{ host_path: dir, guest_path: "/d" }] }) };
}

describe("path_open oflags", () => {
  test("CREAT creates; without it a missing file is noent", () => {
    const { guest, dir } = start();
    assert.equal(guest.open(3, "new.txt")[0], Errno.noent);
    assert.equal(guest.open(3, "new.txt", { oflags: OFlags.creat })[0], Errno.success);
    assert.equal(existsSync(join(dir, "new.txt")), true);
    assert.equal(guest.open(3, "missing/new.txt", { oflags: OFlags.creat })[0], Errno.noent);
    guest.host.close();
  });

  test("EXCL on an existing file is exist", () => {
    const { guest, dir } = start();
    writeFileSync(join(dir, "f"), "x");
    assert.equal(guest.open(3, "f", { oflags: OFlags.creat | OFlags.excl })[0], Errno.exist);
    mkdirSync(join(dir, "d"));
    assert.equal(guest.open(3, "d", { oflags: OFlags.creat | OFlags.excl })[0], Errno.exist);
    assert.equal(guest.open(3, "g", { oflags: OFlags.creat | OFlags.excl })[0], Errno.success);
    guest.host.close();
  });

  test("DIRECTORY on a file is notdir; a trailing slash too", () => {
    const { guest, dir } = start();
    writeFileSync(join(dir, "f"), "x");
    assert.equal(guest.open(3, "f", { oflags: OFlags.directory })[0], Errno.notdir);
    assert.equal(guest.open(3, "f/")[0], Errno.notdir);
    assert.equal(guest.open(3, "f/x")[0], Errno.notdir);
  });

  test("TRUNC empties the file", () => {
    const { guest, dir } = start();
    writeFileSync(join(dir, "f"), "old contents");
    const [errno, fd] = guest.open(3, "f", { oflags: OFlags.trunc });
    assert.equal(errno, Errno.success);
    assert.equal(readFileSync(join(dir, "f"), "utf8"), "");
    guest.write(fd, "new");
    assert.equal(readFileSync(join(dir, "f"), "utf8"), "new");
    guest.host.close();
  });

  test("directories open read-only; writing, creating or truncating one is isdir", () => {
    const { guest, dir } = start();
    mkdirSync(join(dir, "d"));
    assert.equal(guest.open(3, "d", { oflags: OFlags.directory })[0], Errno.success);
    assert.equal(guest.open(3, "d")[0], Errno.isdir, "all rights includes write");
    assert.equal(guest.open(3, "d", { rights: Rights.fd_readdir, oflags: OFlags.creat })[0], Errno.isdir);
    assert.equal(guest.open(3, "d", { rights: Rights.fd_readdir, oflags: OFlags.trunc })[0], Errno.isdir);
    assert.equal(guest.open(3, ".", { rights: Rights.fd_readdir })[0], Errno.success);
    // fd_datasync and fd_sync are directory rights, not a wish to write.
    assert.equal(guest.open(3, "d", { rights: Rights.fd_readdir | Rights.fd_datasync | Rights.fd_sync, oflags: OFlags.directory })[0], Errno.success);
    assert.equal(guest.open(3, "new/", { oflags: OFlags.creat })[0], Errno.isdir);
    assert.equal(guest.open(3, "new2", { oflags: OFlags.creat | OFlags.directory })[0], Errno.inval);
    guest.host.close();
  });

  test("unknown oflags or fdflags are inval; sync fdflags are accepted", () => {
    const { guest } = start();
    assert.equal(guest.open(3, "f", { oflags: 0x10 | OFlags.creat })[0], Errno.inval);
    assert.equal(guest.open(3, "f", { oflags: OFlags.creat, fdflags: 0x20 })[0], Errno.inval);
    const [errno, fd] = guest.open(3, "f", { oflags: OFlags.creat, fdflags: FdFlags.dsync | FdFlags.rsync | FdFlags.sync | FdFlags.nonblock });
    assert.equal(errno, Errno.success);
    assert.deepEqual(guest.write(fd, "synced"), [Errno.success, 6]);
    guest.host.close();
  });

  test("the new fd gets the requested rights narrowed by the directory's inheriting rights", () => {
    const { guest } = start();
    const st = guest.alloc(Fdstat.size);
    const [, fd] = guest.open(3, "f", { oflags: OFlags.creat, rights: Rights.fd_read | Rights.fd_readdir | Rights.path_open });
    guest.call("fd_fdstat_get", fd, st);
    assert.equal(guest.u64(st + 8), Rights.fd_read);
    assert.equal(guest.call("fd_fdstat_set_rights", 3, -1n, Rights.fd_read), Errno.notcapable);
    const keep = guest.alloc(Fdstat.size);
    guest.call("fd_fdstat_get", 3, keep);
    assert.equal(guest.call("fd_fdstat_set_rights", 3, guest.u64(keep + 8), Rights.fd_read), Errno.success);
    const [, narrowed] = guest.open(3, "f");
    guest.call("fd_fdstat_get", narrowed, st);
    assert.equal(guest.u64(st + 8), Rights.fd_read);
    assert.equal(guest.write(narrowed, "x")[0], Errno.badf);
    assert.notEqual(RIGHTS_FILE & Rights.fd_write, 0n);
    guest.host.close();
  });

  test("CREAT needs path_create_file on the directory", () => {
    const { guest } = start();
    const keep = guest.alloc(Fdstat.size);
    guest.call("fd_fdstat_get", 3, keep);
    const base = guest.u64(keep + 8) & ~Rights.path_create_file;
    assert.equal(guest.call("fd_fdstat_set_rights", 3, base, guest.u64(keep + 16)), Errno.success);
    assert.equal(guest.open(3, "f", { oflags: OFlags.creat })[0], Errno.notcapable);
  });
});

describe("path_open and symlinks", () => {
  test("the final symlink is followed only with SYMLINK_FOLLOW; otherwise loop", () => {
    const { guest, dir } = start();
    writeFileSync(join(dir, "target"), "via link");
    symlinkSync("target", join(dir, "link"));
    const [errno, fd] = guest.open(3, "link");
    assert.equal(errno, Errno.success);
    assert.deepEqual(guest.read(fd, 20), [Errno.success, "via link"]);
    assert.equal(guest.open(3, "link", { follow: false })[0], Errno.loop);
    guest.host.close();
  });

  test("CREAT through a dangling symlink creates its target; with EXCL it is exist", () => {
    const { guest, dir } = start();
    mkdirSync(join(dir, "sub"));
    symlinkSync("sub/made", join(dir, "dangling"));
    assert.equal(guest.open(3, "dangling", { oflags: OFlags.creat | OFlags.excl })[0], Errno.exist);
    const [errno, fd] = guest.open(3, "dangling", { oflags: OFlags.creat });
    assert.equal(errno, Errno.success);
    guest.write(fd, "made");
    assert.equal(readFileSync(join(dir, "sub", "made"), "utf8"), "made");
    guest.host.close();
  });

  test("intermediate symlinks to directories are walked", () => {
    const { guest, dir } = start();
    mkdirSync(join(dir, "real"));
    writeFileSync(join(dir, "real", "f"), "deep");
    symlinkSync("real", join(dir, "alias"));
    const [errno, fd] = guest.open(3, "alias/f", { follow: false });
    assert.equal(errno, Errno.success);
    assert.deepEqual(guest.read(fd, 10), [Errno.success, "deep"]);
    guest.host.close();
  });

  test("FIFOs are notsup (opening one could block the worker)", (t) => {
    const { guest, dir } = start();
    try {
      execFileSync("mkfifo", [join(dir, "fifo")]);
    } catch {
      t.skip("mkfifo not available");
      return;
    }
    assert.equal(guest.open(3, "fifo", { rights: Rights.fd_read })[0], Errno.notsup);
  });
});
