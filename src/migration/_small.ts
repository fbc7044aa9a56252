/**
 * Small moves (issue 15, "setup"; docs/cluster.md, "Small moves"). A
 * process of a few MiB moves mostly in setup, not in bytes: every extra
 * connection, round trip or hop to another thread costs more than moving
 * its pages. So a stop-copy of a small memory carries its pages inside the
 * signed image, on the data connection, as before BULK existed: no sealed
 * connection to open and wait for, no BULK stream; and both sides hash the
 * image on their own thread rather than hand it to a hashing thread. The
 * pages are covered by the image's CRCs and by its signature, as any
 * image's are.
 */

/**
 * Largest memory (bytes, the whole linear memory) whose stop-copy carries
 * its pages inside the image, hashed inline. Hashing costs about 1 ms per
 * MiB on each side here (SHA-256 and CRC-32), so at 2 MiB that is a couple
 * of ms, about what the sealed connection's setup and its extra waits cost;
 * above it, sealing (about 0.3 ms per MiB, no hash) wins.
 */
export const SMALL_MEMORY_BYTES_MAX = 2 * 1024 * 1024;

/** Whether a memory of `bytes` moves as a small one (see the file's comment), up to `bytes_max`. */
export function isSmallMemory(bytes: number, bytes_max: number = SMALL_MEMORY_BYTES_MAX): boolean {
  return bytes <= bytes_max;
}
