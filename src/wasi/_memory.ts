/**
 * Bounds-checked access to the guest's linear memory.
 *
 * Every pointer comes from the guest, so every access is checked and a bad
 * one fails the call with `fault` instead of throwing a JS RangeError into
 * the runtime. The memory may be shared (its buffer a SharedArrayBuffer) and
 * may grow, possibly from another thread, so the views are re-made whenever
 * `memory.buffer` is another object or has another length.
 */

import { Errno, fail } from "./errno.js";
import { Iovec } from "./_layout.js";
import { PATH_BYTES_MAX } from "./_path.js";

const utf8_decoder = new TextDecoder("utf-8", { fatal: false });
const utf8_strict_decoder = new TextDecoder("utf-8", { fatal: true });
const utf8_encoder = new TextEncoder();

/** Largest iovec count accepted (IOV_MAX on Linux); more is `inval`. */
export const IOVS_MAX = 1024;

/** One guest buffer: pointer and length, already bounds-checked. */
export type GuestSlice = { ptr: number; len: number };

/** The guest's memory, seen through views that follow growth. */
export class GuestMemory {
  #memory: WebAssembly.Memory | undefined;
  #buffer: ArrayBufferLike | undefined;
  #byte_length = 0;
  #u8: Uint8Array<ArrayBufferLike> = new Uint8Array(0);
  #view: DataView<ArrayBufferLike> = new DataView(new ArrayBuffer(0));

  /** Attaches the instance's memory; calls made before this see `fault`. */
  bind(memory: WebAssembly.Memory): void {
    this.#memory = memory;
    this.#buffer = undefined;
    this.refresh();
  }

  /** Re-creates the views if the memory grew or its buffer was replaced. */
  refresh(): void {
    const memory = this.#memory;
    if (memory === undefined) return;
    const buffer = memory.buffer;
    if (buffer === this.#buffer && buffer.byteLength === this.#byte_length) return;
    this.#buffer = buffer;
    this.#byte_length = buffer.byteLength;
    this.#u8 = new Uint8Array(buffer);
    this.#view = new DataView(buffer);
  }

  /** Throws `fault` unless [ptr, ptr+len) lies inside memory. */
  check(ptr: number, len: number): void {
    if (!Number.isInteger(ptr) || !Number.isInteger(len) || ptr < 0 || len < 0) fail(Errno.fault);
    if (ptr + len <= this.#byte_length) return;
    // Another thread may have grown a shared memory since this call began.
    this.refresh();
    if (ptr + len > this.#byte_length) fail(Errno.fault, `guest range ${ptr}+${len} outside memory of ${this.#byte_length} bytes`);
  }

  /** Reads a u8. */
  u8(ptr: number): number {
    this.check(ptr, 1);
    return this.#view.getUint8(ptr);
  }

  /** Reads a u16. */
  u16(ptr: number): number {
    this.check(ptr, 2);
    return this.#view.getUint16(ptr, true);
  }

  /** Reads a u32. */
  u32(ptr: number): number {
    this.check(ptr, 4);
    return this.#view.getUint32(ptr, true);
  }

  /** Reads a u64. */
  u64(ptr: number): bigint {
    this.check(ptr, 8);
    return this.#view.getBigUint64(ptr, true);
  }

  /** Writes a u8. */
  set_u8(ptr: number, value: number): void {
    this.check(ptr, 1);
    this.#view.setUint8(ptr, value);
  }

  /** Writes a u16. */
  set_u16(ptr: number, value: number): void {
    this.check(ptr, 2);
    this.#view.setUint16(ptr, value, true);
  }

  /** Writes a u32. */
  set_u32(ptr: number, value: number): void {
    this.check(ptr, 4);
    this.#view.setUint32(ptr, value, true);
  }

  /** Writes a u64 (wrapped to 64 bits). */
  set_u64(ptr: number, value: bigint): void {
    this.check(ptr, 8);
    this.#view.setBigUint64(ptr, BigInt.asUintN(64, value), true);
  }

  /** A live view of guest bytes (not a copy): valid until the next refresh. */
  view(ptr: number, len: number): Uint8Array<ArrayBufferLike> {
    this.check(ptr, len);
    return this.#u8.subarray(ptr, ptr + len);
  }

  /** A private copy of guest bytes, safe to keep and to hand to APIs that refuse shared buffers. */
  copy(ptr: number, len: number): Uint8Array {
    this.check(ptr, len);
    return this.#u8.slice(ptr, ptr + len);
  }

  /** Copies `bytes` into guest memory at `ptr`. */
  write(ptr: number, bytes: Uint8Array): void {
    this.check(ptr, bytes.length);
    this.#u8.set(bytes, ptr);
  }

  /** Fills guest bytes with zero. */
  zero(ptr: number, len: number): void {
    this.check(ptr, len);
    this.#u8.fill(0, ptr, ptr + len);
  }

  /** Decodes guest UTF-8 (invalid sequences become U+FFFD). */
  string(ptr: number, len: number): string {
    return utf8_decoder.decode(this.copy(ptr, len));
  }

  /**
   * Decodes a guest path: longer than {@link PATH_BYTES_MAX} is `nametoolong`,
   * invalid UTF-8 is `ilseq` (a replacement character would silently name
   * another file).
   */
  path(ptr: number, len: number): string {
    if (len > PATH_BYTES_MAX) fail(Errno.nametoolong);
    try {
      return utf8_strict_decoder.decode(this.copy(ptr, len));
    } catch (error) {
      if (error instanceof TypeError) fail(Errno.ilseq, "path is not UTF-8");
      throw error;
    }
  }

  /**
   * Reads an iovec array and checks every buffer it names, so a later
   * partial transfer cannot fault half-way.
   */
  iovecs(ptr: number, count: number): GuestSlice[] {
    if (count > IOVS_MAX) fail(Errno.inval, `${count} iovecs exceed ${IOVS_MAX}`);
    this.check(ptr, count * Iovec.size);
    const slices: GuestSlice[] = [];
    for (let i = 0; i < count; i++) {
      const base = ptr + i * Iovec.size;
      const slice = { ptr: this.u32(base + Iovec.buf), len: this.u32(base + Iovec.buf_len) };
      this.check(slice.ptr, slice.len);
      slices.push(slice);
    }
    return slices;
  }

  /** Gathers the bytes of `slices` into one private copy. */
  gather(slices: readonly GuestSlice[]): Uint8Array {
    const total = slices.reduce((sum, s) => sum + s.len, 0);
    const out = new Uint8Array(total);
    let at = 0;
    for (const s of slices) {
      out.set(this.view(s.ptr, s.len), at);
      at += s.len;
    }
    return out;
  }

  /** Scatters `bytes` over `slices` in order; returns how many bytes were placed. */
  scatter(slices: readonly GuestSlice[], bytes: Uint8Array): number {
    let at = 0;
    for (const s of slices) {
      if (at >= bytes.length) break;
      const n = Math.min(s.len, bytes.length - at);
      this.write(s.ptr, bytes.subarray(at, at + n));
      at += n;
    }
    return at;
  }
}

/** UTF-8 bytes of a string. */
export function utf8(text: string): Uint8Array {
  return utf8_encoder.encode(text);
}

/** A guest i32 argument as the unsigned u32 it stands for. */
export function u32_arg(value: number): number {
  return value >>> 0;
}
