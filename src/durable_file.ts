/**
 * One way to replace a small state file so that a crash never leaves it half
 * written: the node's process table and load state (src/node/node_state.ts),
 * the embedded directory's file (src/directory/embedded.ts), a home's
 * checkpoint records and a keeper's chains (src/node/_checkpoint_*.ts) use it.
 * The synchronous form holds the event loop for the syncs (tens of
 * milliseconds on a disk busy with other writes); the asynchronous one does
 * them on libuv's pool, for a file written often on a busy path.
 */
import fs from "node:fs";
import path from "node:path";

/**
 * Writes `data` to `file` atomically and durably: a temporary file written
 * and synced, renamed over the old one, and the directory synced, so a crash
 * leaves the old file or the new one, never a mix. The directory is made
 * (0700) if missing; the file is 0600.
 */
export function replaceFileDurably(file: string, data: string | Uint8Array): void {
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const temp = `${file}.tmp`;
  const fd = fs.openSync(temp, "w", 0o600);
  try {
    const bytes = typeof data === "string" ? Buffer.from(data) : data;
    for (let at = 0; at < bytes.length; ) at += fs.writeSync(fd, bytes, at, bytes.length - at);
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

/**
 * {@link replaceFileDurably} with the writes and syncs off the event loop.
 * Callers must not replace the same file twice at once (they share its
 * temporary file): one writer per file, or a lock.
 */
export async function replaceFileDurablyAsync(file: string, data: string | Uint8Array): Promise<void> {
  const dir = path.dirname(file);
  await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
  const temp = `${file}.tmp`;
  const fh = await fs.promises.open(temp, "w", 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.promises.rename(temp, file);
  const d = await fs.promises.open(dir, "r");
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}
