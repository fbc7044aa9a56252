/**
 * Images on disk: written in large vectored writes (an image is mostly 4 KiB
 * page views) to a temporary name and renamed, so a crash never leaves a
 * half-written image under the requested name.
 */
import fs from "node:fs";
import path from "node:path";
import { decodeImage, encodeImage, type DecodedImage, type ProcessImage } from "../image/mod.js";

/** Bytes gathered before one vectored write: few syscalls, bounded memory. */
const WRITE_BATCH_BYTES = 4 * 1024 * 1024;

/** Writes an image to `file` atomically; returns its size in bytes. */
export function writeImageFile(file: string, image: ProcessImage): number {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  const fd = fs.openSync(tmp, "w", 0o600);
  let total = 0;
  try {
    let batch: Uint8Array[] = [];
    let batch_bytes = 0;
    const flush = (): void => {
      let parts = batch;
      while (parts.length > 0) {
        let written = fs.writevSync(fd, parts);
        // Short writes are rare but legal: drop what went out, keep the rest.
        while (parts.length > 0 && written >= (parts[0] as Uint8Array).length) {
          written -= (parts[0] as Uint8Array).length;
          parts = parts.slice(1);
        }
        if (written > 0 && parts.length > 0) parts = [(parts[0] as Uint8Array).subarray(written), ...parts.slice(1)];
      }
      batch = [];
      batch_bytes = 0;
    };
    for (const chunk of encodeImage(image)) {
      batch.push(chunk);
      batch_bytes += chunk.length;
      total += chunk.length;
      // writev takes at most IOV_MAX (1024) buffers.
      if (batch_bytes >= WRITE_BATCH_BYTES || batch.length >= 1024) flush();
    }
    flush();
    fs.fsyncSync(fd);
  } catch (err: unknown) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
  return total;
}

/** Reads and checks an image file; throws ImageError if any check fails. */
export function readImageFile(file: string): DecodedImage {
  const bytes = fs.readFileSync(file);
  return decodeImage(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
}
