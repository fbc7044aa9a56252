/**
 * path_open: open (and maybe create) a file or directory below a directory fd.
 *
 * Access mode follows the requested rights the way wasmtime and wasi-libc
 * agree on: read when FD_READ or FD_READDIR is asked, write when FD_WRITE,
 * FD_DATASYNC, FD_ALLOCATE or FD_FILESTAT_SET_SIZE is (or APPEND). The new
 * fd's rights are the requested ones narrowed by the directory's inheriting
 * rights (narrowed, not refused: guests ask for everything and take what they
 * get). The path, from the directory fd's preopen root down, was resolved by
 * `_path.ts`; the host open adds O_NOFOLLOW so a symlink planted since in the
 * final component cannot redirect it, and the opened file is checked to lie
 * inside the root before the guest gets it.
 */

import { closeSync, constants, fstatSync, openSync, type BigIntStats } from "node:fs";

import { Errno, fail, type ErrnoValue } from "./errno.js";
import { FdFlags, LOOKUP_SYMLINK_FOLLOW, OFlags, RIGHTS_ALL, RIGHTS_DIR, RIGHTS_FILE, Rights } from "./_layout.js";
import { require_rights, type DirEntry, type FileEntry } from "./fd_table.js";
import { opened_inside, resolve, type RealRoots, type Resolved } from "./_path.js";
import { filetype_of } from "./_filestat.js";
import type { HostContext } from "./_context.js";
import { u32_arg } from "./_memory.js";

const READ_RIGHTS = Rights.fd_read | Rights.fd_readdir;
const WRITE_RIGHTS = Rights.fd_write | Rights.fd_datasync | Rights.fd_allocate | Rights.fd_filestat_set_size;
/**
 * The rights that mean "write" for a directory: not fd_datasync, which a
 * directory has too (fsync of its entries). Guests open directories asking
 * for it, with fd_sync (the wasi-testsuite's Rust programs all do).
 */
const DIR_WRITE_RIGHTS = Rights.fd_write | Rights.fd_allocate | Rights.fd_filestat_set_size;
const KNOWN_OFLAGS = OFlags.creat | OFlags.directory | OFlags.excl | OFlags.trunc;
const KNOWN_FDFLAGS = FdFlags.append | FdFlags.dsync | FdFlags.nonblock | FdFlags.rsync | FdFlags.sync;

/** What the host open needs besides the path. */
export type HostOpen = { read: boolean; write: boolean; oflags: number; fdflags: number };

/**
 * `path_open(dirfd, dirflags, path, path_len, oflags, rights_base,
 * rights_inheriting, fdflags, fd_ptr)`.
 */
export function path_open(
  ctx: HostContext,
  dirfd: number,
  dirflags: number,
  path_ptr: number,
  path_len: number,
  oflags: number,
  rights_base: bigint,
  rights_inheriting: bigint,
  fdflags: number,
  fd_ptr: number,
): ErrnoValue {
  const parent = ctx.fds.dir(u32_arg(dirfd), Rights.path_open);
  const out = u32_arg(fd_ptr);
  ctx.mem.check(out, 4);
  const path = ctx.mem.path(u32_arg(path_ptr), u32_arg(path_len));
  const o = oflags & 0xffff;
  const f = fdflags & 0xffff;
  if ((o & ~KNOWN_OFLAGS) !== 0 || (f & ~KNOWN_FDFLAGS) !== 0) fail(Errno.inval);
  const create = (o & OFlags.creat) !== 0;
  const exclusive = create && (o & OFlags.excl) !== 0;
  if (create) require_rights(parent, Rights.path_create_file);
  if ((o & OFlags.trunc) !== 0) require_rights(parent, Rights.path_filestat_set_size);

  // O_CREAT|O_EXCL never follows the final symlink (POSIX): even a dangling one "exists".
  const follow = (dirflags & LOOKUP_SYMLINK_FOLLOW) !== 0 && !exclusive;
  const target = resolve(parent.dir, path, { follow });
  const base = BigInt.asUintN(64, rights_base) & RIGHTS_ALL & parent.rights_inheriting;
  const inheriting = BigInt.asUintN(64, rights_inheriting) & RIGHTS_ALL & parent.rights_inheriting;
  const mode: HostOpen = {
    read: (base & READ_RIGHTS) !== 0n,
    write: (base & WRITE_RIGHTS) !== 0n || (f & FdFlags.append) !== 0,
    oflags: o,
    fdflags: f,
  };

  const stat = target.stat;
  if (stat !== undefined) {
    if (exclusive) fail(Errno.exist);
    // Only reached without SYMLINK_FOLLOW: POSIX O_NOFOLLOW on a symlink.
    if (stat.isSymbolicLink()) fail(Errno.loop, `${path} is a symlink`);
    if (stat.isDirectory()) {
      const write = (base & DIR_WRITE_RIGHTS) !== 0n || (f & FdFlags.append) !== 0;
      if (create || write || (o & OFlags.trunc) !== 0) fail(Errno.isdir);
      const entry: DirEntry = {
        kind: "dir",
        preopen: parent.preopen,
        dir: { root: target.root, rel: target.rel },
        is_preopen: false,
        fdflags: f,
        rights_base: base & RIGHTS_DIR,
        rights_inheriting: inheriting,
      };
      ctx.mem.set_u32(out, ctx.fds.insert(entry));
      return Errno.success;
    }
    if ((o & OFlags.directory) !== 0) fail(Errno.notdir);
  } else {
    if (!create) fail(Errno.noent);
    if ((o & OFlags.directory) !== 0) fail(Errno.inval, "cannot create a directory with path_open");
    if (target.trailing_slash) fail(Errno.isdir);
  }

  const entry = open_file(target, mode, parent.preopen, ctx.real_roots);
  entry.rights_base = base & RIGHTS_FILE;
  entry.rights_inheriting = inheriting & RIGHTS_FILE;
  try {
    ctx.mem.set_u32(out, ctx.fds.insert(entry));
  } catch (error) {
    closeSync(entry.host_fd);
    throw error;
  }
  return Errno.success;
}

/**
 * Opens the host file at a resolved location (also used by restore, with
 * CREAT/EXCL/TRUNC already removed from `mode.oflags`). FIFOs and sockets are
 * `notsup`: opening one can block the worker, and a pipe's position cannot be
 * captured. The entry gets no rights; the caller sets them.
 */
export function open_file(target: Resolved, mode: HostOpen, preopen: number, real_roots: RealRoots): FileEntry {
  if (target.stat !== undefined && !is_openable(target.stat)) fail(Errno.notsup, "not a regular file or device");
  const host_fd = openSync(target.host_path, host_flags(mode), 0o666);
  try {
    if (!opened_inside(host_fd, target.root, real_roots)) fail(Errno.notcapable, "the file opened lies outside the sandbox (the tree changed during the open)");
    const stat = fstatSync(host_fd, { bigint: true });
    if (!is_openable(stat)) fail(Errno.notsup, "not a regular file or device");
    return {
      kind: "file",
      preopen,
      root: target.root,
      rel: target.rel,
      host_path: target.host_path,
      host_fd,
      read: mode.read,
      write: mode.write,
      oflags: mode.oflags,
      filetype: filetype_of(stat),
      offset: 0n,
      fdflags: mode.fdflags,
      rights_base: 0n,
      rights_inheriting: 0n,
    };
  } catch (error) {
    closeSync(host_fd);
    throw error;
  }
}

function is_openable(stat: BigIntStats): boolean {
  return stat.isFile() || stat.isCharacterDevice() || stat.isBlockDevice();
}

/** Host open(2) flags for a preview1 open. NONBLOCK is ours to honour (stdin, poll), not the host's. */
function host_flags(mode: HostOpen): number {
  const c = constants;
  let flags = mode.read && mode.write ? c.O_RDWR : mode.write ? c.O_WRONLY : c.O_RDONLY;
  flags |= c.O_NOFOLLOW;
  if ((mode.oflags & OFlags.creat) !== 0) flags |= c.O_CREAT;
  if ((mode.oflags & OFlags.excl) !== 0) flags |= c.O_EXCL;
  if ((mode.oflags & OFlags.trunc) !== 0) flags |= c.O_TRUNC;
  if ((mode.fdflags & FdFlags.dsync) !== 0) flags |= c.O_DSYNC;
  // Linux defines O_RSYNC as O_SYNC; Node does not export O_RSYNC at all.
  if ((mode.fdflags & (FdFlags.sync | FdFlags.rsync)) !== 0) flags |= c.O_SYNC;
  return flags;
}
