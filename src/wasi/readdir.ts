/**
 * fd_readdir.
 *
 * A directory's entries are ".", ".." and the host's names sorted by code
 * unit; the cookie of an entry is its index + 1 (0 = start). Sorting makes the
 * cookie → entry mapping a function of the directory's contents alone, so a
 * guest holding a cookie can be migrated mid-listing without carrying the
 * listing along: the destination lists the same directory the same way. The
 * listing is cached on the fd from cookie 0 on and re-read at the next cookie
 * 0 (a rewind), as POSIX lets readdir see or miss concurrent changes.
 *
 * The buffer is filled with dirent headers each followed by its name; the
 * last entry is cut off where the buffer ends, as the spec asks, and a caller
 * seeing bufused == buf_len asks again with a larger buffer or the next cookie.
 */

import { lstatSync, readdirSync, type BigIntStats } from "node:fs";
import { join } from "node:path";

import { Errno, type ErrnoValue } from "./errno.js";
import { Dirent, Rights } from "./_layout.js";
import { resolve_dir } from "./_path.js";
import { filetype_of } from "./_filestat.js";
import type { HostContext } from "./_context.js";
import { u32_arg, utf8 } from "./_memory.js";

/** `fd_readdir(fd, buf, buf_len, cookie, bufused_ptr)`. */
export function fd_readdir(
  ctx: HostContext,
  fd: number,
  buf_ptr: number,
  buf_len: number,
  cookie: bigint,
  bufused_ptr: number,
): ErrnoValue {
  const entry = ctx.fds.dir(u32_arg(fd), Rights.fd_readdir);
  const buf = u32_arg(buf_ptr);
  const len = u32_arg(buf_len);
  const out = u32_arg(bufused_ptr);
  ctx.mem.check(buf, len);
  ctx.mem.check(out, 4);
  const start = BigInt.asUintN(64, cookie);
  // Walked again on every call, not only at cookie 0: the listing may be
  // kept, but the directory its names are looked up in is found anew.
  const dir = resolve_dir(entry.dir);
  const dir_path = dir.host_path;
  if (start === 0n || entry.listing === undefined) {
    entry.listing = { names: [".", "..", ...readdirSync(dir_path).sort()] };
  }
  const names = entry.listing.names;
  let used = 0;
  for (let index = Number(start); index < names.length && used < len; index++) {
    const name = names[index] as string;
    const record = dirent_record(name, BigInt(index + 1), entry_stat(dir_path, name, dir.rel.length === 0));
    const n = Math.min(record.length, len - used);
    ctx.mem.write(buf + used, record.subarray(0, n));
    used += n;
  }
  ctx.mem.set_u32(out, used);
  return Errno.success;
}

/**
 * lstat of one entry. ".." of a preopen root is the root itself: the guest's
 * view has nothing above it, and the host's parent is none of its business.
 * An entry removed since the listing was taken reports inode 0, type unknown.
 */
function entry_stat(dir_path: string, name: string, is_root: boolean): BigIntStats | undefined {
  const path = name === "." || (name === ".." && is_root) ? dir_path : join(dir_path, name);
  return lstatSync(path, { bigint: true, throwIfNoEntry: false });
}

function dirent_record(name: string, next: bigint, stat: BigIntStats | undefined): Uint8Array {
  const name_bytes = utf8(name);
  const record = new Uint8Array(Dirent.size + name_bytes.length);
  const view = new DataView(record.buffer);
  view.setBigUint64(Dirent.d_next, next, true);
  view.setBigUint64(Dirent.d_ino, stat?.ino ?? 0n, true);
  view.setUint32(Dirent.d_namlen, name_bytes.length, true);
  view.setUint8(Dirent.d_type, stat === undefined ? 0 : filetype_of(stat));
  record.set(name_bytes, Dirent.size);
  return record;
}
