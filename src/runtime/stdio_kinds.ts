/**
 * What this process's own standard streams are, for a guest run in the
 * foreground (`ferry exec`) to see the same: a terminal, a regular file, a
 * pipe or socket, or another character device such as /dev/null.
 */
import { fstatSync } from "node:fs";
import { isatty } from "node:tty";
import type { StdioKinds, StreamKind } from "../wasi/mod.js";

/** The kind of host fd `fd`; a closed or unknown fd counts as a pipe (no position, not a terminal). */
export function hostStreamKind(fd: number): StreamKind {
  if (isatty(fd)) return "terminal";
  try {
    const stat = fstatSync(fd);
    if (stat.isFile()) return "file";
    if (stat.isCharacterDevice()) return "device";
  } catch {
    // Closed (EBADF): the guest gets a stream that ends at once or takes nothing, as a pipe would.
  }
  return "pipe";
}

/** The kinds of fds 0, 1 and 2 of this process. */
export function hostStdioKinds(): StdioKinds {
  return [hostStreamKind(0), hostStreamKind(1), hostStreamKind(2)];
}
