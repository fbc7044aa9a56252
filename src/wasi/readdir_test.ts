import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { lstatSync, mkdirSync, symlinkSync, writeFileSync, statSync } from "node:fs";
import { join } from "node:path";

import { Errno, WasiHost } from "./mod.js";
import { Guest, fake_deps, remove_temp_dirs, temp_dir } from "./_testing.js";
import { Filetype, OFlags } from "./_layout.js";

after(remove_temp_dirs);

type Dirent = { next: bigint; ino: bigint; type: number; name: string };

/** Parses the complete entries in a readdir buffer; `partial` when the last one was cut. */
function parse(guest: Guest, buf: number, used: number): { entries: Dirent[]; partial: boolean } {
  const entries: Dirent[] = [];
  let at = 0;
  while (at + 24 <= used) {
    const namlen = guest.u32(buf + at + 16);
    if (at + 24 + namlen > used) return { entries, partial: true };
    entries.push({
      next: guest.u64(buf + at),
      ino: guest.u64(buf + at + 8),
      type: guest.u8(buf + at + 20),
      name: guest.text(buf + at + 24, namlen),
    });
    at += 24 + namlen;
  }
  return { entries, partial: at < used };
}

function readdir(guest: Guest, fd: number, buf_len: number, cookie: bigint): { errno: number; used: number; buf: number } {
  const buf = guest.alloc(buf_len, 8);
  const used = guest.alloc(4, 4);
  const errno = guest.call("fd_readdir", fd, buf, buf_len, cookie, used);
  return { errno, used: guest.u32(used), buf };
}

/** Lists a directory the way wasi-libc does: refill from the last complete cookie, growing a too-small buffer. */
function list_all(guest: Guest, fd: number, buf_len: number): Dirent[] {
  const all: Dirent[] = [];
  let cookie = 0n;
  let size = buf_len;
  for (;;) {
    const r = readdir(guest, fd, size, cookie);
    assert.equal(r.errno, Errno.success);
    const { entries } = parse(guest, r.buf, r.used);
    all.push(...entries);
    if (r.used < size) return all;
    if (entries.length === 0) size *= 2;
    else cookie = (entries.at(-1) as Dirent).next;
  }
}

function populate(): string {
  const dir = temp_dir();
  writeFileSync(join(dir, "b"), "b");
  writeFileSync(join(dir, "a-rather-long-file-name.txt"), "a");
  mkdirSync(join(dir, "sub"));
  symlinkSync("b", join(dir, "link"));
  return dir;
}

describe("fd_readdir", () => {
  test("lists . and .. then sorted names with cookies, inodes and types", () => {
    const dir = populate();
    const { guest } = Guest.start({ preopens: [{ host_path: dir, guest_path: "/d" }] });
    const r = readdir(guest, 3, 4096, 0n);
    assert.equal(r.errno, Errno.success);
    assert.ok(r.used < 4096);
    const { entries, partial } = parse(guest, r.buf, r.used);
    assert.equal(partial, false);
    assert.deepEqual(
      entries.map((e) => [e.name, e.next, e.type]),
      [
        [".", 1n, Filetype.directory],
        ["..", 2n, Filetype.directory],
        ["a-rather-long-file-name.txt", 3n, Filetype.regular_file],
        ["b", 4n, Filetype.regular_file],
        ["link", 5n, Filetype.symbolic_link],
        ["sub", 6n, Filetype.directory],
      ],
    );
    const root_ino = statSync(dir, { bigint: true }).ino;
    assert.equal(entries[0]?.ino, root_ino);
    // Nothing above the preopen is visible: its ".." is itself.
    assert.equal(entries[1]?.ino, root_ino);
    assert.equal(entries[4]?.ino, lstatSync(join(dir, "link"), { bigint: true }).ino);
  });

  test("resuming from a cookie continues after that entry; past the end is empty", () => {
    const dir = populate();
    const { guest } = Guest.start({ preopens: [{ host_path: dir, guest_path: "/d" }] });
    readdir(guest, 3, 4096, 0n);
    const r = readdir(guest, 3, 4096, 4n);
    assert.deepEqual(parse(guest, r.buf, r.used).entries.map((e) => e.name), ["link", "sub"]);
    assert.equal(readdir(guest, 3, 4096, 6n).used, 0);
    assert.equal(readdir(guest, 3, 4096, 1000n).used, 0);
  });

  test("a small buffer is filled exactly, the last entry cut off", () => {
    const dir = populate();
    const { guest } = Guest.start({ preopens: [{ host_path: dir, guest_path: "/d" }] });
    const r = readdir(guest, 3, 80, 0n);
    assert.equal(r.used, 80);
    const { entries, partial } = parse(guest, r.buf, r.used);
    assert.deepEqual(entries.map((e) => e.name), [".", ".."]);
    assert.equal(partial, true);
    // The cut entry's header is intact where it fits.
    assert.equal(guest.u32(r.buf + 51 + 16), "a-rather-long-file-name.txt".length);
    const tiny = readdir(guest, 3, 10, 2n);
    assert.equal(tiny.used, 10);
    assert.equal(guest.u64(tiny.buf), 3n);
  });

  for (const size of [24, 25, 40, 51, 64, 100]) {
    test(`listing with a ${size}-byte buffer yields every entry once`, () => {
      const dir = populate();
      const { guest } = Guest.start({ preopens: [{ host_path: dir, guest_path: "/d" }] });
      assert.deepEqual(
        list_all(guest, 3, size).map((e) => e.name),
        [".", "..", "a-rather-long-file-name.txt", "b", "link", "sub"],
      );
    });
  }

  test("a subdirectory's .. is its parent; cookie 0 re-reads the directory", () => {
    const dir = populate();
    const { guest } = Guest.start({ preopens: [{ host_path: dir, guest_path: "/d" }] });
    const [, sub] = guest.open(3, "sub", { oflags: OFlags.directory });
    writeFileSync(join(dir, "sub", "x"), "");
    let entries = list_all(guest, sub, 4096);
    assert.deepEqual(entries.map((e) => e.name), [".", "..", "x"]);
    assert.equal(entries[1]?.ino, statSync(dir, { bigint: true }).ino);
    writeFileSync(join(dir, "sub", "y"), "");
    entries = list_all(guest, sub, 4096);
    assert.deepEqual(entries.map((e) => e.name), [".", "..", "x", "y"]);
    guest.host.close();
  });

  test("a cookie stays valid across capture and restore", () => {
    const dir = populate();
    const { guest } = Guest.start({ preopens: [{ host_path: dir, guest_path: "/d" }] });
    readdir(guest, 3, 4096, 0n);
    const state = JSON.parse(JSON.stringify(guest.host.capture()));
    const restored = new Guest(WasiHost.restore(state, fake_deps().deps, { preopens: state.preopens }));
    const r = readdir(restored, 3, 4096, 3n);
    assert.deepEqual(parse(restored, r.buf, r.used).entries.map((e) => e.name), ["b", "link", "sub"]);
  });

  test("non-directories are notdir; bad pointers fault", () => {
    const dir = populate();
    const { guest } = Guest.start({ preopens: [{ host_path: dir, guest_path: "/d" }] });
    const [, file] = guest.open(3, "b");
    assert.equal(readdir(guest, file, 100, 0n).errno, Errno.notdir);
    assert.equal(readdir(guest, 1, 100, 0n).errno, Errno.notdir);
    assert.equal(readdir(guest, 9, 100, 0n).errno, Errno.badf);
    const end = guest.memory.buffer.byteLength;
    assert.equal(guest.call("fd_readdir", 3, end - 10, 100, 0n, guest.alloc(4)), Errno.fault);
    guest.host.close();
  });
});
