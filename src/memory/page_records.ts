/**
 * Sealed records of post-copy's page channel (docs/cluster.md, "Sealed
 * records"): on a node with TLS, the page channel's frames travel over a
 * plain TCP connection inside records sealed with AES-256-GCM, under keys
 * the destination made for that one connection and handed over the mutual
 * TLS connection that opened it. The destination's side is native
 * (native/page_seal.c); this is the source's opener, and its sealer where
 * the native addon is not built (native_seal.ts seals the same records
 * natively). A codec: bytes in, bytes out, no I/O.
 *
 * A record, byte by byte:
 *   0   u32 LE  length: bytes of plaintext, 1 to RECORD_BYTES_MAX
 *   4   length bytes of ciphertext
 *   4+length    16-byte GCM tag
 * Nonce (12 bytes): u32 LE direction (1: to the destination, 2: to the
 * source), u64 LE record number on this connection and in this direction,
 * from 0. Additional data: the 4 length bytes. A record holds whole frames.
 */
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from "node:crypto";
import { FerryError } from "../errors.js";
import { nativeAddon, type NativeAddon } from "../native.js";

/** Bytes of a record's length field. */
export const RECORD_HEAD_BYTES = 4;
/** Bytes of a record's authentication tag. */
export const RECORD_TAG_BYTES = 16;
/** Bytes of a key (AES-256). */
export const RECORD_KEY_BYTES = 32;
/**
 * Plaintext bytes of one record at most: a PAGES frame of 16 chunks (1 MiB
 * + 16) with room for small frames beside it. Checked from the length field
 * alone, before anything is buffered, on both sides.
 */
export const RECORD_BYTES_MAX = 1048576 + 4096;
/** Bytes of a GCM nonce. */
const NONCE_BYTES = 12;
/**
 * Records sealed under one key at most: the record number must fit a
 * double exactly. At one record per byte that is 9 PB; a connection gets
 * fresh keys long before.
 */
const RECORDS_MAX = Number.MAX_SAFE_INTEGER;

/** Which way a record goes: the nonce's first four bytes. */
export const RecordDirection = { to_destination: 1, to_source: 2 } as const;
/** A direction of the page channel. */
export type RecordDirection = (typeof RecordDirection)[keyof typeof RecordDirection];

/** The two keys of one page-channel connection, fresh for each connection. */
export interface PageChannelKeys {
  /** Seals records from the source to the destination (pages). */
  to_destination: Uint8Array;
  /** Seals records from the destination to the source (HELLO, REQ, DONE, ABORT). */
  to_source: Uint8Array;
}

/** The nonce of record number `seq` going `direction`. */
export function recordNonce(direction: RecordDirection, seq: number): Buffer {
  const n = Buffer.alloc(NONCE_BYTES);
  n.writeUInt32LE(direction, 0);
  n.writeUInt32LE(seq % 2 ** 32, 4);
  n.writeUInt32LE(Math.floor(seq / 2 ** 32), 8);
  return n;
}

function keyOf(key: Uint8Array): KeyObject {
  if (key.length !== RECORD_KEY_BYTES) throw new RangeError(`a page-channel key has ${RECORD_KEY_BYTES} bytes, not ${key.length}`);
  return createSecretKey(key);
}

/** Seals one direction's records, numbering them from 0. */
export class RecordSealer {
  readonly #key: KeyObject;
  readonly #direction: RecordDirection;
  #seq = 0;

  constructor(key: Uint8Array, direction: RecordDirection) {
    this.#key = keyOf(key);
    this.#direction = direction;
  }

  /** Records sealed so far: the next one's number. */
  get sealed(): number {
    return this.#seq;
  }

  /**
   * Seals `parts` (whole frames, 1 to RECORD_BYTES_MAX bytes in all) as one
   * record: its length field, the ciphertext (one piece per part) and the
   * tag, to be written in that order.
   */
  seal(parts: readonly Uint8Array[]): Buffer[] {
    const length = parts.reduce((n, p) => n + p.length, 0);
    if (length < 1 || length > RECORD_BYTES_MAX) throw new RangeError(`a record holds 1 to ${RECORD_BYTES_MAX} bytes, not ${length}`);
    if (this.#seq >= RECORDS_MAX) throw new RangeError("record numbers exhausted: the connection needs new keys");
    const head = Buffer.alloc(RECORD_HEAD_BYTES);
    head.writeUInt32LE(length, 0);
    const cipher = createCipheriv("aes-256-gcm", this.#key, recordNonce(this.#direction, this.#seq), { authTagLength: RECORD_TAG_BYTES });
    // Spent before anything can fail past here: a number is never used twice.
    this.#seq += 1;
    cipher.setAAD(head);
    const out = [head];
    for (const p of parts) out.push(cipher.update(p));
    const last = cipher.final();
    if (last.length > 0) out.push(last);
    out.push(cipher.getAuthTag());
    return out;
  }
}

/** Opens one direction's records as their bytes arrive, in order, each checked before any of it is returned. */
export class RecordOpener {
  readonly #key: KeyObject;
  readonly #direction: RecordDirection;
  #seq = 0;
  #input: Buffer[] = [];
  #input_bytes = 0;
  /** The current record's length field, once read. */
  #head: Buffer | null = null;
  #broken: FerryError | null = null;

  /** Opens records with the native addon's opener where it is built (`native`), in place, to the same plaintext. */
  readonly #native: { addon: NativeAddon; handle: unknown } | null = null;

  constructor(key: Uint8Array, direction: RecordDirection, options: { native?: boolean } = {}) {
    this.#key = keyOf(key);
    this.#direction = direction;
    if (options.native === true) {
      const n = nativeAddon();
      if ("addon" in n && n.addon.openerCreate !== undefined) this.#native = { addon: n.addon, handle: n.addon.openerCreate(key, direction) };
    }
  }

  /** Wipes a native opener's key schedule (a JavaScript one has none of its own to wipe); opening after throws. */
  close(): void {
    if (this.#native !== null) this.#native.addon.openerFree?.(this.#native.handle);
    this.#broken ??= new FerryError("ERR_PAGE_RECORD_AUTH", "the record opener is closed");
  }

  /** Records opened so far. */
  get opened(): number {
    return this.#seq;
  }

  /**
   * Takes the next bytes from the wire; returns the plaintext of every
   * record they complete. Throws ERR_PAGE_RECORD_LIMIT for a length out of
   * bounds and ERR_PAGE_RECORD_AUTH for a record that is not authentic
   * (tampered, replayed, reordered, or under another key); after either,
   * every later call throws the same.
   */
  push(data: Uint8Array): Buffer[] {
    if (this.#broken !== null) throw this.#broken;
    if (data.length > 0) {
      this.#input.push(Buffer.from(data.buffer, data.byteOffset, data.length));
      this.#input_bytes += data.length;
    }
    const out: Buffer[] = [];
    for (;;) {
      if (this.#head === null) {
        if (this.#input_bytes < RECORD_HEAD_BYTES) return out;
        const head = this.#take(RECORD_HEAD_BYTES);
        const length = head.readUInt32LE(0);
        if (length < 1 || length > RECORD_BYTES_MAX) {
          throw this.#break(new FerryError("ERR_PAGE_RECORD_LIMIT", `a page-channel record says it holds ${length} bytes; at most ${RECORD_BYTES_MAX} are allowed`));
        }
        this.#head = head;
      }
      const length = this.#head.readUInt32LE(0);
      if (this.#input_bytes < length + RECORD_TAG_BYTES) return out;
      const body = this.#take(length + RECORD_TAG_BYTES);
      out.push(this.#open(this.#head, body.subarray(0, length), body.subarray(length)));
      this.#head = null;
    }
  }

  #open(head: Buffer, ciphertext: Buffer, tag: Buffer): Buffer {
    if (this.#native !== null) {
      // In place: the bytes are this opener's own (taken from the input), and none is returned unless authentic.
      const { addon, handle } = this.#native;
      (addon.openerBegin as (h: unknown, head: Uint8Array) => void)(handle, head);
      (addon.openerUpdate as (h: unknown, i: Uint8Array, o: Uint8Array) => void)(handle, ciphertext, ciphertext);
      if (!(addon.openerFinish as (h: unknown, tag: Uint8Array) => boolean)(handle, tag)) {
        throw this.#break(new FerryError("ERR_PAGE_RECORD_AUTH", `page-channel record ${this.#seq} is not authentic (tampered, replayed, or under another key): the connection is dropped`));
      }
      this.#seq += 1;
      return ciphertext;
    }
    const decipher = createDecipheriv("aes-256-gcm", this.#key, recordNonce(this.#direction, this.#seq), { authTagLength: RECORD_TAG_BYTES });
    decipher.setAAD(head);
    decipher.setAuthTag(tag);
    const plain = decipher.update(ciphertext);
    try {
      decipher.final();
    } catch (err: unknown) {
      // Nothing of it is returned: its plaintext is dropped unread.
      throw this.#break(new FerryError("ERR_PAGE_RECORD_AUTH", `page-channel record ${this.#seq} is not authentic (tampered, replayed, or under another key): the connection is dropped`, { cause: err }));
    }
    this.#seq += 1;
    return plain;
  }

  #break(err: FerryError): FerryError {
    this.#broken = err;
    this.#input = [];
    this.#input_bytes = 0;
    return err;
  }

  /** The first `n` buffered bytes (n <= #input_bytes), copied only when they span pieces. */
  #take(n: number): Buffer {
    const first = this.#input[0] as Buffer;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.#input.shift();
      else this.#input[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const piece = this.#input[0] as Buffer;
        const used = Math.min(piece.length, n - at);
        piece.copy(out, at, 0, used);
        at += used;
        if (used === piece.length) this.#input.shift();
        else this.#input[0] = piece.subarray(used);
      }
    }
    this.#input_bytes -= n;
    return out;
  }
}
