/**
 * fd calls other than data transfer: close and renumber, fdstat and
 * filestat, advise/allocate/sync, and the preopen queries wasi-libc makes at
 * start-up (fd_prestat_get on 3, 4, ... until `badf`).
 */

import { closeSync, constants, fdatasyncSync, fstatSync, fsyncSync, ftruncateSync, openSync } from "node:fs";

import { Errno, fail, type ErrnoValue } from "./errno.js";
import { ADVICE_MAX, Fdstat, FdFlags, Filetype, Prestat, RIGHTS_ALL, Rights } from "./_layout.js";
import { require_rights, type FdEntry, type FileEntry } from "./fd_table.js";
import { resolve_dir } from "./_path.js";
import { set_times, write_filestat, write_stream_filestat } from "./_filestat.js";
import { stdio_filetype } from "./_stdio.js";
import type { HostContext } from "./_context.js";
import { u32_arg, utf8 } from "./_memory.js";

/** Largest file size fd_filestat_set_size / fd_allocate accept (2^63 - 1, off_t's range). */
const FILE_SIZE_MAX = (1n << 63n) - 1n;

/** The fdflags that fd_fdstat_set_flags may change; the sync ones are fixed at open. */
const SETTABLE_FDFLAGS = FdFlags.append | FdFlags.nonblock;

/** `fd_close(fd)`. */
export function fd_close(ctx: HostContext, fd: number): ErrnoValue {
  ctx.fds.close(u32_arg(fd));
  return Errno.success;
}

/** `fd_renumber(from, to)`: `to` must be open; it is closed and replaced. */
export function fd_renumber(ctx: HostContext, from: number, to: number): ErrnoValue {
  ctx.fds.renumber(u32_arg(from), u32_arg(to));
  return Errno.success;
}

/** `fd_fdstat_get(fd, fdstat_ptr)`. */
export function fd_fdstat_get(ctx: HostContext, fd: number, fdstat_ptr: number): ErrnoValue {
  const entry = ctx.fds.get(u32_arg(fd));
  const ptr = u32_arg(fdstat_ptr);
  ctx.mem.zero(ptr, Fdstat.size);
  ctx.mem.set_u8(ptr + Fdstat.filetype, entry_filetype(entry));
  ctx.mem.set_u16(ptr + Fdstat.flags, entry.fdflags);
  ctx.mem.set_u64(ptr + Fdstat.rights_base, entry.rights_base);
  ctx.mem.set_u64(ptr + Fdstat.rights_inheriting, entry.rights_inheriting);
  return Errno.success;
}

/** `fd_fdstat_set_flags(fd, flags)`: APPEND and NONBLOCK change; the sync flags cannot (`notsup`). */
export function fd_fdstat_set_flags(ctx: HostContext, fd: number, flags: number): ErrnoValue {
  const entry = ctx.fds.with_rights(u32_arg(fd), Rights.fd_fdstat_set_flags);
  const wanted = flags & 0xffff;
  if ((wanted & ~(FdFlags.append | FdFlags.dsync | FdFlags.nonblock | FdFlags.rsync | FdFlags.sync)) !== 0) fail(Errno.inval);
  if ((wanted & ~SETTABLE_FDFLAGS) !== (entry.fdflags & ~SETTABLE_FDFLAGS)) {
    fail(Errno.notsup, "sync flags are fixed when the file is opened");
  }
  entry.fdflags = wanted;
  return Errno.success;
}

/** `fd_fdstat_set_rights(fd, base, inheriting)`: rights may only shrink (`notcapable` otherwise). */
export function fd_fdstat_set_rights(ctx: HostContext, fd: number, base: bigint, inheriting: bigint): ErrnoValue {
  const entry = ctx.fds.get(u32_arg(fd));
  const new_base = BigInt.asUintN(64, base) & RIGHTS_ALL;
  const new_inheriting = BigInt.asUintN(64, inheriting) & RIGHTS_ALL;
  if ((new_base & ~entry.rights_base) !== 0n || (new_inheriting & ~entry.rights_inheriting) !== 0n) {
    fail(Errno.notcapable, "rights can only be narrowed");
  }
  entry.rights_base = new_base;
  entry.rights_inheriting = new_inheriting;
  return Errno.success;
}

/** `fd_filestat_get(fd, filestat_ptr)`. */
export function fd_filestat_get(ctx: HostContext, fd: number, filestat_ptr: number): ErrnoValue {
  const entry = ctx.fds.with_rights(u32_arg(fd), Rights.fd_filestat_get);
  const ptr = u32_arg(filestat_ptr);
  if (entry.kind === "stdio") write_stream_filestat(ctx.mem, ptr, stdio_filetype(entry.as));
  else if (entry.kind === "listener" || entry.kind === "conn") write_stream_filestat(ctx.mem, ptr, Filetype.socket_stream);
  else if (entry.kind === "file") write_filestat(ctx.mem, ptr, fstatSync(entry.host_fd, { bigint: true }));
  else write_filestat(ctx.mem, ptr, resolve_dir(entry.dir).stat);
  return Errno.success;
}

/** `fd_filestat_set_size(fd, size)`: truncates or zero-extends; the offset stays. */
export function fd_filestat_set_size(ctx: HostContext, fd: number, size: bigint): ErrnoValue {
  const file = writable_file(ctx.fds.get(u32_arg(fd)), Rights.fd_filestat_set_size);
  const value = BigInt.asUintN(64, size);
  if (value > FILE_SIZE_MAX) fail(Errno.inval);
  ftruncateSync(file.host_fd, Number(value));
  return Errno.success;
}

/** `fd_filestat_set_times(fd, atim, mtim, fst_flags)`. */
export function fd_filestat_set_times(ctx: HostContext, fd: number, atim: bigint, mtim: bigint, fst_flags: number): ErrnoValue {
  const entry = ctx.fds.with_rights(u32_arg(fd), Rights.fd_filestat_set_times);
  const times = {
    atim_ns: BigInt.asUintN(64, atim),
    mtim_ns: BigInt.asUintN(64, mtim),
    fst_flags: fst_flags & 0xffff,
    now_ns: ctx.clock.realtime_ns(),
  };
  if (entry.kind === "stdio" || entry.kind === "listener" || entry.kind === "conn") fail(Errno.badf, "a stream has no file to stamp");
  if (entry.kind === "file") set_times({ fd: entry.host_fd }, fstatSync(entry.host_fd, { bigint: true }), times);
  else {
    // The walk ends on a directory (or the preopen root, which may be the
    // host's symlink to one): following reaches that directory.
    const dir = resolve_dir(entry.dir);
    set_times({ path: dir.host_path, follow: true }, dir.stat, times);
  }
  return Errno.success;
}

/** `fd_advise(fd, offset, len, advice)`: checked, then ignored (advice is only a hint). */
export function fd_advise(ctx: HostContext, fd: number, _offset: bigint, _len: bigint, advice: number): ErrnoValue {
  const entry = ctx.fds.get(u32_arg(fd));
  if (entry.kind === "stdio") fail(Errno.spipe);
  if (entry.kind === "dir") fail(Errno.badf);
  require_rights(entry, Rights.fd_advise);
  if (advice < 0 || advice > ADVICE_MAX) fail(Errno.inval);
  return Errno.success;
}

/** `fd_allocate(fd, offset, len)`: grows the file to at least offset+len, like posix_fallocate. */
export function fd_allocate(ctx: HostContext, fd: number, offset: bigint, len: bigint): ErrnoValue {
  const file = writable_file(ctx.fds.get(u32_arg(fd)), Rights.fd_allocate);
  const end = BigInt.asUintN(64, offset) + BigInt.asUintN(64, len);
  if (BigInt.asUintN(64, len) === 0n || end > FILE_SIZE_MAX) fail(Errno.inval);
  if (fstatSync(file.host_fd, { bigint: true }).size < end) ftruncateSync(file.host_fd, Number(end));
  return Errno.success;
}

/** `fd_datasync(fd)`. */
export function fd_datasync(ctx: HostContext, fd: number): ErrnoValue {
  sync(ctx, u32_arg(fd), Rights.fd_datasync, fdatasyncSync);
  return Errno.success;
}

/** `fd_sync(fd)`. */
export function fd_sync(ctx: HostContext, fd: number): ErrnoValue {
  sync(ctx, u32_arg(fd), Rights.fd_sync, fsyncSync);
  return Errno.success;
}

/** `fd_prestat_get(fd, prestat_ptr)`: `badf` for anything but a preopened directory. */
export function fd_prestat_get(ctx: HostContext, fd: number, prestat_ptr: number): ErrnoValue {
  const entry = ctx.fds.get(u32_arg(fd));
  if (entry.kind !== "dir" || !entry.is_preopen) fail(Errno.badf);
  const ptr = u32_arg(prestat_ptr);
  const name = preopen_name(ctx, entry.preopen);
  ctx.mem.zero(ptr, Prestat.size);
  ctx.mem.set_u8(ptr + Prestat.tag, 0);
  ctx.mem.set_u32(ptr + Prestat.name_len, name.length);
  return Errno.success;
}

/** `fd_prestat_dir_name(fd, path_ptr, path_len)`: the guest name, unterminated. */
export function fd_prestat_dir_name(ctx: HostContext, fd: number, path_ptr: number, path_len: number): ErrnoValue {
  const entry = ctx.fds.get(u32_arg(fd));
  if (entry.kind !== "dir" || !entry.is_preopen) fail(Errno.badf);
  const name = preopen_name(ctx, entry.preopen);
  if (u32_arg(path_len) < name.length) fail(Errno.nametoolong);
  ctx.mem.write(u32_arg(path_ptr), name);
  return Errno.success;
}

/** filetype reported by fd_fdstat_get for an entry. */
export function entry_filetype(entry: FdEntry): number {
  if (entry.kind === "stdio") return stdio_filetype(entry.as);
  if (entry.kind === "dir") return Filetype.directory;
  if (entry.kind === "listener" || entry.kind === "conn") return Filetype.socket_stream;
  return entry.filetype;
}

function preopen_name(ctx: HostContext, index: number): Uint8Array {
  const preopen = ctx.preopens[index];
  if (preopen === undefined) throw new Error(`fd refers to unknown preopen ${index}`);
  return utf8(preopen.guest_path);
}

function writable_file(entry: FdEntry, right: bigint): FileEntry {
  if (entry.kind === "dir") fail(Errno.isdir);
  if (entry.kind !== "file") fail(Errno.badf);
  require_rights(entry, right);
  if (!entry.write) fail(Errno.badf, "file not open for writing");
  return entry;
}

function sync(ctx: HostContext, fd: number, right: bigint, how: (host_fd: number) => void): void {
  const entry = ctx.fds.get(fd);
  if (entry.kind === "stdio" || entry.kind === "listener" || entry.kind === "conn") fail(Errno.inval, "a stream cannot be synced");
  require_rights(entry, right);
  if (entry.kind === "file") {
    how(entry.host_fd);
    return;
  }
  // Directories hold no host fd; open one just long enough to sync it.
  const host_fd = openSync(resolve_dir(entry.dir).host_path, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    how(host_fd);
  } finally {
    closeSync(host_fd);
  }
}
