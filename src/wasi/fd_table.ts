/**
 * The guest's file descriptor table: what each fd number stands for.
 *
 * Kinds of entry: stdio (backed by the injected streams), directories (no
 * host fd: every path under them goes through `_path.ts`), files (a host fd
 * plus an offset we track ourselves, so capture knows it exactly and restore
 * can reopen at the same place), and sockets: listening ones and accepted
 * connections, whose real sockets live outside the process (`sockets.ts`).
 */

import { closeSync } from "node:fs";
import { join } from "node:path";

import { Errno, fail } from "./errno.js";
import type { DirRef } from "./_path.js";
import type { StreamKind } from "./deps.js";

/** Most fds a guest may hold open at once; one more is `mfile`. */
export const FDS_MAX = 1024;

/** Fields every entry has. */
type EntryCommon = {
  /** preview1 fdflags (APPEND, DSYNC, NONBLOCK, RSYNC, SYNC). */
  fdflags: number;
  /** Rights of this fd. */
  rights_base: bigint;
  /** Rights fds opened through this one may get. */
  rights_inheriting: bigint;
};

/** stdin, stdout or stderr (possibly renumbered), and what it really is. */
export type StdioEntry = EntryCommon & { kind: "stdio"; stream: 0 | 1 | 2; as: StreamKind };

/** One cached directory listing for fd_readdir; not part of captured state. */
export type DirListing = { names: string[] };

/** A directory inside a preopen (the preopen itself included). */
export type DirEntry = EntryCommon & {
  kind: "dir";
  /** Index of the preopen this directory lies in. */
  preopen: number;
  /** Where it is. */
  dir: DirRef;
  /** True for the preopened directory itself: it answers fd_prestat_get. */
  is_preopen: boolean;
  /** Listing from the last fd_readdir at cookie 0. */
  listing?: DirListing;
};

/** An open host file. */
export type FileEntry = EntryCommon & {
  kind: "file";
  /** Index of the preopen the file lies in. */
  preopen: number;
  /** Host path of that preopen. */
  root: string;
  /** Components from the preopen root to the file. */
  rel: string[];
  /** Host path (join of the preopen root and rel). */
  host_path: string;
  /** Host file descriptor. */
  host_fd: number;
  /** Opened for reading. */
  read: boolean;
  /** Opened for writing. */
  write: boolean;
  /** preview1 oflags given to path_open (kept for the record; reopening ignores CREAT/EXCL/TRUNC). */
  oflags: number;
  /** preview1 filetype of the file (regular, or a device). */
  filetype: number;
  /** Current position; positional I/O at this offset keeps it exact. */
  offset: bigint;
};

/** A listening socket: its index among the process's listeners, and how many connections the guest accepted. */
export type ListenerEntry = EntryCommon & { kind: "listener"; listener: number; address: string; accepted: number };

/**
 * Where the guest stands in an accepted TCP connection. `received` and
 * `sent` count the bytes of each direction the guest took in and handed out:
 * a capture records them, and the relay resumes each stream at exactly those
 * offsets.
 */
export type ConnStreams = {
  listener: number;
  seq: number;
  received: number;
  sent: number;
  /** The guest shut its reading side: reads return end of stream. */
  shut_rd: boolean;
  /** The guest shut its writing side: sends fail with `pipe`. */
  shut_wr: boolean;
};

/** An accepted TCP connection. */
export type ConnEntry = EntryCommon & ConnStreams & { kind: "conn" };

/** Any fd table entry. */
export type FdEntry = StdioEntry | DirEntry | FileEntry | ListenerEntry | ConnEntry;

/** fd number → entry, allocating the lowest free number like POSIX. */
export class FdTable {
  readonly #entries = new Map<number, FdEntry>();
  /** Called after every change of the table (the runtime keeps a list of open files for migration checks). */
  on_change: (() => void) | undefined;
  /** Called when the guest closes a socket (by fd_close, or fd_renumber onto it); not by {@link close_all}. */
  on_socket_closed: ((entry: ListenerEntry | ConnEntry) => void) | undefined;

  /** Installs `entry` at the lowest free fd and returns that fd. */
  insert(entry: FdEntry): number {
    for (let fd = 0; fd < FDS_MAX; fd++) {
      if (!this.#entries.has(fd)) {
        this.#entries.set(fd, entry);
        this.on_change?.();
        return fd;
      }
    }
    return fail(Errno.mfile, `more than ${FDS_MAX} open fds`);
  }

  /** Installs `entry` at `fd` (restore and renumber); `fd` must be free. */
  place(fd: number, entry: FdEntry): void {
    if (!Number.isInteger(fd) || fd < 0 || fd >= FDS_MAX) throw new RangeError(`fd ${fd} out of range`);
    if (this.#entries.has(fd)) throw new Error(`fd ${fd} already in use`);
    this.#entries.set(fd, entry);
    this.on_change?.();
  }

  /** The entry at `fd`; `badf` when none. */
  get(fd: number): FdEntry {
    return this.#entries.get(fd) ?? fail(Errno.badf, `fd ${fd} is not open`);
  }

  /** The entry at `fd` if it holds every right in `rights` (else `notcapable`). */
  with_rights(fd: number, rights: bigint): FdEntry {
    const entry = this.get(fd);
    require_rights(entry, rights);
    return entry;
  }

  /** The directory at `fd` holding `rights`; `notdir` for other kinds. */
  dir(fd: number, rights: bigint): DirEntry {
    const entry = this.get(fd);
    if (entry.kind !== "dir") fail(Errno.notdir, `fd ${fd} is not a directory`);
    require_rights(entry, rights);
    return entry;
  }

  /** Removes `fd` and closes its host fd, if any. */
  close(fd: number): void {
    const entry = this.get(fd);
    this.#entries.delete(fd);
    close_entry(entry);
    if (entry.kind === "listener" || entry.kind === "conn") this.on_socket_closed?.(entry);
    this.on_change?.();
  }

  /** Moves `from` onto `to`, closing what `to` held; both must be open. */
  renumber(from: number, to: number): void {
    const entry = this.get(from);
    const replaced = this.get(to);
    if (from === to) return;
    this.#entries.delete(from);
    this.#entries.set(to, entry);
    close_entry(replaced);
    if (replaced.kind === "listener" || replaced.kind === "conn") this.on_socket_closed?.(replaced);
    this.on_change?.();
  }

  /**
   * Follows a rename: every open file or directory at or below `from` now
   * lives below `to`. Without this a capture would record the old path and
   * restore would reopen the wrong file, or none.
   */
  relocate(from: DirRef, to: DirRef & { preopen: number }): void {
    for (const entry of this.#entries.values()) {
      if (entry.kind !== "file" && entry.kind !== "dir") continue;
      const root = entry.kind === "file" ? entry.root : entry.dir.root;
      const rel = entry.kind === "file" ? entry.rel : entry.dir.rel;
      if (root !== from.root || !is_prefix(from.rel, rel)) continue;
      const moved = [...to.rel, ...rel.slice(from.rel.length)];
      entry.preopen = to.preopen;
      if (entry.kind === "file") {
        entry.root = to.root;
        entry.rel = moved;
        entry.host_path = join(to.root, ...moved);
      } else {
        entry.dir = { root: to.root, rel: moved };
        entry.listing = undefined;
      }
    }
    this.on_change?.();
  }

  /** Open fds in ascending order. */
  list(): Array<[number, FdEntry]> {
    return [...this.#entries.entries()].sort((a, b) => a[0] - b[0]);
  }

  /** Closes every host fd and empties the table. */
  close_all(): void {
    for (const entry of this.#entries.values()) close_entry(entry);
    this.#entries.clear();
  }
}

/** Throws `notcapable` unless `entry` holds every right in `rights`. */
export function require_rights(entry: FdEntry, rights: bigint): void {
  if ((entry.rights_base & rights) !== rights) fail(Errno.notcapable, "fd lacks the rights for this call");
}

function is_prefix(prefix: readonly string[], path: readonly string[]): boolean {
  return prefix.length <= path.length && prefix.every((name, i) => path[i] === name);
}

function close_entry(entry: FdEntry): void {
  if (entry.kind !== "file") return;
  try {
    closeSync(entry.host_fd);
  } catch {
    // The guest gave up the fd; a failing close (EIO on NFS) must not keep
    // the number allocated, and POSIX says the fd is gone either way.
  }
}
