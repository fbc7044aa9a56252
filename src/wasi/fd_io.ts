/**
 * Data transfer on fds: fd_read, fd_write, fd_pread, fd_pwrite, fd_seek,
 * fd_tell.
 *
 * Files use positional host I/O at an offset this host keeps (never the host
 * fd's own position), so the offset in a capture is exactly what the guest
 * would see next. stdin comes from the injected InputSource; an empty stdin
 * blocks through the Blocker, and a "suspend" from it returns at once having
 * consumed nothing and written nothing, so the runtime's repeat of the call
 * behaves as if the first one never happened.
 */

import { fstatSync, readSync, writeSync } from "node:fs";

import { Errno, fail, type ErrnoValue } from "./errno.js";
import { FdFlags, Rights, Whence } from "./_layout.js";
import { require_rights, type FdEntry, type FileEntry, type StdioEntry } from "./fd_table.js";
import type { HostContext } from "./_context.js";
import { receive, send } from "./sockets.js";
import { u32_arg, type GuestSlice } from "./_memory.js";

/** Largest file offset preview1 can express as a non-negative filedelta. */
const OFFSET_MAX = (1n << 63n) - 1n;

/** `fd_read(fd, iovs, iovs_len, nread_ptr)`. May block on stdin. */
export function fd_read(ctx: HostContext, fd: number, iovs_ptr: number, iovs_len: number, nread_ptr: number): ErrnoValue {
  const entry = ctx.fds.get(u32_arg(fd));
  const slices = ctx.mem.iovecs(u32_arg(iovs_ptr), u32_arg(iovs_len));
  const out = u32_arg(nread_ptr);
  ctx.mem.check(out, 4);
  if (entry.kind === "stdio") {
    const n = read_stdin(ctx, entry, slices);
    if (n !== undefined) ctx.mem.set_u32(out, n);
    return Errno.success;
  }
  if (entry.kind === "conn") {
    require_rights(entry, Rights.fd_read);
    const n = receive(ctx, entry, slices, false);
    if (n !== undefined) ctx.mem.set_u32(out, n);
    return Errno.success;
  }
  const file = readable_file(entry);
  const n = read_file_at(ctx, file, slices, file.offset);
  file.offset += BigInt(n);
  ctx.mem.set_u32(out, n);
  return Errno.success;
}

/** `fd_write(fd, iovs, iovs_len, nwritten_ptr)`. */
export function fd_write(ctx: HostContext, fd: number, iovs_ptr: number, iovs_len: number, nwritten_ptr: number): ErrnoValue {
  const entry = ctx.fds.get(u32_arg(fd));
  const slices = ctx.mem.iovecs(u32_arg(iovs_ptr), u32_arg(iovs_len));
  const out = u32_arg(nwritten_ptr);
  // Checked before writing so a bad pointer cannot follow a completed write.
  ctx.mem.check(out, 4);
  if (entry.kind === "stdio") {
    ctx.mem.set_u32(out, write_stdio(ctx, entry, slices));
    return Errno.success;
  }
  if (entry.kind === "conn") {
    require_rights(entry, Rights.fd_write);
    const n = send(ctx, entry, slices);
    if (n !== undefined) ctx.mem.set_u32(out, n);
    return Errno.success;
  }
  const file = writable_file(entry);
  // APPEND: at the end as it is now, and the offset follows, as in POSIX.
  const position = (file.fdflags & FdFlags.append) !== 0 ? fstatSync(file.host_fd, { bigint: true }).size : file.offset;
  const n = write_file_at(ctx, file, slices, position);
  file.offset = position + BigInt(n);
  ctx.mem.set_u32(out, n);
  return Errno.success;
}

/** `fd_pread(fd, iovs, iovs_len, offset, nread_ptr)`: reads without moving the offset. */
export function fd_pread(
  ctx: HostContext,
  fd: number,
  iovs_ptr: number,
  iovs_len: number,
  offset: bigint,
  nread_ptr: number,
): ErrnoValue {
  const entry = ctx.fds.get(u32_arg(fd));
  const slices = ctx.mem.iovecs(u32_arg(iovs_ptr), u32_arg(iovs_len));
  const out = u32_arg(nread_ptr);
  ctx.mem.check(out, 4);
  if (entry.kind === "stdio" || entry.kind === "conn") fail(Errno.spipe);
  const file = readable_file(entry);
  require_rights(file, Rights.fd_seek);
  ctx.mem.set_u32(out, read_file_at(ctx, file, slices, checked_offset(offset)));
  return Errno.success;
}

/** `fd_pwrite(fd, iovs, iovs_len, offset, nwritten_ptr)`: writes at `offset` without moving the offset. */
export function fd_pwrite(
  ctx: HostContext,
  fd: number,
  iovs_ptr: number,
  iovs_len: number,
  offset: bigint,
  nwritten_ptr: number,
): ErrnoValue {
  const entry = ctx.fds.get(u32_arg(fd));
  const slices = ctx.mem.iovecs(u32_arg(iovs_ptr), u32_arg(iovs_len));
  const out = u32_arg(nwritten_ptr);
  ctx.mem.check(out, 4);
  if (entry.kind === "stdio" || entry.kind === "conn") fail(Errno.spipe);
  const file = writable_file(entry);
  require_rights(file, Rights.fd_seek);
  ctx.mem.set_u32(out, write_file_at(ctx, file, slices, checked_offset(offset)));
  return Errno.success;
}

/** `fd_seek(fd, delta, whence, newoffset_ptr)`; a negative result is `inval`. */
export function fd_seek(ctx: HostContext, fd: number, delta: bigint, whence: number, newoffset_ptr: number): ErrnoValue {
  const entry = ctx.fds.get(u32_arg(fd));
  const out = u32_arg(newoffset_ptr);
  ctx.mem.check(out, 8);
  const signed = BigInt.asIntN(64, delta);
  if (entry.kind === "stdio") {
    // A stream tells where it is, and never moves: its bytes are relayed,
    // and the process may be on another machine than the file.
    if (whence !== Whence.cur || signed !== 0n) fail(Errno.spipe, "a standard stream cannot seek");
    ctx.mem.set_u64(out, stream_position(ctx, entry));
    return Errno.success;
  }
  const file = seekable_file(entry);
  // Reading the position back (CUR + 0) needs only the tell right.
  require_rights(file, whence === Whence.cur && signed === 0n ? Rights.fd_tell : Rights.fd_seek);
  let base: bigint;
  switch (whence) {
    case Whence.set:
      base = 0n;
      break;
    case Whence.cur:
      base = file.offset;
      break;
    case Whence.end:
      base = fstatSync(file.host_fd, { bigint: true }).size;
      break;
    default:
      return fail(Errno.inval, `whence ${whence}`);
  }
  const next = base + signed;
  if (next < 0n || next > OFFSET_MAX) fail(Errno.inval, `seek to ${next}`);
  file.offset = next;
  ctx.mem.set_u64(out, next);
  return Errno.success;
}

/** `fd_tell(fd, offset_ptr)`. */
export function fd_tell(ctx: HostContext, fd: number, offset_ptr: number): ErrnoValue {
  const entry = ctx.fds.get(u32_arg(fd));
  if (entry.kind === "stdio") {
    ctx.mem.set_u64(u32_arg(offset_ptr), stream_position(ctx, entry));
    return Errno.success;
  }
  const file = seekable_file(entry);
  require_rights(file, Rights.fd_tell);
  ctx.mem.set_u64(u32_arg(offset_ptr), file.offset);
  return Errno.success;
}

/**
 * Where a file or device stream stands: the bytes the guest read (stdin) or
 * wrote (stdout, stderr) on it, over its whole life; a device (/dev/null)
 * stays at 0, as on the host. Pipes and terminals have no position (`spipe`).
 */
function stream_position(ctx: HostContext, entry: StdioEntry): bigint {
  if (entry.as !== "file" && entry.as !== "device") fail(Errno.spipe);
  require_rights(entry, Rights.fd_tell);
  if (entry.as === "device") return 0n;
  return BigInt(entry.stream === 0 ? ctx.stdin_bytes : entry.stream === 1 ? ctx.stdout_bytes : ctx.stderr_bytes);
}

/**
 * Reads stdin into `slices`. Returns the byte count (0 at eof), or undefined
 * when the runtime asked to suspend: then nothing was consumed.
 */
function read_stdin(ctx: HostContext, entry: StdioEntry, slices: readonly GuestSlice[]): number | undefined {
  if (entry.stream !== 0) fail(Errno.badf, "stdout/stderr are not readable");
  require_rights(entry, Rights.fd_read);
  const max_bytes = slices.reduce((sum, s) => sum + s.len, 0);
  if (max_bytes === 0) return 0;
  for (;;) {
    const got = ctx.deps.stdin.tryRead(max_bytes);
    if (got === "eof") return 0;
    if (got !== "empty") {
      if (got.length > max_bytes) throw new RangeError(`InputSource returned ${got.length} bytes, more than the ${max_bytes} asked`);
      const n = ctx.mem.scatter(slices, got);
      ctx.stdin_bytes += n;
      return n;
    }
    if ((entry.fdflags & FdFlags.nonblock) !== 0) fail(Errno.again);
    if (ctx.deps.blocker.wait({ stdin: true }) === "suspend") return undefined;
  }
}

function write_stdio(ctx: HostContext, entry: StdioEntry, slices: readonly GuestSlice[]): number {
  if (entry.stream === 0) fail(Errno.badf, "stdin is not writable");
  require_rights(entry, Rights.fd_write);
  // A private copy: the sink may keep it, and guest memory may be shared.
  const bytes = ctx.mem.gather(slices);
  if (bytes.length === 0) return 0;
  if (entry.stream === 1) {
    ctx.deps.stdout.write(bytes);
    ctx.stdout_bytes += bytes.length;
  } else {
    ctx.deps.stderr.write(bytes);
    ctx.stderr_bytes += bytes.length;
  }
  return bytes.length;
}

function read_file_at(ctx: HostContext, file: FileEntry, slices: readonly GuestSlice[], position: bigint): number {
  let total = 0;
  for (const s of slices) {
    if (s.len === 0) continue;
    const n = readSync(file.host_fd, ctx.mem.view(s.ptr, s.len), 0, s.len, host_position(position + BigInt(total)));
    total += n;
    if (n < s.len) break;
  }
  return total;
}

function write_file_at(ctx: HostContext, file: FileEntry, slices: readonly GuestSlice[], position: bigint): number {
  let total = 0;
  for (const s of slices) {
    let done = 0;
    while (done < s.len) {
      const chunk = ctx.mem.view(s.ptr + done, s.len - done);
      done += writeSync(file.host_fd, chunk, 0, chunk.length, host_position(position + BigInt(total + done)));
    }
    total += s.len;
  }
  return total;
}

function readable_file(entry: FdEntry): FileEntry {
  if (entry.kind === "dir") fail(Errno.isdir);
  if (entry.kind === "listener") fail(Errno.notconn);
  if (entry.kind !== "file") fail(Errno.badf);
  if (!entry.read) fail(Errno.badf, "file not open for reading");
  require_rights(entry, Rights.fd_read);
  return entry;
}

function writable_file(entry: FdEntry): FileEntry {
  if (entry.kind === "dir") fail(Errno.isdir);
  if (entry.kind === "listener") fail(Errno.notconn);
  if (entry.kind !== "file") fail(Errno.badf);
  if (!entry.write) fail(Errno.badf, "file not open for writing");
  require_rights(entry, Rights.fd_write);
  return entry;
}

function seekable_file(entry: FdEntry): FileEntry {
  if (entry.kind === "stdio" || entry.kind === "listener" || entry.kind === "conn") fail(Errno.spipe);
  // Directories are positioned by fd_readdir cookies, not by an offset.
  if (entry.kind === "dir") fail(Errno.badf);
  return entry;
}

/** A file position as Node's fs takes it; beyond 2^53 it cannot be exact, so `fbig`. */
function host_position(position: bigint): number {
  if (position > BigInt(Number.MAX_SAFE_INTEGER)) fail(Errno.fbig, `file position ${position}`);
  return Number(position);
}

function checked_offset(offset: bigint): bigint {
  const value = BigInt.asUintN(64, offset);
  if (value > OFFSET_MAX) fail(Errno.inval, `offset ${value}`);
  return value;
}
