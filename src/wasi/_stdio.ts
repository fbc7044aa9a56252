/**
 * What each kind of standard stream looks like to the guest: its preview1
 * file type and rights. wasi-libc's `isatty()` is true for a character device
 * without the seek and tell rights, so only a terminal is given none; a file
 * or a device such as /dev/null may report its position (see fd_io.ts).
 */
import type { StdioKinds, StreamKind } from "./deps.js";
import { Filetype, RIGHTS_STDIO, Rights } from "./_layout.js";

/** A process started with no say on its streams: three pipes. */
export const STDIO_DEFAULT: StdioKinds = ["pipe", "pipe", "pipe"];

/** The preview1 file type of a stream of this kind. */
export function stdio_filetype(kind: StreamKind): number {
  switch (kind) {
    case "terminal":
    case "device":
      return Filetype.character_device;
    case "file":
      return Filetype.regular_file;
    case "pipe":
      return Filetype.socket_stream;
  }
}

/** The rights a stream of this kind starts with. */
export function stdio_rights(kind: StreamKind): bigint {
  return kind === "file" || kind === "device" ? RIGHTS_STDIO | Rights.fd_seek | Rights.fd_tell : RIGHTS_STDIO;
}
