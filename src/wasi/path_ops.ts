/**
 * Path calls other than path_open: create/remove directories, unlink,
 * rename, symlink, readlink, link, and path filestat get/set.
 *
 * Calls that act on a directory entry itself (remove, unlink, rename,
 * symlink, readlink, the new side of link) never follow a symlink in the
 * final component, and refuse paths ending in "." or "..": those name no
 * entry, and "a/.." would otherwise let rmdir reach the preopen root.
 */

import { linkSync, mkdirSync, readlinkSync, renameSync, rmdirSync, symlinkSync, unlinkSync } from "node:fs";

import { Errno, fail, type ErrnoValue } from "./errno.js";
import { LOOKUP_SYMLINK_FOLLOW, Rights } from "./_layout.js";
import { resolve, symlink_target_escapes, type Resolved } from "./_path.js";
import { set_times, write_filestat } from "./_filestat.js";
import type { DirEntry } from "./fd_table.js";
import type { HostContext } from "./_context.js";
import { u32_arg } from "./_memory.js";

/** `path_create_directory(fd, path, path_len)`. */
export function path_create_directory(ctx: HostContext, fd: number, path_ptr: number, path_len: number): ErrnoValue {
  const dir = ctx.fds.dir(u32_arg(fd), Rights.path_create_directory);
  const target = lookup(ctx, dir, path_ptr, path_len, false);
  if (target.stat !== undefined) fail(Errno.exist);
  mkdirSync(target.host_path, 0o777);
  return Errno.success;
}

/** `path_remove_directory(fd, path, path_len)`. */
export function path_remove_directory(ctx: HostContext, fd: number, path_ptr: number, path_len: number): ErrnoValue {
  const dir = ctx.fds.dir(u32_arg(fd), Rights.path_remove_directory);
  const target = existing_entry(lookup(ctx, dir, path_ptr, path_len, false), Errno.inval);
  if (!target.stat.isDirectory()) fail(Errno.notdir);
  rmdirSync(target.host_path);
  return Errno.success;
}

/** `path_unlink_file(fd, path, path_len)`: `isdir` for a directory, as on Linux. */
export function path_unlink_file(ctx: HostContext, fd: number, path_ptr: number, path_len: number): ErrnoValue {
  const dir = ctx.fds.dir(u32_arg(fd), Rights.path_unlink_file);
  const target = existing_entry(lookup(ctx, dir, path_ptr, path_len, false), Errno.isdir);
  if (target.stat.isDirectory()) fail(Errno.isdir);
  unlinkSync(target.host_path);
  return Errno.success;
}

/** `path_rename(fd, old_path, old_len, new_fd, new_path, new_len)`; open fds below the old name follow it. */
export function path_rename(
  ctx: HostContext,
  fd: number,
  old_ptr: number,
  old_len: number,
  new_fd: number,
  new_ptr: number,
  new_len: number,
): ErrnoValue {
  const from_dir = ctx.fds.dir(u32_arg(fd), Rights.path_rename_source);
  const to_dir = ctx.fds.dir(u32_arg(new_fd), Rights.path_rename_target);
  const from = existing_entry(lookup(ctx, from_dir, old_ptr, old_len, false), Errno.inval);
  const to = lookup(ctx, to_dir, new_ptr, new_len, false);
  if (!to.entry) fail(Errno.inval, "cannot rename onto . or ..");
  if (to.trailing_slash && !from.stat.isDirectory()) fail(Errno.notdir);
  refuse_escaping_link(from, to);
  renameSync(from.host_path, to.host_path);
  ctx.fds.relocate(from, { root: to.root, rel: to.rel, preopen: to_dir.preopen });
  return Errno.success;
}

/**
 * `path_symlink(old_path, old_len, fd, new_path, new_len)`: creates a symlink
 * at new_path holding old_path. Contents that would point outside the
 * preopen (absolute, or climbing above it) are `notcapable`.
 */
export function path_symlink(
  ctx: HostContext,
  old_ptr: number,
  old_len: number,
  fd: number,
  new_ptr: number,
  new_len: number,
): ErrnoValue {
  const dir = ctx.fds.dir(u32_arg(fd), Rights.path_symlink);
  const contents = ctx.mem.path(u32_arg(old_ptr), u32_arg(old_len));
  const link = lookup(ctx, dir, new_ptr, new_len, false);
  if (link.stat !== undefined) fail(Errno.exist);
  if (link.trailing_slash) fail(Errno.noent);
  if (contents.length === 0 || contents.includes("\0")) fail(Errno.inval);
  if (symlink_target_escapes(link.rel.slice(0, -1), contents)) fail(Errno.notcapable, `symlink to ${contents} leaves the sandbox`);
  symlinkSync(contents, link.host_path);
  return Errno.success;
}

/** `path_readlink(fd, path, path_len, buf, buf_len, bufused_ptr)`: truncates to buf_len like readlink(2). */
export function path_readlink(
  ctx: HostContext,
  fd: number,
  path_ptr: number,
  path_len: number,
  buf_ptr: number,
  buf_len: number,
  bufused_ptr: number,
): ErrnoValue {
  const dir = ctx.fds.dir(u32_arg(fd), Rights.path_readlink);
  const buf = u32_arg(buf_ptr);
  const len = u32_arg(buf_len);
  const out = u32_arg(bufused_ptr);
  ctx.mem.check(buf, len);
  ctx.mem.check(out, 4);
  const link = existing_entry(lookup(ctx, dir, path_ptr, path_len, false), Errno.inval);
  if (!link.stat.isSymbolicLink()) fail(Errno.inval);
  const contents = readlinkSync(link.host_path, { encoding: "buffer" });
  const n = Math.min(contents.length, len);
  ctx.mem.write(buf, contents.subarray(0, n));
  ctx.mem.set_u32(out, n);
  return Errno.success;
}

/** `path_link(old_fd, old_flags, old_path, old_len, new_fd, new_path, new_len)`: a hard link. */
export function path_link(
  ctx: HostContext,
  old_fd: number,
  old_flags: number,
  old_ptr: number,
  old_len: number,
  new_fd: number,
  new_ptr: number,
  new_len: number,
): ErrnoValue {
  const from_dir = ctx.fds.dir(u32_arg(old_fd), Rights.path_link_source);
  const to_dir = ctx.fds.dir(u32_arg(new_fd), Rights.path_link_target);
  const follow = (old_flags & LOOKUP_SYMLINK_FOLLOW) !== 0;
  const from = existing_entry(lookup(ctx, from_dir, old_ptr, old_len, follow), Errno.perm);
  if (from.stat.isDirectory()) fail(Errno.perm, "hard links to directories are not allowed");
  const to = lookup(ctx, to_dir, new_ptr, new_len, false);
  if (to.stat !== undefined) fail(Errno.exist);
  if (to.trailing_slash) fail(Errno.noent);
  // link(2) on Linux links a symlink itself, never what it points to (the
  // resolution above already followed it, inside, when asked to).
  refuse_escaping_link(from, to);
  linkSync(from.host_path, to.host_path);
  return Errno.success;
}

/** `path_filestat_get(fd, flags, path, path_len, filestat_ptr)`. */
export function path_filestat_get(
  ctx: HostContext,
  fd: number,
  flags: number,
  path_ptr: number,
  path_len: number,
  filestat_ptr: number,
): ErrnoValue {
  const dir = ctx.fds.dir(u32_arg(fd), Rights.path_filestat_get);
  const target = lookup(ctx, dir, path_ptr, path_len, (flags & LOOKUP_SYMLINK_FOLLOW) !== 0);
  if (target.stat === undefined) fail(Errno.noent);
  write_filestat(ctx.mem, u32_arg(filestat_ptr), target.stat);
  return Errno.success;
}

/** `path_filestat_set_times(fd, flags, path, path_len, atim, mtim, fst_flags)`. */
export function path_filestat_set_times(
  ctx: HostContext,
  fd: number,
  flags: number,
  path_ptr: number,
  path_len: number,
  atim: bigint,
  mtim: bigint,
  fst_flags: number,
): ErrnoValue {
  const dir = ctx.fds.dir(u32_arg(fd), Rights.path_filestat_set_times);
  const target = lookup(ctx, dir, path_ptr, path_len, (flags & LOOKUP_SYMLINK_FOLLOW) !== 0);
  if (target.stat === undefined) fail(Errno.noent);
  // The resolved final component is a symlink only when not following, and
  // then the link itself is meant: lutimes is right in every case.
  set_times({ path: target.host_path, follow: false }, target.stat, {
    atim_ns: BigInt.asUintN(64, atim),
    mtim_ns: BigInt.asUintN(64, mtim),
    fst_flags: fst_flags & 0xffff,
    now_ns: ctx.clock.realtime_ns(),
  });
  return Errno.success;
}

/**
 * A symlink moved or linked to `to` keeps its text, which is read from its new
 * directory: `a/b/l -> ../../x` stays inside where it was made and leads out
 * from the top. Such a move is refused as creating that link would be
 * (path_symlink). Resolution never follows an escaping link anyway; this keeps
 * the guest from planting one for host tools. A moved directory may still
 * carry links deeper down whose meaning changes: resolution is what holds.
 */
function refuse_escaping_link(from: Resolved & { stat: NonNullable<Resolved["stat"]> }, to: Resolved): void {
  if (!from.stat.isSymbolicLink()) return;
  const contents = readlinkSync(from.host_path, "utf8");
  if (symlink_target_escapes(to.rel.slice(0, -1), contents)) fail(Errno.notcapable, `symlink to ${contents} would lead out of the sandbox from its new place`);
}

function lookup(ctx: HostContext, dir: DirEntry, path_ptr: number, path_len: number, follow: boolean): Resolved {
  const path = ctx.mem.path(u32_arg(path_ptr), u32_arg(path_len));
  return resolve(dir.dir, path, { follow });
}

/** `target` if it is an existing named entry; `no_entry_errno` for "." / "..", `noent` when missing. */
function existing_entry(target: Resolved, no_entry_errno: ErrnoValue): Resolved & { stat: NonNullable<Resolved["stat"]> } {
  if (!target.entry) fail(no_entry_errno, "path names no directory entry");
  const stat = target.stat ?? fail(Errno.noent);
  return { ...target, stat };
}
