/**
 * Little-endian field writer and reader for section payloads. The reader turns
 * every overrun or bad field into an ImageError, so parsing untrusted bytes
 * can only fail with a typed error.
 */
import { ImageError, ImageErrorCodes } from "../errors.js";

const encoder = new TextEncoder();
// fatal: invalid UTF-8 is an error, not U+FFFD; ignoreBOM: keep a leading
// U+FEFF as a character so strings round-trip exactly.
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * UTF-8 bytes of a string that must round-trip exactly. Lone surrogates would
 * silently become U+FFFD, so they are rejected as a programming error.
 */
export function utf8Strict(text: string, what: string): Uint8Array {
  const bytes = encoder.encode(text);
  if (decoder.decode(bytes) !== text) {
    throw new RangeError(`${what} is not well-formed Unicode (lone surrogate); it cannot be stored as UTF-8`);
  }
  return bytes;
}

/** Fixed-size little-endian writer over a freshly allocated buffer. */
export class Writer {
  readonly bytes: Uint8Array;
  readonly #view: DataView;
  #pos = 0;

  constructor(size_bytes: number) {
    this.bytes = new Uint8Array(size_bytes);
    this.#view = new DataView(this.bytes.buffer);
  }

  u8(value: number): void {
    this.#view.setUint8(this.#pos, value);
    this.#pos += 1;
  }

  u16(value: number): void {
    this.#view.setUint16(this.#pos, value, true);
    this.#pos += 2;
  }

  u32(value: number): void {
    this.#view.setUint32(this.#pos, value, true);
    this.#pos += 4;
  }

  /** Accepts a number (a safe integer) or a bigint below 2^64. */
  u64(value: number | bigint): void {
    this.#view.setBigUint64(this.#pos, BigInt(value), true);
    this.#pos += 8;
  }

  raw(data: Uint8Array): void {
    this.bytes.set(data, this.#pos);
    this.#pos += data.length;
  }

  /** Asserts the precomputed size was exact: a mismatch is a bug in this file's callers. */
  done(): Uint8Array {
    if (this.#pos !== this.bytes.length) {
      throw new Error(`image writer: wrote ${this.#pos} of ${this.bytes.length} bytes (encoder bug)`);
    }
    return this.bytes;
  }
}

/** Bounds-checked little-endian reader over one verified section payload. */
export class Reader {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  readonly #what: string;
  #pos = 0;

  /** `what` names the section in error messages. */
  constructor(bytes: Uint8Array, what: string) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#what = what;
  }

  /** Bytes not yet read. */
  get remaining(): number {
    return this.#bytes.length - this.#pos;
  }

  #take(n: number, field: string): number {
    if (n > this.remaining) {
      throw malformed(`${this.#what} section ends inside ${field} (needs ${n} bytes, ${this.remaining} left)`);
    }
    const at = this.#pos;
    this.#pos += n;
    return at;
  }

  u8(field: string): number {
    return this.#view.getUint8(this.#take(1, field));
  }

  u16(field: string): number {
    return this.#view.getUint16(this.#take(2, field), true);
  }

  u32(field: string): number {
    return this.#view.getUint32(this.#take(4, field), true);
  }

  u64(field: string): bigint {
    return this.#view.getBigUint64(this.#take(8, field), true);
  }

  /** A u64 that must fit a JS number exactly (byte counts, sizes). */
  u64Number(field: string): number {
    const value = this.u64(field);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw malformed(`${this.#what} field ${field} is ${value}, beyond 2^53 - 1`);
    }
    return Number(value);
  }

  /** A view of the next n bytes (no copy); n must already be limit-checked by the caller. */
  bytes(n: number, field: string): Uint8Array {
    const at = this.#take(n, field);
    return this.#bytes.subarray(at, at + n);
  }

  /** A u32 length, checked against `max` (ERR_IMAGE_LIMIT), then that many bytes. */
  sized(max: number, field: string): Uint8Array {
    const n = this.u32(`${field} length`);
    if (n > max) throw limit(`${this.#what} field ${field} claims ${n} bytes; the limit is ${max}`);
    return this.bytes(n, field);
  }

  /** A u32-length-prefixed UTF-8 string. */
  string(max: number, field: string): string {
    return utf8Decode(this.sized(max, field), `${this.#what} field ${field}`);
  }

  /** Every byte must have been consumed: trailing bytes mean the writer and reader disagree. */
  end(): void {
    if (this.remaining !== 0) {
      throw malformed(`${this.#what} section has ${this.remaining} unexpected trailing bytes`);
    }
  }
}

/** Strict UTF-8 decode; invalid bytes are ERR_IMAGE_MALFORMED. */
export function utf8Decode(bytes: Uint8Array, what: string): string {
  try {
    return decoder.decode(bytes);
  } catch (cause) {
    throw malformed(`${what} is not valid UTF-8`, cause);
  }
}

/** ERR_IMAGE_MALFORMED with a message that says the image is unusable. */
export function malformed(message: string, cause?: unknown): ImageError {
  return new ImageError(ImageErrorCodes.malformed, `malformed image: ${message}`, cause === undefined ? undefined : { cause });
}

/** ERR_IMAGE_LIMIT. */
export function limit(message: string): ImageError {
  return new ImageError(ImageErrorCodes.limit, `image exceeds a limit: ${message}`);
}
