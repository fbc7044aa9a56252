/**
 * One way to replace a small state file so that a crash never leaves it half
 * written: the node's process table and load state (src/node/node_state.ts)
 * and the embedded directory's file (src/directory/embedded.ts) use it.
 */
import fs from "node:fs";
import path from "node:path";

/**
 * Writes `text` to `file` atomically and durably: a temporary file written
 * and synced, renamed over the old one, and the directory synced, so a crash
 * leaves the old file or the new one, never a mix. The directory is made
 * (0700) if missing; the file is 0600.
 */
export function replaceFileDurably(file: string, text: string): void {
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const temp = `${file}.tmp`;
  const fd = fs.openSync(temp, "w", 0o600);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, file);
  // The rename itself is durable only once the directory is.
  const d = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(d);
  } finally {
    fs.closeSync(d);
  }
}
