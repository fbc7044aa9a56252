/**
 * Sandboxed resolution of guest paths to host paths. This module is the only
 * place that turns a guest path into a host path; everything else calls fs
 * only on what it returns.
 *
 * A guest sees only its preopens. Node has no openat(2), so instead of
 * holding directory handles we walk the guest path one component at a time
 * below the preopen's host directory, lstat-ing each step and expanding
 * symlinks ourselves:
 * - an absolute guest path is refused with `notcapable` (wasmtime's choice;
 *   wasi-libc has already turned absolute paths into preopen-relative ones
 *   before calling the host, so only a confused or hostile guest sends one);
 * - `..` may climb back up to the preopen root but never above it (`notcapable`);
 * - a symlink's target is spliced into the remaining components and walked
 *   the same way, so an absolute or escaping target is `notcapable` too, and
 *   more than {@link SYMLINK_EXPANSIONS_MAX} expansions is `loop`;
 * - the final component is followed only when the caller asks.
 * The walk checks the host directories as they are now; another host process
 * swapping a directory for a symlink between our lstat and the operation is a
 * race this path-based design cannot close (the guest itself cannot race us:
 * its calls are synchronous).
 */

import { lstatSync, readlinkSync, type BigIntStats } from "node:fs";
import { join } from "node:path";

import { Errno, fail } from "./errno.js";

/** Symlinks expanded in one resolution before giving up with `loop` (Linux's MAXSYMLINKS). */
export const SYMLINK_EXPANSIONS_MAX = 40;

/** Longest guest path accepted, in UTF-8 bytes (PATH_MAX); longer is `nametoolong`. */
export const PATH_BYTES_MAX = 4096;

/** Longest single path component, in UTF-8 bytes (NAME_MAX). */
export const NAME_BYTES_MAX = 255;

/** A directory inside a preopen: the preopen's host root and the components below it. */
export type DirRef = {
  /** Host path of the preopen directory (absolute). */
  readonly root: string;
  /** Components from the root down to this directory; never contains "." or "..". */
  readonly rel: readonly string[];
};

/** Where a guest path leads. */
export type Resolved = {
  /** Preopen root the result lies below. */
  root: string;
  /** Components from the root to the result; empty for the root itself. */
  rel: string[];
  /** `join(root, ...rel)`. */
  host_path: string;
  /** lstat of host_path, or undefined when nothing is there (yet). */
  stat: BigIntStats | undefined;
  /**
   * True when the path ended in a name (an entry a parent directory holds),
   * false when it ended in "." or ".." (or a symlink to them): such a path
   * cannot be created, removed or renamed.
   */
  entry: boolean;
  /** The path ended in "/": the caller wants a directory. */
  trailing_slash: boolean;
};

/** Host path of a directory reference. */
export function host_path_of(dir: DirRef): string {
  return join(dir.root, ...dir.rel);
}

/**
 * Resolves `path` relative to `dir` within its preopen, following a symlink in
 * the final component only when `options.follow`. Fails with an errno
 * (`notcapable`, `noent`, `notdir`, `loop`, `nametoolong`, `inval`) for paths
 * that are malformed, escape, or cannot be walked; a missing final component
 * is not an error (see {@link Resolved.stat}).
 */
export function resolve(dir: DirRef, path: string, options: { follow: boolean }): Resolved {
  if (path.length === 0) fail(Errno.noent, "empty path");
  if (path.includes("\0")) fail(Errno.inval, "path contains NUL");
  if (Buffer.byteLength(path) > PATH_BYTES_MAX) fail(Errno.nametoolong);
  if (path.startsWith("/")) fail(Errno.notcapable, `absolute path ${path} is outside the sandbox`);
  const trailing_slash = path.endsWith("/");

  const stack = [...dir.rel];
  let pending = components(path);
  let expansions = 0;
  while (pending.length > 0) {
    const name = pending[0] as string;
    pending = pending.slice(1);
    const last = pending.length === 0;
    if (name === "..") {
      if (stack.length === 0) fail(Errno.notcapable, `${path} climbs above its preopen`);
      stack.pop();
      continue;
    }
    if (Buffer.byteLength(name) > NAME_BYTES_MAX) fail(Errno.nametoolong);
    const host_path = join(dir.root, ...stack, name);
    const stat = lstatSync(host_path, { bigint: true, throwIfNoEntry: false });
    if (stat === undefined) {
      if (!last) fail(Errno.noent);
      return { root: dir.root, rel: [...stack, name], host_path, stat, entry: true, trailing_slash };
    }
    if (stat.isSymbolicLink() && (!last || options.follow)) {
      expansions += 1;
      if (expansions > SYMLINK_EXPANSIONS_MAX) fail(Errno.loop, `too many symlinks in ${path}`);
      const target = readlinkSync(host_path, "utf8");
      if (target.length === 0) fail(Errno.noent);
      if (target.startsWith("/")) fail(Errno.notcapable, `symlink ${name} points outside the sandbox`);
      pending = [...components(target), ...pending];
      continue;
    }
    if (!last && !stat.isDirectory()) fail(Errno.notdir);
    stack.push(name);
    if (last) {
      if (trailing_slash && !stat.isDirectory()) fail(Errno.notdir);
      return { root: dir.root, rel: stack, host_path, stat, entry: true, trailing_slash };
    }
  }
  // The path ended in "." or ".." (or a symlink to them): the result is a
  // directory we walked through, or the starting directory itself.
  const host_path = join(dir.root, ...stack);
  const stat = lstatSync(host_path, { bigint: true, throwIfNoEntry: false });
  if (stat === undefined) fail(Errno.noent);
  return { root: dir.root, rel: stack, host_path, stat, entry: false, trailing_slash };
}

/**
 * Whether a new symlink at `link_parent` (components below the root) with
 * content `target` would lexically point outside the preopen. Resolution
 * refuses to follow such links anyway; refusing to create them also keeps a
 * guest from planting traps for host tools that do follow them.
 */
export function symlink_target_escapes(link_parent: readonly string[], target: string): boolean {
  if (target.startsWith("/")) return true;
  let depth = link_parent.length;
  for (const name of components(target)) {
    depth += name === ".." ? -1 : 1;
    if (depth < 0) return true;
  }
  return false;
}

/** Components of a relative path, without empty and "." ones. */
function components(path: string): string[] {
  return path.split("/").filter((c) => c !== "" && c !== ".");
}
