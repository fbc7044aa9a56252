/**
 * Sandboxed resolution of guest paths to host paths. This module is the only
 * place that turns a guest path into a host path; everything else calls fs
 * only on what it returns.
 *
 * A guest sees only its preopens, and through a directory fd only what lies
 * below that directory: each directory fd is a capability, as in wasmtime
 * (cap-std) and as the WASI testsuite expects. Node has no openat(2), so a
 * directory fd holds no host handle: it is its preopen's root plus the
 * components below it ({@link DirRef}), and every use walks again, from the
 * root, both those components and the guest's path, one at a time,
 * lstat-ing each step and expanding symlinks ourselves:
 * - an absolute guest path is refused with `notcapable` (wasmtime's choice;
 *   wasi-libc has already turned absolute paths into preopen-relative ones
 *   before calling the host, so only a confused or hostile guest sends one);
 * - `..` may climb back up to the fd's directory but never above it
 *   (`notcapable`); the walk to that directory itself stays below the root;
 * - a symlink's target is spliced into the remaining components and walked
 *   the same way, so an absolute or escaping target is `notcapable` too, and
 *   more than {@link SYMLINK_EXPANSIONS_MAX} expansions is `loop`;
 * - the final component is followed only when the caller asks.
 *
 * Why the held directory is walked again and not trusted (issue 10): what its
 * components name changes under it. A guest could hold an fd on `v2`, remove
 * `v2` and rename over it a symlink made deep in the tree, whose `..`s stayed
 * inside where it was made but lead out from the top; a walk that started at
 * `root/v2` let the host's kernel follow that link to `/`. Walked again, `v2`
 * is a symlink like any other and its escape is refused. The same walk makes
 * `..` through a removed directory `noent` (as Linux does for a dead
 * directory) instead of quietly naming its old parent.
 *
 * The walk checks the host directories as they are now; another host process
 * swapping a directory for a symlink between our lstat and the operation is a
 * race this path-based design cannot close (the guest itself cannot race us:
 * its calls are synchronous). path_open narrows it for file contents by
 * checking, after the open, where the kernel actually opened the file
 * ({@link opened_inside}).
 *
 * Cost: one lstat per component of the held directory and of the path, per
 * call (plus a readlink per symlink); nothing is cached between calls, since
 * anything cached could be stale by the next one.
 */

import { lstatSync, readlinkSync, realpathSync, statSync, type BigIntStats } from "node:fs";
import { join, sep } from "node:path";

import { Errno, fail } from "./errno.js";

/** Symlinks expanded in one resolution before giving up with `loop` (Linux's MAXSYMLINKS). */
export const SYMLINK_EXPANSIONS_MAX = 40;

/** Longest guest path accepted, in UTF-8 bytes (PATH_MAX); longer is `nametoolong`. */
export const PATH_BYTES_MAX = 4096;

/** Longest single path component, in UTF-8 bytes (NAME_MAX). */
export const NAME_BYTES_MAX = 255;

/**
 * A directory inside a preopen: the preopen's host root and the components
 * below it. Never a host path to trust: {@link resolve} walks `rel` again on
 * every use.
 */
export type DirRef = {
  /** Host path of the preopen directory (absolute). */
  readonly root: string;
  /** Components from the root down to this directory, as last walked; never contains "." or "..". */
  readonly rel: readonly string[];
};

/** Where a guest path leads. */
export type Resolved = {
  /** Preopen root the result lies below. */
  root: string;
  /** Components from the root to the result; empty for the root itself. No symlink among them but maybe the last. */
  rel: string[];
  /** `join(root, ...rel)`, valid until the tree changes: use it at once, never keep it. */
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

/**
 * Resolves `path` relative to `dir` within its preopen, following a symlink in
 * the final component only when `options.follow`. `dir` itself is walked
 * again from its root first. Fails with an errno (`notcapable`, `noent`,
 * `notdir`, `loop`, `nametoolong`, `inval`) for paths that are malformed,
 * escape, or cannot be walked; a missing final component is not an error (see
 * {@link Resolved.stat}).
 */
export function resolve(dir: DirRef, path: string, options: { follow: boolean }): Resolved {
  if (path.length === 0) fail(Errno.noent, "empty path");
  if (path.includes("\0")) fail(Errno.inval, "path contains NUL");
  if (Buffer.byteLength(path) > PATH_BYTES_MAX) fail(Errno.nametoolong);
  if (path.startsWith("/")) fail(Errno.notcapable, `absolute path ${path} is outside the sandbox`);
  const walk: Walk = { root: dir.root, stack: [], floor: 0, expansions: 0, path };
  descend(walk, [...dir.rel], undefined);
  walk.floor = walk.stack.length;
  const trailing_slash = path.endsWith("/");
  const found = descend(walk, components(path), { follow: options.follow, trailing_slash });
  if (found !== undefined) return found;
  // The path ended in "." or ".." (or a symlink to them): the result is a
  // directory the walk went through, or the starting directory itself.
  const host_path = join(dir.root, ...walk.stack);
  return { root: dir.root, rel: walk.stack, host_path, stat: stat_dir(walk), entry: false, trailing_slash };
}

/**
 * The directory `dir` names now, walked again from its root: for calls on a
 * directory fd itself (fd_readdir, fd_filestat_*, fd_sync).
 */
export function resolve_dir(dir: DirRef): Resolved & { stat: BigIntStats } {
  const found = resolve(dir, ".", { follow: true });
  return { ...found, stat: found.stat ?? fail(Errno.noent) };
}

/**
 * Whether a new symlink at `link_parent` (components below the root) with
 * content `target` would lexically point outside the preopen. Resolution
 * refuses to follow such links anyway; refusing to create them (or to move
 * one where it would) also keeps a guest from planting traps for host tools
 * that do follow them.
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

/**
 * Whether the file open at `host_fd` lies below `root` as the kernel sees it
 * (Linux's /proc/self/fd). This closes, for the contents of files, the race
 * the lstat walk leaves open: a directory swapped for a symlink by another
 * host process between the walk and the open. True where /proc is not
 * mounted: the walk is then all there is. `real_roots`: the process's kept
 * real paths of its roots.
 */
export function opened_inside(host_fd: number, root: string, real_roots: RealRoots): boolean {
  let opened: string;
  try {
    opened = readlinkSync(`/proc/self/fd/${host_fd}`, "utf8");
  } catch (error) {
    // No procfs (a container without /proc): nothing to check against, and
    // refusing every open there would make the sandbox unusable.
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return true;
    throw error;
  }
  const real_root = real_roots.get(root);
  return opened === real_root || opened.startsWith(real_root === sep ? sep : real_root + sep);
}

/**
 * The real paths of a process's preopen roots, each as it was the first time
 * the process opened a file below it. Kept, not looked up at each open (one
 * readlink per component of the root, a third of path_open's system calls
 * for a root three deep): a root swapped on the host since for a symlink
 * elsewhere then refuses the files opened through it (they lie outside the
 * real path kept) rather than taking the new place for the sandbox. One per
 * process (its WASI host): a process started later looks the root up anew.
 */
export class RealRoots {
  readonly #real = new Map<string, string>();

  /** The real path of `root` (absolute), looked up at the first call. */
  get(root: string): string {
    let real = this.#real.get(root);
    if (real === undefined) {
      real = realpathSync.native(root);
      this.#real.set(root, real);
    }
    return real;
  }
}

/** One resolution in progress. */
type Walk = {
  readonly root: string;
  /** Components from the root to where the walk is; each an existing directory, not a symlink, when walked. */
  readonly stack: string[];
  /** How far up `..` may climb: 0 (the root) while walking to the fd's directory, then that directory's depth. */
  floor: number;
  /** Symlinks expanded so far, in this resolution. */
  expansions: number;
  /** The guest's path, for messages. */
  readonly path: string;
};

/** How the last of the guest's components is treated. */
type Final = { follow: boolean; trailing_slash: boolean };

/**
 * Walks `names` from where `walk` is. Without `final`, every name must lead
 * to a directory (symlinks followed) and the walk just moves; with it, the
 * last name is the result, returned unless the names end in "." or "..".
 */
function descend(walk: Walk, names: string[], final: Final | undefined): Resolved | undefined {
  let pending = names;
  while (pending.length > 0) {
    const name = pending[0] as string;
    pending = pending.slice(1);
    const last = final !== undefined && pending.length === 0;
    if (name === "..") {
      if (walk.stack.length <= walk.floor) fail(Errno.notcapable, `${walk.path} climbs above its directory`);
      walk.stack.pop();
      continue;
    }
    if (Buffer.byteLength(name) > NAME_BYTES_MAX) fail(Errno.nametoolong);
    const host_path = join(walk.root, ...walk.stack, name);
    const stat = lstatSync(host_path, { bigint: true, throwIfNoEntry: false });
    if (stat === undefined) {
      if (!last) fail(Errno.noent);
      return { root: walk.root, rel: [...walk.stack, name], host_path, stat, entry: true, trailing_slash: final.trailing_slash };
    }
    if (stat.isSymbolicLink() && (!last || final.follow)) {
      pending = [...expand(walk, host_path, name), ...pending];
      continue;
    }
    if (!last && !stat.isDirectory()) fail(Errno.notdir);
    walk.stack.push(name);
    if (last) {
      if (final.trailing_slash && !stat.isDirectory()) fail(Errno.notdir);
      return { root: walk.root, rel: [...walk.stack], host_path, stat, entry: true, trailing_slash: final.trailing_slash };
    }
  }
  return undefined;
}

/** The components a symlink stands for, walked from the directory that holds it. */
function expand(walk: Walk, host_path: string, name: string): string[] {
  walk.expansions += 1;
  if (walk.expansions > SYMLINK_EXPANSIONS_MAX) fail(Errno.loop, `too many symlinks in ${walk.path}`);
  const target = readlinkSync(host_path, "utf8");
  if (target.length === 0) fail(Errno.noent);
  if (target.startsWith("/")) fail(Errno.notcapable, `symlink ${name} points outside the sandbox`);
  return components(target);
}

/**
 * stat of the directory the walk stands in. Every component below the root
 * was lstat-ed as a directory on the way; the root itself is the host's grant,
 * so a symlink there is followed like the operator meant it.
 */
function stat_dir(walk: Walk): BigIntStats {
  const host_path = join(walk.root, ...walk.stack);
  const stat = walk.stack.length === 0 ? statSync(host_path, { bigint: true, throwIfNoEntry: false }) : lstatSync(host_path, { bigint: true, throwIfNoEntry: false });
  return stat ?? fail(Errno.noent);
}

/** Components of a relative path, without empty and "." ones. */
function components(path: string): string[] {
  return path.split("/").filter((c) => c !== "" && c !== ".");
}
