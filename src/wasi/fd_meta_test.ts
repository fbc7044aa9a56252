import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { statSync, writeFileSync, readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";

import { Errno, WasiHost, type WasiState } from "./mod.js";
import { Guest, fake_deps, remove_temp_dirs, temp_dir } from "./_testing.js";
import { Fdstat, FdFlags, Filestat, Filetype, FstFlags, OFlags, RIGHTS_DIR, RIGHTS_FILE, RIGHTS_STDIO, Rights } from "./_layout.js";

after(remove_temp_dirs);

function two_preopens(): ReturnType<typeof Guest.start> & { a: string; b: string } {
  const a = temp_dir();
  const b = temp_dir();
  return { a, b, ...Guest.start({ preopens: [{ host_path: a, guest_path: "/a" }, { host_path: b, guest_path: "." }] }) };
}

describe("prestat", () => {
  test("preopens sit at 3, 4 with their guest names; the next fd is badf", () => {
    const { guest } = two_preopens();
    const pre = guest.alloc(8, 4);
    assert.equal(guest.call("fd_prestat_get", 3, pre), Errno.success);
    assert.equal(guest.u8(pre), 0);
    assert.equal(guest.u32(pre + 4), 2);
    const name = guest.alloc(2, 1);
    assert.equal(guest.call("fd_prestat_dir_name", 3, name, 2), Errno.success);
    assert.equal(guest.text(name, 2), "/a");
    assert.equal(guest.call("fd_prestat_dir_name", 3, name, 1), Errno.nametoolong);
    assert.equal(guest.call("fd_prestat_get", 4, pre), Errno.success);
    assert.equal(guest.u32(pre + 4), 1);
    assert.equal(guest.call("fd_prestat_get", 5, pre), Errno.badf);
    assert.equal(guest.call("fd_prestat_get", 1, pre), Errno.badf);
  });
});

describe("fdstat", () => {
  test("stdio, preopen, file and opened directory report type, flags and rights", () => {
    const { guest, a } = two_preopens();
    mkdirSync(join(a, "d"));
    const st = guest.alloc(Fdstat.size);
    assert.equal(guest.call("fd_fdstat_get", 1, st), Errno.success);
    assert.equal(guest.u8(st), Filetype.socket_stream, "a stream of no stated kind is a pipe");
    assert.equal(guest.u64(st + 8), RIGHTS_STDIO);
    assert.equal(guest.call("fd_fdstat_get", 3, st), Errno.success);
    assert.equal(guest.u8(st), Filetype.directory);
    assert.equal(guest.u64(st + 8), RIGHTS_DIR);
    assert.equal(guest.u64(st + 16), RIGHTS_DIR | RIGHTS_FILE);
    const [, fd] = guest.open(3, "f", { oflags: OFlags.creat, fdflags: FdFlags.append | FdFlags.sync });
    assert.equal(guest.call("fd_fdstat_get", fd, st), Errno.success);
    assert.equal(guest.u8(st), Filetype.regular_file);
    assert.equal(guest.u16(st + 2), FdFlags.append | FdFlags.sync);
    assert.equal(guest.u64(st + 8), RIGHTS_FILE);
    const [, d] = guest.open(3, "d", { oflags: OFlags.directory, rights: Rights.fd_readdir | Rights.path_open });
    guest.call("fd_fdstat_get", d, st);
    assert.equal(guest.u8(st), Filetype.directory);
    assert.equal(guest.u64(st + 8), Rights.fd_readdir | Rights.path_open);
    assert.equal(guest.call("fd_fdstat_get", 99, st), Errno.badf);
    guest.host.close();
  });

  test("set_flags changes APPEND/NONBLOCK only", () => {
    const { guest } = two_preopens();
    const [, fd] = guest.open(3, "f", { oflags: OFlags.creat });
    assert.equal(guest.call("fd_fdstat_set_flags", fd, FdFlags.nonblock | FdFlags.append), Errno.success);
    assert.equal(guest.call("fd_fdstat_set_flags", fd, FdFlags.sync), Errno.notsup);
    assert.equal(guest.call("fd_fdstat_set_flags", fd, 0x100), Errno.inval);
    const st = guest.alloc(Fdstat.size);
    guest.call("fd_fdstat_get", fd, st);
    assert.equal(guest.u16(st + 2), FdFlags.nonblock | FdFlags.append);
    guest.host.close();
  });

  test("set_rights may only narrow, and narrowed rights are enforced", () => {
    const { guest } = two_preopens();
    const [, fd] = guest.open(3, "f", { oflags: OFlags.creat });
    assert.equal(guest.call("fd_fdstat_set_rights", fd, Rights.fd_read | Rights.fd_write, 0n), Errno.success);
    assert.equal(guest.call("fd_fdstat_set_rights", fd, Rights.fd_read | Rights.fd_seek, 0n), Errno.notcapable);
    assert.equal(guest.write(fd, "ok")[0], Errno.success);
    assert.equal(guest.call("fd_tell", fd, guest.alloc(8)), Errno.notcapable);
    assert.equal(guest.call("fd_fdstat_set_rights", 3, RIGHTS_DIR & ~Rights.path_open, RIGHTS_FILE), Errno.success);
    assert.equal(guest.open(3, "f")[0], Errno.notcapable);
    guest.host.close();
  });
});

describe("close and renumber", () => {
  test("new fds take the lowest free number", () => {
    const { guest } = two_preopens();
    const fds = ["x", "y", "z"].map((n) => guest.open(3, n, { oflags: OFlags.creat })[1]);
    assert.deepEqual(fds, [5, 6, 7]);
    assert.equal(guest.call("fd_close", 6), Errno.success);
    assert.equal(guest.call("fd_close", 6), Errno.badf);
    assert.equal(guest.open(3, "w", { oflags: OFlags.creat })[1], 6);
    assert.equal(guest.call("fd_close", 0), Errno.success);
    assert.equal(guest.open(3, "v", { oflags: OFlags.creat })[1], 0);
    guest.host.close();
  });

  test("renumber moves an fd onto an open one and closes that", () => {
    const { guest, a } = two_preopens();
    const [, fd] = guest.open(3, "out.txt", { oflags: OFlags.creat });
    assert.equal(guest.call("fd_renumber", fd, 1), Errno.success);
    guest.write(1, "to the file");
    assert.equal(readFileSync(join(a, "out.txt"), "utf8"), "to the file");
    assert.equal(guest.write(fd, "x")[0], Errno.badf);
    assert.equal(guest.call("fd_renumber", 1, 40), Errno.badf);
    assert.equal(guest.call("fd_renumber", 40, 1), Errno.badf);
    assert.equal(guest.call("fd_renumber", 1, 1), Errno.success);
    guest.host.close();
  });
});

describe("filestat", () => {
  test("fd_filestat_get reports size, type, inode, times", () => {
    const { guest, a } = two_preopens();
    writeFileSync(join(a, "f"), "12345");
    const [, fd] = guest.open(3, "f");
    const st = guest.alloc(Filestat.size);
    assert.equal(guest.call("fd_filestat_get", fd, st), Errno.success);
    const host = statSync(join(a, "f"), { bigint: true });
    assert.equal(guest.u64(st + Filestat.ino), host.ino);
    assert.equal(guest.u64(st + Filestat.dev), host.dev);
    assert.equal(guest.u8(st + Filestat.filetype), Filetype.regular_file);
    assert.equal(guest.u64(st + Filestat.nlink), 1n);
    assert.equal(guest.u64(st + Filestat.filesize), 5n);
    assert.equal(guest.u64(st + Filestat.mtim), host.mtimeNs);
    assert.equal(guest.call("fd_filestat_get", 3, st), Errno.success);
    assert.equal(guest.u8(st + Filestat.filetype), Filetype.directory);
    assert.equal(guest.call("fd_filestat_get", 1, st), Errno.success);
    assert.equal(guest.u8(st + Filestat.filetype), Filetype.socket_stream);
    guest.host.close();
  });

  test("set_size truncates and extends without moving the offset", () => {
    const { guest, a } = two_preopens();
    writeFileSync(join(a, "f"), "0123456789");
    const [, fd] = guest.open(3, "f");
    guest.read(fd, 8);
    assert.equal(guest.call("fd_filestat_set_size", fd, 3n), Errno.success);
    assert.equal(readFileSync(join(a, "f"), "utf8"), "012");
    assert.equal(guest.call("fd_filestat_set_size", fd, 6n), Errno.success);
    assert.equal(readFileSync(join(a, "f"), "latin1"), "012\0\0\0");
    assert.deepEqual(guest.seek(fd, 0n, 1), [Errno.success, 8n]);
    assert.equal(guest.call("fd_filestat_set_size", 3, 0n), Errno.isdir);
    // Asking for FD_FILESTAT_SET_SIZE opens for writing (as in wasi-libc); without it the right is missing.
    const [, ro] = guest.open(3, "f", { rights: Rights.fd_read });
    assert.equal(guest.call("fd_filestat_set_size", ro, 0n), Errno.notcapable);
    guest.host.close();
  });

  test("set_times sets given values to the nanosecond and now, and rejects conflicting flags", () => {
    const { guest, a, clock } = two_preopens();
    writeFileSync(join(a, "f"), "x");
    const [, fd] = guest.open(3, "f");
    const atim = 1_000_000_000_000_000_123n;
    const mtim = 1_100_000_000_000_000_789n;
    assert.equal(guest.call("fd_filestat_set_times", fd, atim, mtim, FstFlags.atim | FstFlags.mtim), Errno.success);
    let host = statSync(join(a, "f"), { bigint: true });
    assert.equal(host.atimeNs, atim);
    assert.equal(host.mtimeNs, mtim);
    assert.equal(guest.call("fd_filestat_set_times", fd, 0n, 0n, FstFlags.mtim_now), Errno.success);
    host = statSync(join(a, "f"), { bigint: true });
    assert.equal(host.mtimeNs, clock.real_ns);
    assert.equal(host.atimeNs, atim);
    assert.equal(guest.call("fd_filestat_set_times", fd, 0n, 0n, FstFlags.atim | FstFlags.atim_now), Errno.inval);
    assert.equal(guest.call("fd_filestat_set_times", 3, atim, mtim, FstFlags.atim | FstFlags.mtim), Errno.success);
    assert.equal(statSync(a, { bigint: true }).mtimeNs, mtim);
    guest.host.close();
  });
});

describe("advise, allocate, sync", () => {
  test("advise checks its arguments and ignores the hint", () => {
    const { guest } = two_preopens();
    const [, fd] = guest.open(3, "f", { oflags: OFlags.creat });
    assert.equal(guest.call("fd_advise", fd, 0n, 10n, 1), Errno.success);
    assert.equal(guest.call("fd_advise", fd, 0n, 10n, 6), Errno.inval);
    assert.equal(guest.call("fd_advise", 1, 0n, 10n, 0), Errno.spipe);
    guest.host.close();
  });

  test("allocate grows the file, never shrinks it", () => {
    const { guest, a } = two_preopens();
    const [, fd] = guest.open(3, "f", { oflags: OFlags.creat });
    guest.write(fd, "abc");
    assert.equal(guest.call("fd_allocate", fd, 2n, 8n), Errno.success);
    assert.equal(statSync(join(a, "f")).size, 10);
    assert.equal(guest.call("fd_allocate", fd, 0n, 4n), Errno.success);
    assert.equal(statSync(join(a, "f")).size, 10);
    assert.equal(guest.call("fd_allocate", fd, 0n, 0n), Errno.inval);
    guest.host.close();
  });

  test("sync and datasync work on files and directories, not stdio", () => {
    const { guest } = two_preopens();
    const [, fd] = guest.open(3, "f", { oflags: OFlags.creat });
    assert.equal(guest.call("fd_sync", fd), Errno.success);
    assert.equal(guest.call("fd_datasync", fd), Errno.success);
    assert.equal(guest.call("fd_sync", 3), Errno.success);
    assert.equal(guest.call("fd_sync", 1), Errno.inval);
    guest.host.close();
  });
});

describe("standard streams", () => {
  const isatty = (guest: Guest, fd: number): boolean => {
    // wasi-libc's isatty(): a character device without the seek and tell rights.
    const st = guest.alloc(Fdstat.size);
    assert.equal(guest.call("fd_fdstat_get", fd, st), Errno.success);
    const rights = guest.u64(st + 8);
    return guest.u8(st) === Filetype.character_device && (rights & (Rights.fd_seek | Rights.fd_tell)) === 0n;
  };
  const filetype = (guest: Guest, fd: number): number => {
    const st = guest.alloc(Filestat.size);
    assert.equal(guest.call("fd_filestat_get", fd, st), Errno.success);
    return guest.u8(st + Filestat.filetype);
  };
  const tell = (guest: Guest, fd: number): [number, bigint] => {
    const out = guest.alloc(8);
    const errno = guest.call("fd_tell", fd, out);
    return [errno, guest.u64(out)];
  };

  test("each kind reports its file type and rights: only a terminal is a tty", () => {
    const { guest } = Guest.start({ stdio: ["terminal", "file", "device"] });
    assert.deepEqual([0, 1, 2].map((fd) => isatty(guest, fd)), [true, false, false]);
    assert.deepEqual([0, 1, 2].map((fd) => filetype(guest, fd)), [Filetype.character_device, Filetype.regular_file, Filetype.character_device]);
    const pipes = Guest.start({ stdio: ["pipe", "pipe", "pipe"] }).guest;
    assert.deepEqual([0, 1, 2].map((fd) => isatty(pipes, fd)), [false, false, false]);
    assert.equal(filetype(pipes, 0), Filetype.socket_stream);
  });

  test("a file stream tells how far it has gone, a device stays at 0, and neither seeks; a pipe or terminal has no position", () => {
    const { guest, stdin } = Guest.start({ stdio: ["file", "file", "device"] });
    stdin.push("abcdef");
    assert.deepEqual(guest.read(0, 4), [Errno.success, "abcd"]);
    guest.write(1, "hello");
    guest.write(2, "err");
    assert.deepEqual(tell(guest, 0), [Errno.success, 4n]);
    assert.deepEqual(tell(guest, 1), [Errno.success, 5n]);
    assert.deepEqual(tell(guest, 2), [Errno.success, 0n]);
    const out = guest.alloc(8);
    assert.equal(guest.call("fd_seek", 1, 0n, 1 /* cur */, out), Errno.success);
    assert.equal(guest.u64(out), 5n);
    assert.equal(guest.call("fd_seek", 1, 0n, 0 /* set */, out), Errno.spipe);
    assert.equal(guest.call("fd_seek", 0, 2n, 1 /* cur */, out), Errno.spipe);
    const other = Guest.start({ stdio: ["pipe", "terminal", "pipe"] }).guest;
    assert.equal(tell(other, 0)[0], Errno.spipe);
    assert.equal(tell(other, 1)[0], Errno.spipe);
    assert.equal(other.call("fd_seek", 1, 0n, 1, out), Errno.spipe);
  });

  test("the kinds and the input position survive a capture and restore, through JSON", () => {
    const { guest, stdin } = Guest.start({ stdio: ["file", "terminal", "device"] });
    stdin.push("xyz");
    assert.deepEqual(guest.read(0, 2), [Errno.success, "xy"]);
    const state = JSON.parse(JSON.stringify(guest.host.capture())) as WasiState;
    const restored = new Guest(WasiHost.restore(state, fake_deps().deps, { preopens: [] }));
    assert.deepEqual([0, 1, 2].map((fd) => isatty(restored, fd)), [false, true, false]);
    assert.equal(filetype(restored, 0), Filetype.regular_file);
    assert.deepEqual(tell(restored, 0), [Errno.success, 2n]);
  });
});
