/**
 * Encryption at rest: an image sealed in an AES-256-GCM envelope with its own
 * magic (docs/image-format.md, "Encrypted envelope"). Both directions stream:
 * the sealer encrypts chunks as the encoder yields them, the opener releases
 * plaintext as ciphertext arrives and checks the tag at `end()`. Codec only:
 * no I/O; the key comes from the caller.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes, type DecipherGCM, type KeyObject } from "node:crypto";
import { ImageError, ImageErrorCodes } from "../errors.js";
import { malformed } from "./_bytes.js";

/**
 * `\x89FRENV\r\n`: like the image magic (high byte, CR LF) but different in
 * its ASCII middle, so a reader tells an envelope from a plain image by its
 * first bytes.
 */
export const ENVELOPE_MAGIC: Uint8Array = Uint8Array.of(0x89, 0x46, 0x52, 0x45, 0x4e, 0x56, 0x0d, 0x0a);

/** Version of the envelope layout this code writes and reads. */
export const ENVELOPE_VERSION = 1;

/** Envelope algorithms (u16). */
export const EnvelopeAlgorithm = {
  aes_256_gcm: 1,
} as const;

/** Bytes of the envelope header: magic, version u32, algorithm u16, reserved u16, key id (32), nonce (12). */
export const ENVELOPE_HEADER_BYTES = 60;

/** Bytes of the GCM tag after the ciphertext. */
export const ENVELOPE_TAG_BYTES = 16;

/** Bytes of an AES-256 key. */
export const ENVELOPE_KEY_BYTES = 32;

/**
 * Largest ciphertext accepted or written: an image is at most ~4.2 GiB (a
 * 4 GiB memory plus its bounded sections); GCM itself allows 64 GiB under one
 * nonce, so 8 GiB keeps far inside it and bounds what an opener reads.
 */
export const ENVELOPE_CIPHERTEXT_BYTES_MAX = 8 * 1024 * 1024 * 1024;

/** 96-bit nonces, random per envelope: safe for far more images than one key will ever seal (2^32). */
const NONCE_BYTES = 12;

/** Domain of the key id hash, so the id of a key is never a hash of the bare key. */
const KEY_ID_CONTEXT = Buffer.from("Ferry image encryption key id\0", "latin1");

/** The keys an opener may use: the one with this key id, or undefined if it is not here. */
export type EnvelopeKeys = (key_id: Uint8Array) => KeyObject | undefined;

function decryptError(message: string, cause?: unknown): ImageError {
  return new ImageError(ImageErrorCodes.decrypt, `encrypted image: ${message}`, cause === undefined ? undefined : { cause });
}

function checkKey(key: KeyObject): void {
  if (typeof key !== "object" || key === null || key.type !== "secret" || key.symmetricKeySize !== ENVELOPE_KEY_BYTES) {
    throw new TypeError(`an image encryption key is a secret KeyObject of ${ENVELOPE_KEY_BYTES} bytes`);
  }
}

/** The id an envelope names its key by: SHA-256 of a fixed context and the key. */
export function envelopeKeyId(key: KeyObject): Uint8Array {
  checkKey(key);
  return createHash("sha256").update(KEY_ID_CONTEXT).update(key.export()).digest();
}

/** Whether `bytes` (at least the first 8 of a file) start like an envelope. */
export function isEnvelope(bytes: Uint8Array): boolean {
  return bytes.length >= ENVELOPE_MAGIC.length && Buffer.from(bytes.buffer, bytes.byteOffset, ENVELOPE_MAGIC.length).equals(ENVELOPE_MAGIC);
}

/**
 * Encrypts a stream of chunks (an encoded image) with `key`: yields the
 * header, the ciphertext chunk by chunk, then the tag. The header is the
 * GCM additional data, so it cannot be changed without the tag failing.
 */
export function* sealImage(chunks: Iterable<Uint8Array>, key: KeyObject): Generator<Uint8Array, void, undefined> {
  const key_id = envelopeKeyId(key);
  const nonce = randomBytes(NONCE_BYTES);
  const header = Buffer.alloc(ENVELOPE_HEADER_BYTES);
  header.set(ENVELOPE_MAGIC, 0);
  header.writeUInt32LE(ENVELOPE_VERSION, 8);
  header.writeUInt16LE(EnvelopeAlgorithm.aes_256_gcm, 12);
  header.writeUInt16LE(0, 14);
  header.set(key_id, 16);
  header.set(nonce, 48);
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  cipher.setAAD(header);
  yield header;
  let total = 0;
  for (const chunk of chunks) {
    total += chunk.length;
    if (total > ENVELOPE_CIPHERTEXT_BYTES_MAX) {
      throw new ImageError(ImageErrorCodes.limit, `image exceeds a limit: more than ${ENVELOPE_CIPHERTEXT_BYTES_MAX} bytes to encrypt`);
    }
    const out = cipher.update(chunk);
    if (out.length > 0) yield out;
  }
  const last = cipher.final(); // empty for GCM, but the API says to take it
  if (last.length > 0) yield last;
  yield cipher.getAuthTag();
}

/**
 * Streaming opener. `push` returns plaintext as it is decrypted, not yet
 * authenticated: the caller may parse it (the image decoder checks its own
 * signature too) but must act on nothing before `end()` has checked the tag.
 * Errors are ImageErrors: ERR_IMAGE_DECRYPT for a key that is not here or a
 * tag that fails (a changed or cut ciphertext, a changed header);
 * ERR_IMAGE_MAGIC, ERR_IMAGE_VERSION, ERR_IMAGE_MALFORMED for a header that
 * is not an envelope this code reads; ERR_IMAGE_TRUNCATED for input shorter
 * than a header and a tag. The first error sticks.
 */
export class EnvelopeOpener {
  readonly #keys: EnvelopeKeys;
  readonly #header = Buffer.alloc(ENVELOPE_HEADER_BYTES);
  #header_fill = 0;
  #decipher: DecipherGCM | undefined;
  /** The last bytes seen: they may be the tag, so they are held back until more arrives or the input ends. */
  #tail: Buffer = Buffer.alloc(0);
  #ciphertext_bytes = 0;
  #failure: ImageError | undefined;
  #ended = false;

  constructor(keys: EnvelopeKeys) {
    this.#keys = keys;
  }

  /** Feeds the next bytes; returns the plaintext they complete (unauthenticated until `end()`). */
  push(chunk: Uint8Array): Uint8Array[] {
    if (this.#ended) throw new Error("EnvelopeOpener.push() called after end()");
    if (this.#failure !== undefined) throw this.#failure;
    try {
      return this.#consume(chunk);
    } catch (error: unknown) {
      if (error instanceof ImageError) this.#failure = error;
      throw error;
    }
  }

  /** Declares the input complete and checks the tag; returns the last plaintext. */
  end(): Uint8Array[] {
    if (this.#failure !== undefined) throw this.#failure;
    this.#ended = true;
    try {
      const decipher = this.#decipher;
      if (decipher === undefined || this.#tail.length < ENVELOPE_TAG_BYTES) {
        throw new ImageError(ImageErrorCodes.truncated, "image truncated: the encrypted image ends before its header and tag; fetch it again");
      }
      decipher.setAuthTag(this.#tail);
      try {
        const last = decipher.final();
        return last.length > 0 ? [last] : [];
      } catch (cause: unknown) {
        throw decryptError("the ciphertext or its header was changed, or cut short; it cannot be trusted", cause);
      }
    } catch (error: unknown) {
      if (error instanceof ImageError) this.#failure = error;
      throw error;
    }
  }

  #consume(chunk: Uint8Array): Uint8Array[] {
    let rest = chunk;
    if (this.#decipher === undefined) {
      const n = Math.min(ENVELOPE_HEADER_BYTES - this.#header_fill, rest.length);
      this.#header.set(rest.subarray(0, n), this.#header_fill);
      this.#header_fill += n;
      rest = rest.subarray(n);
      this.#checkMagic();
      if (this.#header_fill < ENVELOPE_HEADER_BYTES) return [];
      this.#decipher = this.#begin();
    }
    const decipher = this.#decipher;
    const total = this.#tail.length + rest.length;
    if (total <= ENVELOPE_TAG_BYTES) {
      this.#tail = Buffer.concat([this.#tail, rest]);
      return [];
    }
    const release = total - ENVELOPE_TAG_BYTES;
    this.#ciphertext_bytes += release;
    if (this.#ciphertext_bytes > ENVELOPE_CIPHERTEXT_BYTES_MAX) {
      throw new ImageError(ImageErrorCodes.limit, `image exceeds a limit: more than ${ENVELOPE_CIPHERTEXT_BYTES_MAX} encrypted bytes`);
    }
    const from_tail = Math.min(this.#tail.length, release);
    const out: Uint8Array[] = [];
    if (from_tail > 0) out.push(decipher.update(this.#tail.subarray(0, from_tail)));
    const from_rest = release - from_tail;
    if (from_rest > 0) out.push(decipher.update(rest.subarray(0, from_rest)));
    this.#tail = Buffer.concat([this.#tail.subarray(from_tail), rest.subarray(from_rest)]);
    return out.filter((piece) => piece.length > 0);
  }

  #checkMagic(): void {
    const n = Math.min(this.#header_fill, ENVELOPE_MAGIC.length);
    for (let i = 0; i < n; i++) {
      if (this.#header[i] !== ENVELOPE_MAGIC[i]) {
        throw new ImageError(ImageErrorCodes.magic, `not an encrypted Ferry image: byte ${i} of the magic is wrong`);
      }
    }
  }

  #begin(): DecipherGCM {
    const header = this.#header;
    const version = header.readUInt32LE(8);
    if (version !== ENVELOPE_VERSION) {
      throw new ImageError(ImageErrorCodes.version, `encrypted image envelope version ${version}; this build reads only version ${ENVELOPE_VERSION}`);
    }
    const algorithm = header.readUInt16LE(12);
    if (algorithm !== EnvelopeAlgorithm.aes_256_gcm) throw malformed(`encrypted image: unknown algorithm ${algorithm}`);
    if (header.readUInt16LE(14) !== 0) throw malformed("encrypted image: the envelope's reserved field is not zero");
    const key_id = header.subarray(16, 48);
    const key = this.#keys(key_id);
    if (key === undefined) {
      throw decryptError(`encrypted with key ${Buffer.from(key_id).toString("hex")}, which is not here: open it where it was written`);
    }
    checkKey(key);
    if (!Buffer.from(envelopeKeyId(key)).equals(key_id)) throw decryptError("the key given for this image has another key id");
    const decipher = createDecipheriv("aes-256-gcm", key, header.subarray(48, 48 + NONCE_BYTES));
    decipher.setAAD(header);
    return decipher;
  }
}
