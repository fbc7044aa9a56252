/**
 * Images on disk: signed always, encrypted on request. Written in large
 * vectored writes (an image is mostly 4 KiB page views) to a temporary name
 * and renamed, so a crash never leaves a half-written image under the
 * requested name; read in chunks through the streaming decoder (and opener),
 * so the file is never held twice.
 */
import type { KeyObject } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { ImageError, ImageErrorCodes } from "../errors.js";
import {
  EnvelopeOpener,
  ImageDecoder,
  encodeImage,
  isEnvelope,
  sealImage,
  type DecodedImage,
  type EnvelopeKeys,
  type ImageSigner,
  type ImageTrust,
  type ProcessImage,
} from "../image/mod.js";

/** Bytes gathered before one vectored write: few syscalls, bounded memory. */
const WRITE_BATCH_BYTES = 4 * 1024 * 1024;

/** writev takes at most IOV_MAX buffers. */
const WRITE_BATCH_PARTS_MAX = 1024;

/** Bytes read per read(2): large enough to cost few syscalls, small next to an image. */
const READ_CHUNK_BYTES = 4 * 1024 * 1024;

/** How an image is written. */
export interface WriteImageOptions {
  /** Signs it (every image is signed). */
  signer: ImageSigner;
  /** Encrypts it at rest with this AES-256 key (a secret KeyObject). */
  encrypt?: KeyObject;
}

/** How an image is read. */
export interface ReadImageOptions {
  /** The keys it may be signed by. */
  trust: ImageTrust;
  /** The keys an encrypted image may be opened with; without, an encrypted image is ERR_IMAGE_DECRYPT. */
  keys?: EnvelopeKeys;
}

/** Writes an image to `file` atomically; returns its size in bytes. */
export function writeImageFile(file: string, image: ProcessImage, options: WriteImageOptions): number {
  const encoded = encodeImage(image, { signer: options.signer });
  const chunks = options.encrypt === undefined ? encoded : sealImage(encoded, options.encrypt);
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
    for (const chunk of chunks) {
      batch.push(chunk);
      batch_bytes += chunk.length;
      total += chunk.length;
      if (batch_bytes >= WRITE_BATCH_BYTES || batch.length >= WRITE_BATCH_PARTS_MAX) flush();
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

/**
 * Reads and checks an image file, plain or encrypted (told apart by their
 * magic). Throws an ImageError if any check fails: for an encrypted image
 * whose ciphertext was changed, ERR_IMAGE_DECRYPT, whatever the decoder made
 * of the garbage it decrypted to.
 */
export function readImageFile(file: string, options: ReadImageOptions): DecodedImage {
  // Each chunk is a fresh buffer that is never reused, so pages may stay views of it.
  const decoder = new ImageDecoder({ trust: options.trust, copy_pages: false });
  const fd = fs.openSync(file, "r");
  try {
    const first = readChunk(fd);
    if (first === null || !isEnvelope(first)) {
      for (let chunk = first; chunk !== null; chunk = readChunk(fd)) decoder.push(chunk);
      return decoder.end();
    }
    const keys = options.keys;
    if (keys === undefined) throw new ImageError(ImageErrorCodes.decrypt, "encrypted image: no key to open it with was given");
    const opener = new EnvelopeOpener(keys);
    // The tag is checked only at the end; a decode failure before it waits
    // for the tag's verdict, which wins, so a changed ciphertext always reads
    // as ERR_IMAGE_DECRYPT.
    let decode_error: unknown;
    const feed = (pieces: Uint8Array[]): void => {
      if (decode_error !== undefined) return;
      try {
        for (const piece of pieces) decoder.push(piece);
      } catch (err: unknown) {
        decode_error = err;
      }
    };
    for (let chunk: Uint8Array | null = first; chunk !== null; chunk = readChunk(fd)) feed(opener.push(chunk));
    feed(opener.end());
    if (decode_error !== undefined) throw decode_error;
    return decoder.end();
  } finally {
    fs.closeSync(fd);
  }
}

function readChunk(fd: number): Uint8Array | null {
  const buffer = Buffer.allocUnsafeSlow(READ_CHUNK_BYTES);
  const n = fs.readSync(fd, buffer, 0, buffer.length, null);
  return n === 0 ? null : buffer.subarray(0, n);
}
