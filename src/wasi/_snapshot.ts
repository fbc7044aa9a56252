/**
 * fd table entries ⇄ their captured form ({@link FdState}).
 *
 * Restore reopens each file by path, inside the sandbox of its preopen, with
 * the access it had and without CREAT/EXCL/TRUNC (creating or truncating on
 * restore would silently turn a missing or replaced file into an empty one).
 * The preopens are the ones the resuming side granted, and the recorded path
 * below one goes through the same resolver as a guest's path: an image can
 * name only what the guest itself could reach, never a host path.
 */

import { fstatSync, type BigIntStats } from "node:fs";
import { posix } from "node:path";

import { RestoreError } from "../errors.js";
import type { Preopen } from "./deps.js";
import { Errno, ErrnoError, errno_name } from "./errno.js";
import { OFlags } from "./_layout.js";
import type { FdEntry, FileEntry } from "./fd_table.js";
import { resolve, type RealRoots } from "./_path.js";
import { open_file } from "./path_open.js";
import { rel_components, type FdState } from "./state.js";

/** The captured form of the entry at `fd`. */
export function capture_fd(fd: number, entry: FdEntry, preopens: readonly Preopen[]): FdState {
  const common = {
    fd,
    fdflags: entry.fdflags,
    rights_base: entry.rights_base.toString(),
    rights_inheriting: entry.rights_inheriting.toString(),
  };
  if (entry.kind === "stdio") return { ...common, kind: "stdio", stream: entry.stream, as: entry.as };
  if (entry.kind === "listener") return { ...common, kind: "listener", listener: entry.listener, address: entry.address, accepted: entry.accepted };
  if (entry.kind === "conn") {
    const { listener, seq, received, sent, shut_rd, shut_wr } = entry;
    return { ...common, kind: "conn", listener, seq, received, sent, shut_rd, shut_wr };
  }
  const rel = entry.kind === "file" ? entry.rel : entry.dir.rel;
  const guest_root = preopens[entry.preopen]?.guest_path ?? "";
  const location = {
    preopen: entry.preopen,
    rel_path: rel.join("/"),
    host_path: entry.kind === "file" ? entry.host_path : posix.join(entry.dir.root, ...rel),
    guest_path: posix.join(guest_root, ...rel),
  };
  if (entry.kind === "dir") return { ...common, ...location, kind: "dir", is_preopen: entry.is_preopen };
  return {
    ...common,
    ...location,
    kind: "file",
    read: entry.read,
    write: entry.write,
    oflags: entry.oflags,
    offset: entry.offset.toString(),
    detached: is_detached(entry),
  };
}

/**
 * Reopens a captured fd below `preopens` (host paths already checked to be
 * directories). Throws RestoreError ERR_RESTORE_FILE naming the file if it is
 * missing, of another kind, or cannot be opened.
 */
export function restore_fd(state: FdState, preopens: readonly Preopen[], real_roots: RealRoots): FdEntry {
  const rights = { fdflags: state.fdflags, rights_base: BigInt(state.rights_base), rights_inheriting: BigInt(state.rights_inheriting) };
  if (state.kind === "stdio") return { ...rights, kind: "stdio", stream: state.stream, as: state.as };
  // Sockets hold nothing on this host: the relay takes up their streams at the recorded offsets.
  if (state.kind === "listener") return { ...rights, kind: "listener", listener: state.listener, address: state.address, accepted: state.accepted };
  if (state.kind === "conn") {
    const { listener, seq, received, sent, shut_rd, shut_wr } = state;
    return { ...rights, kind: "conn", listener, seq, received, sent, shut_rd, shut_wr };
  }
  const preopen = preopens[state.preopen];
  if (preopen === undefined) throw new RestoreError("ERR_RESTORE_STATE", `fd ${state.fd} names preopen ${state.preopen}, which does not exist`);
  // host_path is the image's word for where the file was; it says nothing of where it is opened now.
  const where = `fd ${state.fd} (${state.guest_path}, recorded at host ${state.host_path})`;
  if (state.kind === "file" && state.detached) {
    throw new RestoreError("ERR_RESTORE_FILE", `cannot reopen ${where}: it was deleted or replaced while open`);
  }
  try {
    const rel = rel_components(state.rel_path);
    const target = resolve({ root: preopen.host_path, rel: [] }, rel.length === 0 ? "." : rel.join("/"), { follow: true });
    if (target.stat === undefined) throw new Error("no such file or directory");
    if (state.kind === "dir") {
      if (!target.stat.isDirectory()) throw new Error("not a directory any more");
      return { ...rights, kind: "dir", preopen: state.preopen, dir: { root: target.root, rel: target.rel }, is_preopen: state.is_preopen };
    }
    const oflags = state.oflags & ~(OFlags.creat | OFlags.excl | OFlags.trunc);
    const entry = open_file(target, { read: state.read, write: state.write, oflags, fdflags: state.fdflags }, state.preopen, real_roots);
    return { ...entry, ...rights, offset: BigInt(state.offset) };
  } catch (error) {
    const inside = `directory ${preopen.guest_path} (granted as ${preopen.host_path})`;
    throw new RestoreError("ERR_RESTORE_FILE", `cannot reopen ${where} inside ${inside}: ${describe(error)}`, { cause: error });
  }
}

/**
 * True when the file's path, walked again inside its preopen, no longer
 * names the file open at its host fd (deleted, replaced, or the way to it
 * now leads out of the sandbox).
 */
function is_detached(entry: FileEntry): boolean {
  let by_path: BigIntStats | undefined;
  try {
    by_path = resolve({ root: entry.root, rel: [] }, entry.rel.join("/"), { follow: false }).stat;
  } catch (error) {
    // An errno (noent, notdir, notcapable...): the path leads nowhere now, or
    // out, so restore could not reopen it there either.
    if (error instanceof ErrnoError) return true;
    throw error;
  }
  const by_fd = fstatSync(entry.host_fd, { bigint: true });
  return by_path === undefined || by_path.ino !== by_fd.ino || by_path.dev !== by_fd.dev;
}

function describe(error: unknown): string {
  if (error instanceof ErrnoError) {
    if (error.errno === Errno.notcapable) return `the path leads outside that directory (${error.message})`;
    return `${errno_name(error.errno)}: ${error.message}`;
  }
  if (error instanceof Error) return error.message;
  return String(error);
}
