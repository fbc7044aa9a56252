/**
 * Reading a module from a path a user or an image names: only a regular file
 * of bounded size, so `/dev/zero`, a FIFO or a huge file is refused with a
 * typed error instead of growing memory until the process is killed, or
 * blocking forever.
 */
import fs from "node:fs";
import { ModuleFileError } from "../errors.js";

/**
 * Largest module read: the same bound the node's module store puts on an
 * upload. Real programs are kilobytes to tens of megabytes.
 */
export const MODULE_BYTES_MAX = 256 * 1024 * 1024;

/** Smallest read once the size seen is read: a file still growing is followed in steps of this. */
const READ_MIN_BYTES = 64 * 1024;

/**
 * The bytes of the module at `file`. Throws ModuleFileError
 * (ERR_MODULE_NOT_FILE, ERR_MODULE_TOO_LARGE), or the system error of a file
 * that cannot be opened (ENOENT...) for the caller to word.
 */
export function readModuleFile(file: string, bytes_max: number = MODULE_BYTES_MAX): Uint8Array {
  // Non-blocking: opening a FIFO for reading would otherwise wait for a writer.
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) {
      throw new ModuleFileError("ERR_MODULE_NOT_FILE", `module ${file} is not a regular file (a device, a FIFO or a directory cannot be a module)`);
    }
    if (stat.size > bytes_max) {
      throw new ModuleFileError("ERR_MODULE_TOO_LARGE", `module ${file} is ${stat.size} bytes; the limit is ${bytes_max}`);
    }
    // Read to the end, not to the size seen: a file that grows past the limit while read is refused too.
    const parts: Buffer[] = [];
    let total = 0;
    for (;;) {
      const part = Buffer.allocUnsafe(Math.max(Math.min(stat.size - total, bytes_max - total) + 1, READ_MIN_BYTES));
      const n = fs.readSync(fd, part, 0, part.length, null);
      if (n === 0) break;
      total += n;
      if (total > bytes_max) throw new ModuleFileError("ERR_MODULE_TOO_LARGE", `module ${file} grew past the limit of ${bytes_max} bytes while it was read`);
      parts.push(part.subarray(0, n));
    }
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
  } finally {
    fs.closeSync(fd);
  }
}
