/**
 * Regressions of issue 10: a directory fd held across changes of the tree
 * below its preopen must not become a way out of it. Each test first builds
 * the trap the way a guest (or, where a guest cannot, another host process)
 * would, then checks that every call through the held fd stays inside.
 */

import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, linkSync, lstatSync, mkdirSync, readFileSync, renameSync, rmdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join, sep } from "node:path";

import { Errno } from "./mod.js";
import { Guest, remove_temp_dirs, temp_dir, symlink, two_paths } from "./_testing.js";
import { Filestat, LOOKUP_SYMLINK_FOLLOW, OFlags } from "./_layout.js";

after(remove_temp_dirs);

/**
 * outer/
 *   secret.txt   outside the sandbox
 *   box/         the preopen, fd 3
 *     t.txt
 */
function sandbox(): ReturnType<typeof Guest.start> & { outer: string; box: string } {
  const outer = temp_dir();
  const box = join(outer, "box");
  mkdirSync(box);
  writeFileSync(join(outer, "secret.txt"), "secret");
  writeFileSync(join(box, "t.txt"), "inside");
  return { outer, box, ...Guest.start({ preopens: [{ host_path: box, guest_path: "/box" }] }) };
}

/** `..` steps that, taken from the preopen, surely reach the host's root. */
function levels_to_root(box: string): number {
  return box.split(sep).length + 1;
}

function link(guest: Guest, fd: number, flags: number, from: string, new_fd: number, to: string): number {
  const [a, a_len] = guest.str(from);
  const [b, b_len] = guest.str(to);
  return guest.call("path_link", fd, flags, a, a_len, new_fd, b, b_len);
}

function open_dir(guest: Guest, fd: number, path: string): number {
  const [errno, dir] = guest.open(fd, path, { oflags: OFlags.directory });
  assert.equal(errno, Errno.success, `open ${path}`);
  return dir;
}

function stat_errno(guest: Guest, fd: number, path: string, follow = true): number {
  const [p, len] = guest.str(path);
  return guest.call("path_filestat_get", fd, follow ? LOOKUP_SYMLINK_FOLLOW : 0, p, len, guest.alloc(Filestat.size));
}

function readdir_errno(guest: Guest, fd: number): { errno: number; names: string[] } {
  const size = 8192;
  const buf = guest.alloc(size);
  const used_ptr = guest.alloc(4, 4);
  const errno = guest.call("fd_readdir", fd, buf, size, 0n, used_ptr);
  const names: string[] = [];
  if (errno !== Errno.success) return { errno, names };
  const used = guest.u32(used_ptr);
  for (let at = 0; at + 24 <= used; ) {
    const namlen = guest.u32(buf + at + 16);
    names.push(guest.text(buf + at + 24, namlen));
    at += 24 + namlen;
  }
  return { errno, names };
}

/**
 * Every way to use a held directory fd. None may reach what lies outside
 * the preopen; each must answer `want` (or, where `want` is undefined, any
 * error).
 */
function assert_held_fd_confined(guest: Guest, held: number, want: number | undefined, outer: string): void {
  const check = (errno: number, what: string): void => {
    if (want === undefined) assert.notEqual(errno, Errno.success, what);
    else assert.equal(errno, want, what);
  };
  check(guest.open(held, "etc/passwd")[0], "open etc/passwd");
  check(guest.open(held, "secret.txt")[0], "open secret.txt");
  check(guest.open(held, ".", { oflags: OFlags.directory })[0], "open .");
  check(guest.open(held, "probe", { oflags: OFlags.creat })[0], "create probe");
  check(readdir_errno(guest, held).errno, "fd_readdir");
  check(stat_errno(guest, held, "secret.txt"), "path_filestat_get");
  check(guest.call("fd_filestat_get", held, guest.alloc(Filestat.size)), "fd_filestat_get");
  check(guest.path_call("path_create_directory", held, "probe_dir"), "path_create_directory");
  check(guest.path_call("path_unlink_file", held, "secret.txt"), "path_unlink_file");
  check(guest.path_call("path_remove_directory", held, "box"), "path_remove_directory");
  check(symlink(guest, "t.txt", held, "probe_link"), "path_symlink");
  check(two_paths(guest, "path_rename", held, "secret.txt", 3, "stolen.txt"), "path_rename from");
  check(two_paths(guest, "path_rename", 3, "t.txt", held, "planted.txt"), "path_rename to");
  check(link(guest, held, 0, "secret.txt", 3, "stolen_link"), "path_link from");
  check(link(guest, 3, 0, "t.txt", held, "planted_link"), "path_link to");
  assert.equal(readFileSync(join(outer, "secret.txt"), "utf8"), "secret");
  for (const name of ["probe", "probe_dir", "probe_link", "planted.txt", "planted_link"]) {
    assert.equal(existsSync(join(outer, name)), false, `${name} was created outside`);
  }
  assert.equal(existsSync(join(outer, "box", "stolen.txt")), false);
  assert.equal(existsSync(join(outer, "box", "stolen_link")), false);
}

describe("issue 10: a held directory fd stays inside its preopen", () => {
  test("the reported escape: a deep symlink renamed up over a removed held directory", () => {
    for (const far of [false, true]) {
      const { guest, outer, box } = sandbox();
      // One level lands beside the preopen; more reach the host's root.
      const levels = far ? levels_to_root(box) : 1;
      // 1. A symlink deep in a tree whose ".."s do not leave the preopen...
      const deep = Array.from({ length: levels }, (_, i) => `d${i}`);
      for (let i = 1; i <= levels; i++) assert.equal(guest.path_call("path_create_directory", 3, deep.slice(0, i).join("/")), Errno.success);
      assert.equal(symlink(guest, "../".repeat(levels), 3, [...deep, "l"].join("/")), Errno.success);
      // ...renamed up to the top, where they do (refusing this is fine too).
      two_paths(guest, "path_rename", 3, [...deep, "l"].join("/"), 3, "l");
      // 2. A directory fd on v2; v2 removed; the link renamed to v2.
      assert.equal(guest.path_call("path_create_directory", 3, "v2"), Errno.success);
      const held = open_dir(guest, 3, "v2");
      assert.equal(guest.path_call("path_remove_directory", 3, "v2"), Errno.success);
      two_paths(guest, "path_rename", 3, "l", 3, "v2");
      // 3. Nothing outside through the held fd.
      assert_held_fd_confined(guest, held, undefined, outer);
      if (far) {
        assert.equal(guest.open(held, "etc", { oflags: OFlags.directory })[0] === Errno.success, false);
        assert.equal(readdir_errno(guest, held).names.includes("passwd"), false);
      }
      assert.equal(readFileSync(join(box, "t.txt"), "utf8"), "inside");
      guest.host.close();
    }
  });

  test("a directory carrying an escaping symlink moved over a held path: notcapable", () => {
    const { guest, outer, box } = sandbox();
    const levels = levels_to_root(box);
    // c0/.../c{levels-1}/y -> ../ x levels: the preopen itself, where it was made.
    const deep = Array.from({ length: levels }, (_, i) => `c${i}`);
    for (let i = 1; i <= levels; i++) guest.path_call("path_create_directory", 3, deep.slice(0, i).join("/"));
    assert.equal(symlink(guest, "../".repeat(levels), 3, [...deep, "y"].join("/")), Errno.success);
    assert.equal(guest.path_call("path_create_directory", 3, "x"), Errno.success);
    assert.equal(guest.path_call("path_create_directory", 3, "x/y"), Errno.success);
    const held = open_dir(guest, 3, "x/y");
    assert.equal(guest.path_call("path_remove_directory", 3, "x/y"), Errno.success);
    assert.equal(guest.path_call("path_remove_directory", 3, "x"), Errno.success);
    // The link's directory moves up to x: x/y now climbs levels-1 steps above the preopen.
    assert.equal(two_paths(guest, "path_rename", 3, deep.join("/"), 3, "x"), Errno.success);
    assert.ok(lstatSync(join(box, "x", "y")).isSymbolicLink());
    assert_held_fd_confined(guest, held, Errno.notcapable, outer);
    guest.host.close();
  });

  test("a held directory the guest renames is followed to its new name", () => {
    const { guest, box } = sandbox();
    mkdirSync(join(box, "a", "b"), { recursive: true });
    writeFileSync(join(box, "a", "b", "f"), "in b");
    const held = open_dir(guest, 3, "a/b");
    assert.equal(two_paths(guest, "path_rename", 3, "a", 3, "c"), Errno.success);
    // A new a/b at the old name is another directory; the fd stays with the moved one.
    mkdirSync(join(box, "a", "b"), { recursive: true });
    const [errno, f] = guest.open(held, "f");
    assert.equal(errno, Errno.success);
    assert.deepEqual(guest.read(f, 10), [Errno.success, "in b"]);
    assert.equal(guest.open(3, "c/b/f")[0], Errno.success);
    guest.host.close();
  });

  test("a held directory renamed behind the guest's back is gone (noent), not trusted", () => {
    const { guest, box } = sandbox();
    mkdirSync(join(box, "a"));
    writeFileSync(join(box, "a", "f"), "");
    const held = open_dir(guest, 3, "a");
    renameSync(join(box, "a"), join(box, "moved"));
    assert.equal(guest.open(held, "f")[0], Errno.noent);
    assert.equal(readdir_errno(guest, held).errno, Errno.noent);
    guest.host.close();
  });

  test("symlink swaps of intermediate components are followed inside and refused outside", () => {
    const { guest, outer, box } = sandbox();
    mkdirSync(join(box, "a", "b"), { recursive: true });
    mkdirSync(join(box, "elsewhere", "b"), { recursive: true });
    writeFileSync(join(box, "elsewhere", "b", "f"), "elsewhere");
    mkdirSync(join(outer, "b"));
    writeFileSync(join(outer, "b", "f"), "outside");
    const held = open_dir(guest, 3, "a/b");
    // Inside: the swapped component is walked like any symlink.
    renameSync(join(box, "a"), join(box, "a_old"));
    symlinkSync("elsewhere", join(box, "a"));
    const [errno, f] = guest.open(held, "f");
    assert.equal(errno, Errno.success);
    assert.deepEqual(guest.read(f, 20), [Errno.success, "elsewhere"]);
    // Outside, relative or absolute: refused at the swapped component.
    for (const target of ["..", outer]) {
      rmSync(join(box, "a"), { recursive: true });
      symlinkSync(target, join(box, "a"));
      assert_held_fd_confined(guest, held, Errno.notcapable, outer);
      assert.equal(guest.open(held, "f")[0], Errno.notcapable, "outer/b/f reached");
    }
    guest.host.close();
  });

  test("fd_readdir on a held fd whose directory became a symlink lists only what is inside", () => {
    const { guest, box } = sandbox();
    mkdirSync(join(box, "d"));
    mkdirSync(join(box, "other"));
    writeFileSync(join(box, "other", "o"), "");
    const held = open_dir(guest, 3, "d");
    rmdirSync(join(box, "d"));
    symlinkSync("other", join(box, "d"));
    assert.deepEqual(readdir_errno(guest, held), { errno: Errno.success, names: [".", "..", "o"] });
    rmSync(join(box, "d"));
    symlinkSync("..", join(box, "d"));
    assert.equal(readdir_errno(guest, held).errno, Errno.notcapable);
    guest.host.close();
  });

  test(".. through a removed directory is noent, never its old parent", () => {
    const { guest, box } = sandbox();
    mkdirSync(join(box, "a", "b"), { recursive: true });
    const held = open_dir(guest, 3, "a/b");
    assert.equal(guest.path_call("path_remove_directory", 3, "a/b"), Errno.success);
    assert.equal(guest.open(held, "../../t.txt")[0], Errno.noent);
    assert.equal(guest.open(held, "..", { oflags: OFlags.directory })[0], Errno.noent);
    assert.equal(guest.open(held, ".", { oflags: OFlags.directory })[0], Errno.noent);
    assert.equal(guest.path_call("path_create_directory", held, "../x"), Errno.noent);
    assert.equal(guest.path_call("path_create_directory", held, "x"), Errno.noent);
    assert.equal(existsSync(join(box, "a", "x")), false);
    // Through a held fd above it, the removed directory is not walked through either.
    const a = open_dir(guest, 3, "a");
    assert.equal(guest.open(a, "b/../t.txt")[0], Errno.noent);
    // Made again, the name is a directory again: the fd names a path, not an inode.
    mkdirSync(join(box, "a", "b"));
    assert.equal(guest.open(held, ".", { oflags: OFlags.directory })[0], Errno.success);
    guest.host.close();
  });

  test("absolute symlinks are never followed, even to a path inside the preopen", () => {
    const { guest, box } = sandbox();
    symlinkSync("/etc", join(box, "etc"));
    symlinkSync(join(box, "t.txt"), join(box, "abs_inside"));
    assert.equal(guest.open(3, "etc/passwd")[0], Errno.notcapable);
    assert.equal(guest.open(3, "abs_inside")[0], Errno.notcapable);
    assert.equal(symlink(guest, join(box, "t.txt"), 3, "made"), Errno.notcapable);
    // The link itself is there to see, read and remove.
    const buf = guest.alloc(256, 1);
    const used = guest.alloc(4, 4);
    assert.equal(guest.path_call("path_readlink", 3, "etc", buf, 256, used), Errno.success);
    assert.equal(guest.text(buf, guest.u32(used)), "/etc");
    assert.equal(stat_errno(guest, 3, "etc", false), Errno.success);
    assert.equal(guest.path_call("path_unlink_file", 3, "etc"), Errno.success);
    guest.host.close();
  });

  test("hard links: both sides resolve inside, and a final symlink is never followed out", () => {
    const { guest, outer, box } = sandbox();
    mkdirSync(join(box, "a"));
    symlinkSync("../secret.txt", join(box, "to_secret"));
    symlinkSync("../t.txt", join(box, "a", "ok"));
    // Inside to inside works.
    assert.equal(link(guest, 3, 0, "t.txt", 3, "a/t2"), Errno.success);
    assert.equal(readFileSync(join(box, "a", "t2"), "utf8"), "inside");
    // Following a link out is refused; so is a new name through one.
    assert.equal(link(guest, 3, LOOKUP_SYMLINK_FOLLOW, "to_secret", 3, "stolen"), Errno.notcapable);
    symlinkSync("..", join(box, "up"));
    assert.equal(link(guest, 3, 0, "t.txt", 3, "up/planted"), Errno.notcapable);
    assert.equal(link(guest, 3, 0, "../secret.txt", 3, "stolen"), Errno.notcapable);
    // Not following links the symlink itself; where its text would lead out, that is refused too.
    assert.equal(link(guest, 3, 0, "a/ok", 3, "ok_moved"), Errno.notcapable);
    assert.equal(link(guest, 3, 0, "a/ok", 3, "a/ok2"), Errno.success);
    assert.ok(lstatSync(join(box, "a", "ok2")).isSymbolicLink());
    assert.equal(existsSync(join(box, "stolen")), false);
    assert.equal(existsSync(join(outer, "planted")), false);
    // A hard link the host made to a file outside is the host's grant: readable, as any file.
    linkSync(join(outer, "secret.txt"), join(box, "host_link"));
    assert.equal(guest.open(3, "host_link")[0], Errno.success);
    guest.host.close();
  });

  test("renaming a symlink to where its text leads out is notcapable, like creating it there", () => {
    const { guest, box } = sandbox();
    mkdirSync(join(box, "a"));
    symlinkSync("../t.txt", join(box, "a", "ok"));
    assert.equal(two_paths(guest, "path_rename", 3, "a/ok", 3, "ok"), Errno.notcapable);
    assert.ok(lstatSync(join(box, "a", "ok")).isSymbolicLink());
    mkdirSync(join(box, "b"));
    assert.equal(two_paths(guest, "path_rename", 3, "a/ok", 3, "b/ok"), Errno.success);
    guest.host.close();
  });
});
