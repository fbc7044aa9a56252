/**
 * Host stat → preview1 `filestat`, and the timestamp updates shared by
 * fd_filestat_set_times and path_filestat_set_times.
 */

import { futimesSync, lutimesSync, utimesSync, type BigIntStats } from "node:fs";

import { Errno, fail } from "./errno.js";
import { fileTimesSetter, type FileTimesTarget, type TimeChange } from "./_file_times.js";
import { Filestat, Filetype, FstFlags } from "./_layout.js";
import type { GuestMemory } from "./_memory.js";

/** preview1 filetype of a host file. */
export function filetype_of(stat: BigIntStats): number {
  if (stat.isFile()) return Filetype.regular_file;
  if (stat.isDirectory()) return Filetype.directory;
  if (stat.isSymbolicLink()) return Filetype.symbolic_link;
  if (stat.isCharacterDevice()) return Filetype.character_device;
  if (stat.isBlockDevice()) return Filetype.block_device;
  if (stat.isSocket()) return Filetype.socket_stream;
  return Filetype.unknown;
}

/** Writes a `filestat` for `stat` at `ptr`. */
export function write_filestat(mem: GuestMemory, ptr: number, stat: BigIntStats): void {
  mem.check(ptr, Filestat.size);
  mem.zero(ptr, Filestat.size);
  mem.set_u64(ptr + Filestat.dev, stat.dev);
  mem.set_u64(ptr + Filestat.ino, stat.ino);
  mem.set_u8(ptr + Filestat.filetype, filetype_of(stat));
  mem.set_u64(ptr + Filestat.nlink, stat.nlink);
  mem.set_u64(ptr + Filestat.filesize, stat.size);
  mem.set_u64(ptr + Filestat.atim, stat.atimeNs);
  mem.set_u64(ptr + Filestat.mtim, stat.mtimeNs);
  mem.set_u64(ptr + Filestat.ctim, stat.ctimeNs);
}

/** Writes the `filestat` of a stream with no host file behind it (stdio). */
export function write_stream_filestat(mem: GuestMemory, ptr: number, filetype: number): void {
  mem.zero(ptr, Filestat.size);
  mem.set_u8(ptr + Filestat.filetype, filetype);
}

/** Where to apply new timestamps: an open host fd, or a path (followed or not). */
export type TimesTarget = FileTimesTarget;

/**
 * Applies preview1 `fstflags` to `target`: each of atime/mtime is kept, set
 * to the given value, or set to `now_ns` (the host's injected clock). Setting
 * a value and "now" for the same timestamp is `inval`. Through the native
 * addon, times land to the nanosecond; where it is not built, Node's utimes
 * takes seconds as a double (about microsecond precision).
 */
export function set_times(
  target: TimesTarget,
  current: BigIntStats,
  times: { atim_ns: bigint; mtim_ns: bigint; fst_flags: number; now_ns: bigint },
): void {
  const f = times.fst_flags;
  const known = FstFlags.atim | FstFlags.atim_now | FstFlags.mtim | FstFlags.mtim_now;
  if ((f & ~known) !== 0) fail(Errno.inval, "unknown fstflags");
  if ((f & FstFlags.atim) !== 0 && (f & FstFlags.atim_now) !== 0) fail(Errno.inval);
  if ((f & FstFlags.mtim) !== 0 && (f & FstFlags.mtim_now) !== 0) fail(Errno.inval);
  const change = (set: number, now: number, value: bigint): TimeChange =>
    (f & set) !== 0 ? value : (f & now) !== 0 ? times.now_ns : "omit";
  const atime = change(FstFlags.atim, FstFlags.atim_now, times.atim_ns);
  const mtime = change(FstFlags.mtim, FstFlags.mtim_now, times.mtim_ns);
  const native = setter();
  if (native !== null) {
    native(target, atime, mtime);
    return;
  }
  const resolve = (t: TimeChange, old: bigint): number => seconds(t === "omit" ? old : t);
  const a = resolve(atime, current.atimeNs);
  const m = resolve(mtime, current.mtimeNs);
  if ("fd" in target) futimesSync(target.fd, a, m);
  else if (target.follow) utimesSync(target.path, a, m);
  else lutimesSync(target.path, a, m);
}

let loaded: ReturnType<typeof fileTimesSetter> | undefined;
function setter(): ReturnType<typeof fileTimesSetter> {
  if (loaded === undefined) loaded = fileTimesSetter();
  return loaded;
}

function seconds(ns: bigint): number {
  return Number(ns / 1_000_000_000n) + Number(ns % 1_000_000_000n) / 1e9;
}
