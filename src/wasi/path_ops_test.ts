import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { Errno } from "./mod.js";
import { Guest, remove_temp_dirs, temp_dir, symlink, two_paths } from "./_testing.js";
import { Filestat, Filetype, FstFlags, LOOKUP_SYMLINK_FOLLOW, OFlags } from "./_layout.js";

after(remove_temp_dirs);

function start(): ReturnType<typeof Guest.start> & { dir: string } {
  const dir = temp_dir();
  return { dir, ...Guest.start({ preopens: [{ host_path: dir, guest_path: "/d" }] }) };
}

function readlink(guest: Guest, fd: number, path: string, buf_len: number): [number, string] {
  const buf = guest.alloc(buf_len, 1);
  const used = guest.alloc(4, 4);
  const errno = guest.path_call("path_readlink", fd, path, buf, buf_len, used);
  return [errno, errno === 0 ? guest.text(buf, guest.u32(used)) : ""];
}

describe("directories", () => {
  test("create and remove", () => {
    const { guest, dir } = start();
    assert.equal(guest.path_call("path_create_directory", 3, "a"), Errno.success);
    assert.equal(statSync(join(dir, "a")).isDirectory(), true);
    assert.equal(guest.path_call("path_create_directory", 3, "a"), Errno.exist);
    assert.equal(guest.path_call("path_create_directory", 3, "a/b/"), Errno.success);
    assert.equal(guest.path_call("path_create_directory", 3, "x/y"), Errno.noent);
    assert.equal(guest.path_call("path_create_directory", 3, "."), Errno.exist);
    assert.equal(guest.path_call("path_remove_directory", 3, "a"), Errno.notempty);
    assert.equal(guest.path_call("path_remove_directory", 3, "a/b"), Errno.success);
    assert.equal(guest.path_call("path_remove_directory", 3, "a/b"), Errno.noent);
    writeFileSync(join(dir, "f"), "");
    assert.equal(guest.path_call("path_remove_directory", 3, "f"), Errno.notdir);
    // "." and ".." name no entry: the preopen itself can never be removed.
    assert.equal(guest.path_call("path_remove_directory", 3, "."), Errno.inval);
    assert.equal(guest.path_call("path_remove_directory", 3, "a/.."), Errno.inval);
    assert.equal(existsSync(dir), true);
    assert.equal(guest.path_call("path_remove_directory", 3, "a/"), Errno.success);
  });

  test("removing a symlink to a directory does not remove the directory", () => {
    const { guest, dir } = start();
    mkdirSync(join(dir, "real"));
    symlinkSync("real", join(dir, "link"));
    assert.equal(guest.path_call("path_remove_directory", 3, "link"), Errno.notdir);
    assert.equal(existsSync(join(dir, "real")), true);
  });
});

describe("unlink", () => {
  test("removes files and symlinks (not their targets); directories are isdir", () => {
    const { guest, dir } = start();
    writeFileSync(join(dir, "f"), "");
    writeFileSync(join(dir, "t"), "target");
    symlinkSync("t", join(dir, "l"));
    mkdirSync(join(dir, "d"));
    assert.equal(guest.path_call("path_unlink_file", 3, "f"), Errno.success);
    assert.equal(existsSync(join(dir, "f")), false);
    assert.equal(guest.path_call("path_unlink_file", 3, "f"), Errno.noent);
    assert.equal(guest.path_call("path_unlink_file", 3, "l"), Errno.success);
    assert.equal(readFileSync(join(dir, "t"), "utf8"), "target");
    assert.equal(guest.path_call("path_unlink_file", 3, "d"), Errno.isdir);
    assert.equal(guest.path_call("path_unlink_file", 3, "t/"), Errno.notdir);
    assert.equal(guest.path_call("path_unlink_file", 3, "."), Errno.isdir);
  });
});

describe("rename", () => {
  test("files and directories, within and across preopens", () => {
    const a = temp_dir();
    const b = temp_dir();
    const { guest } = Guest.start({ preopens: [{ host_path: a, guest_path: "/a" }, { host_path: b, guest_path: "/b" }] });
    writeFileSync(join(a, "f"), "moved");
    mkdirSync(join(a, "d"));
    assert.equal(two_paths(guest, "path_rename", 3, "f", 3, "d/g"), Errno.success);
    assert.equal(readFileSync(join(a, "d", "g"), "utf8"), "moved");
    assert.equal(two_paths(guest, "path_rename", 3, "d", 4, "e"), Errno.success);
    assert.equal(readFileSync(join(b, "e", "g"), "utf8"), "moved");
    assert.equal(two_paths(guest, "path_rename", 3, "nope", 3, "x"), Errno.noent);
    assert.equal(two_paths(guest, "path_rename", 4, "e", 4, "."), Errno.inval);
    assert.equal(two_paths(guest, "path_rename", 4, "e", 4, "../x"), Errno.notcapable);
    writeFileSync(join(b, "file"), "");
    assert.equal(two_paths(guest, "path_rename", 4, "file", 4, "e"), Errno.isdir);
    assert.equal(two_paths(guest, "path_rename", 4, "file", 4, "other/"), Errno.notdir);
  });

  test("open fds follow a renamed directory", () => {
    const { guest, dir } = start();
    mkdirSync(join(dir, "old"));
    writeFileSync(join(dir, "old", "f"), "inside");
    const [, d] = guest.open(3, "old", { oflags: OFlags.directory });
    assert.equal(two_paths(guest, "path_rename", 3, "old", 3, "new"), Errno.success);
    const [errno, f] = guest.open(d, "f");
    assert.equal(errno, Errno.success);
    assert.deepEqual(guest.read(f, 10), [Errno.success, "inside"]);
    guest.host.close();
  });
});

describe("symlink and readlink", () => {
  test("creates relative symlinks and reads them back, truncating to the buffer", () => {
    const { guest, dir } = start();
    mkdirSync(join(dir, "sub"));
    assert.equal(symlink(guest, "../target-file", 3, "sub/link"), Errno.success);
    assert.equal(readlinkSync(join(dir, "sub", "link")), "../target-file");
    assert.deepEqual(readlink(guest, 3, "sub/link", 64), [Errno.success, "../target-file"]);
    assert.deepEqual(readlink(guest, 3, "sub/link", 5), [Errno.success, "../ta"]);
    assert.equal(symlink(guest, "x", 3, "sub/link"), Errno.exist);
    assert.equal(readlink(guest, 3, "sub", 10)[0], Errno.inval);
    assert.equal(readlink(guest, 3, "missing", 10)[0], Errno.noent);
  });

  test("symlinks pointing outside the sandbox cannot be created", () => {
    const { guest, dir } = start();
    assert.equal(symlink(guest, "/etc/passwd", 3, "abs"), Errno.notcapable);
    assert.equal(symlink(guest, "../outside", 3, "up"), Errno.notcapable);
    assert.equal(symlink(guest, "a/../../outside", 3, "up2"), Errno.notcapable);
    assert.equal(existsSync(join(dir, "abs")), false);
  });
});

describe("link", () => {
  test("hard-links files; directories are perm; an existing target is exist", () => {
    const { guest, dir } = start();
    writeFileSync(join(dir, "f"), "shared");
    mkdirSync(join(dir, "d"));
    const [a, a_len] = guest.str("f");
    const [b, b_len] = guest.str("d/g");
    assert.equal(guest.call("path_link", 3, 0, a, a_len, 3, b, b_len), Errno.success);
    assert.equal(statSync(join(dir, "f")).nlink, 2);
    assert.equal(readFileSync(join(dir, "d", "g"), "utf8"), "shared");
    assert.equal(guest.call("path_link", 3, 0, a, a_len, 3, b, b_len), Errno.exist);
    const [d, d_len] = guest.str("d");
    const [e, e_len] = guest.str("e");
    assert.equal(guest.call("path_link", 3, 0, d, d_len, 3, e, e_len), Errno.perm);
  });

  test("with SYMLINK_FOLLOW links the target, without it the symlink itself", () => {
    const { guest, dir } = start();
    writeFileSync(join(dir, "t"), "t");
    symlinkSync("t", join(dir, "l"));
    const [l, l_len] = guest.str("l");
    const [x, x_len] = guest.str("x");
    const [y, y_len] = guest.str("y");
    assert.equal(guest.call("path_link", 3, LOOKUP_SYMLINK_FOLLOW, l, l_len, 3, x, x_len), Errno.success);
    assert.equal(lstatSync(join(dir, "x")).isFile(), true);
    assert.equal(guest.call("path_link", 3, 0, l, l_len, 3, y, y_len), Errno.success);
    assert.equal(lstatSync(join(dir, "y")).isSymbolicLink(), true);
  });
});

describe("path filestat", () => {
  test("get follows symlinks only when asked", () => {
    const { guest, dir } = start();
    writeFileSync(join(dir, "t"), "12345");
    symlinkSync("t", join(dir, "l"));
    const st = guest.alloc(Filestat.size);
    assert.equal(guest.call("path_filestat_get", 3, 0, ...guest.str("l"), st), Errno.success);
    assert.equal(guest.u8(st + Filestat.filetype), Filetype.symbolic_link);
    assert.equal(guest.u64(st + Filestat.filesize), 1n);
    assert.equal(guest.call("path_filestat_get", 3, LOOKUP_SYMLINK_FOLLOW, ...guest.str("l"), st), Errno.success);
    assert.equal(guest.u8(st + Filestat.filetype), Filetype.regular_file);
    assert.equal(guest.u64(st + Filestat.filesize), 5n);
    assert.equal(guest.u64(st + Filestat.ino), statSync(join(dir, "t"), { bigint: true }).ino);
    assert.equal(guest.call("path_filestat_get", 3, 0, ...guest.str("missing"), st), Errno.noent);
    assert.equal(guest.call("path_filestat_get", 3, 0, ...guest.str("."), st), Errno.success);
    assert.equal(guest.u8(st + Filestat.filetype), Filetype.directory);
  });

  test("set_times on a path, on the link itself when not following", () => {
    const { guest, dir } = start();
    writeFileSync(join(dir, "t"), "");
    symlinkSync("t", join(dir, "l"));
    const mtim = 1_200_000_000_123_456_789n;
    const flags = FstFlags.mtim;
    assert.equal(guest.call("path_filestat_set_times", 3, LOOKUP_SYMLINK_FOLLOW, ...guest.str("l"), 0n, mtim, flags), Errno.success);
    assert.equal(statSync(join(dir, "t"), { bigint: true }).mtimeNs, mtim);
    const link_mtim = 1_300_000_000_000_000_001n;
    assert.equal(guest.call("path_filestat_set_times", 3, 0, ...guest.str("l"), 0n, link_mtim, flags), Errno.success);
    assert.equal(lstatSync(join(dir, "l"), { bigint: true }).mtimeNs, link_mtim);
    assert.equal(statSync(join(dir, "t"), { bigint: true }).mtimeNs, mtim);
    assert.equal(guest.call("path_filestat_set_times", 3, 0, ...guest.str("t"), 0n, 0n, FstFlags.mtim | FstFlags.mtim_now), Errno.inval);
  });
});
