/**
 * File timestamps to the nanosecond, through the native addon (futimens and
 * utimensat). Node's utimes family takes seconds as a double and loses the
 * last digits; WASI promises nanoseconds. The addon is shared (src/native.ts).
 */
import { nativeAddon } from "../native.js";

/** One timestamp: kept as it is, or set to a value in nanoseconds. */
export type TimeChange = "omit" | bigint;

/** Where: an open host fd, or a host path, followed if it is a symlink or not. */
export type FileTimesTarget = { fd: number } | { path: string; follow: boolean };

/** Sets the access and modification times of `target`; throws Node-shaped system errors (code, syscall). */
export type SetFileTimes = (target: FileTimesTarget, atime: TimeChange, mtime: TimeChange) => void;

const mode = (t: TimeChange): number => (t === "omit" ? 0 : 1);
const value = (t: TimeChange): bigint => (t === "omit" ? 0n : t);

/** The nanosecond setter of the native addon, or null where the addon is not built. */
export function fileTimesSetter(): SetFileTimes | null {
  const n = nativeAddon();
  if (!("addon" in n)) return null;
  const addon = n.addon;
  return (target, atime, mtime) => {
    const fd = "fd" in target ? target.fd : -1;
    const path = "fd" in target ? null : target.path;
    const follow = "fd" in target ? true : target.follow;
    addon.setTimes(fd, path, follow, mode(atime), value(atime), mode(mtime), value(mtime));
  };
}
