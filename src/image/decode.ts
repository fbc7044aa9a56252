/**
 * Image decoder: push-based, so bytes can be fed as they arrive from a socket
 * or file in chunks of any size. Every length is checked against its limit
 * before anything is allocated from it, every section's CRC is checked before
 * its payload is parsed, the signature is checked against a SHA-256 of every
 * byte before it (computed as the bytes pass), and nothing is returned until
 * the END section's whole-image checksum has passed.
 */
import { createHash, type Hash } from "node:crypto";
import { ImageError, ImageErrorCodes } from "../errors.js";
import { ImageAssembler, checksumError, type PayloadMode } from "./_assemble.js";
import { malformed } from "./_bytes.js";
import { crc32 } from "./_crc.js";
import { ImageDigest } from "./_frame.js";
import type { AsyncHash } from "./_hash_pool.js";
import { parseSignature, unsignedError, verifySignature, type ImageTrust, type SignatureRecord } from "./_signature.js";
import {
  HEADER_BYTES,
  PAGE_BYTES,
  IMAGE_MAGIC,
  IMAGE_VERSION,
  IMAGE_VERSION_UNSIGNED,
  RUN_HEADER_BYTES,
  SECTION_CRC_BYTES,
  SECTION_HEADER_BYTES,
  SectionKind,
  kindName,
} from "./format.js";
import type { DecodedImage } from "./types.js";

/** Options of {@link ImageDecoder}. */
export interface ImageDecoderOptions {
  /**
   * The keys this reader trusts, by key id. An image that is unsigned, signed
   * by a key this answers undefined for, or changed since it was signed is
   * ERR_IMAGE_SIGNATURE: checked when the SIGNATURE section (the last before
   * END) is complete, so never after the image was returned.
   */
  trust: ImageTrust;
  /** The module the caller will run; an image of any other module is ERR_IMAGE_MODULE_MISMATCH, detected before any page arrives. */
  module_sha256?: Uint8Array;
  /**
   * Default true. When false, page data lying wholly inside one pushed chunk is
   * kept as a view of that chunk instead of copied; only safe if the caller
   * never modifies or reuses a chunk after pushing it.
   */
  copy_pages?: boolean;
  /**
   * Streams page data out as it arrives, before its section's CRC is known:
   * each piece with its byte offset in memory (always inside the memory size
   * the image declared). The decoder then keeps no page data at all (the
   * result's memory has no pages), and the receiver must throw away
   * everything written if the decode fails — for a migration's destination,
   * writing into a process that has not run yet, that is the whole point:
   * pages go in place once, with no copy in between. Those bytes are not
   * verified yet either: nothing may run on them before `end()` returns.
   *
   * It may return where the piece now lies, a view of the same bytes in a
   * SharedArrayBuffer: with `sha256`, that view is hashed in place instead
   * of the piece being copied for the hashing thread. It must not change
   * until the decode is done; a later write over it (overlapping runs) can
   * only make the digest differ, and the image is refused either way.
   */
  write_pages?: (byte_offset: number, piece: Uint8Array) => unknown;
  /**
   * Computes the SHA-256 the signature is checked against somewhere else
   * than on the pushing thread (offThreadSha256: a hashing thread), so the
   * thread reading the socket only computes CRCs. The signature is then
   * verified by {@link ImageDecoder.finish}, the only way to get the image:
   * `end()` refuses to return it.
   */
  sha256?: AsyncHash;
}

type Phase = "header" | "section_header" | "payload" | "run_header" | "run_data" | "skip" | "section_crc" | "done";

/**
 * Streaming decoder. Feed bytes with `push` (chunks may split the image
 * anywhere), then call `end`. The first problem it can detect throws an
 * ImageError, and every later `push`/`end` rethrows it.
 */
export class ImageDecoder {
  readonly #copy_pages: boolean;
  readonly #write_pages: ((byte_offset: number, piece: Uint8Array) => unknown) | undefined;
  /** The view write_pages returned for the piece just streamed, hashed in its place. */
  #landed: Uint8Array | undefined;
  readonly #trust: ImageTrust;
  /** SHA-256 of every byte before the SIGNATURE section; null from the moment that section begins. */
  #sha: Hash | AsyncHash | null;
  /** With options.sha256: the hash to drop if the decode fails before its digest was asked for. */
  readonly #async_sha: AsyncHash | undefined;
  /** The digest the signature must cover, set when the SIGNATURE section begins (a promise of it with options.sha256). */
  #signed_digest: Uint8Array | Promise<Uint8Array> | undefined;
  /** With options.sha256: the parsed signature, verified by finish(). */
  #signature: SignatureRecord | undefined;
  /** Streaming: whether the current run's header places it inside memory (else its bytes are not written). */
  #run_fits = false;
  #phase: Phase = "header";
  #failure: ImageError | undefined;
  #ended = false;
  #offset = 0; // bytes consumed so far, for messages

  // Fixed-size structure being collected: file header, section header, run header or CRC.
  readonly #fixed = new Uint8Array(HEADER_BYTES);
  readonly #fixed_view = new DataView(this.#fixed.buffer);
  #fixed_fill = 0;
  #fixed_need = HEADER_BYTES;

  // The section being read.
  #kind = 0;
  #length = 0;
  #crc = 0;
  #payload: Uint8Array = new Uint8Array(0);
  #payload_fill = 0;
  #skip_bytes = 0;
  #run_first = 0;
  #run_count = 0;

  // What the sections so far add up to, and what they mean.
  readonly #digest = new ImageDigest();
  readonly #assembler: ImageAssembler;
  #result: DecodedImage | undefined;

  constructor(options: ImageDecoderOptions) {
    if (typeof options.trust !== "function") throw new TypeError("ImageDecoder needs a trust function: which keys may sign the images it accepts");
    if (options.module_sha256 !== undefined && options.module_sha256.length !== 32) {
      throw new RangeError(`module_sha256 must be 32 bytes, got ${options.module_sha256.length}`);
    }
    this.#assembler = new ImageAssembler(options.module_sha256);
    this.#copy_pages = options.copy_pages ?? true;
    this.#write_pages = options.write_pages;
    this.#trust = options.trust;
    this.#async_sha = options.sha256;
    this.#sha = options.sha256 ?? createHash("sha256");
  }

  /**
   * The memory size the image declares, bytes, once its MEMORY section was
   * read (always before any page: a `write_pages` target can be sized once
   * instead of growing); undefined before.
   */
  get memory_size_bytes(): number | undefined {
    return this.#assembler.memory_bytes;
  }

  /** Feeds the next bytes of the image. The chunk is not modified; with copy_pages: false it may be retained. */
  push(chunk: Uint8Array): void {
    if (this.#ended) throw new Error("ImageDecoder.push() called after end()");
    if (this.#failure !== undefined) throw this.#failure;
    try {
      this.#consume(chunk);
    } catch (error) {
      if (error instanceof ImageError) this.#failure = error;
      this.#dropHash();
      throw error;
    }
  }

  #dropHash(): void {
    if (this.#async_sha !== undefined && this.#sha !== null) this.#async_sha.drop();
    this.#sha = null;
  }

  /** Declares the input complete; returns the image if it was whole, else throws (ERR_IMAGE_TRUNCATED if it stopped early). */
  end(): DecodedImage {
    if (this.#async_sha !== undefined) throw new Error("ImageDecoder with a sha256 option: call finish(), which checks the signature, not end()");
    return this.#complete();
  }

  /**
   * Like end(), and the way to end a decoder given options.sha256: waits for
   * the digest, verifies the signature over it (ERR_IMAGE_SIGNATURE), and
   * only then returns the image.
   */
  async finish(): Promise<DecodedImage> {
    const image = this.#complete();
    if (this.#async_sha === undefined) return image;
    try {
      const digest = await (this.#signed_digest as Promise<Uint8Array>);
      verifySignature(this.#signature as SignatureRecord, digest, this.#trust);
    } catch (error) {
      // The hashing thread failing is no proof of anything either: the image is refused.
      this.#failure = error instanceof ImageError ? error : new ImageError(ImageErrorCodes.signature, "image signature: the digest to check it against could not be computed; the image is refused", { cause: error });
      throw this.#failure;
    }
    return image;
  }

  #complete(): DecodedImage {
    if (this.#failure !== undefined) throw this.#failure;
    this.#ended = true;
    if (this.#result === undefined) {
      this.#dropHash();
      this.#failure = new ImageError(
        ImageErrorCodes.truncated,
        `image truncated: input ended after ${this.#offset} bytes, ${this.#where()}; the transfer was cut short, fetch the image again`,
      );
      throw this.#failure;
    }
    return this.#result;
  }

  #where(): string {
    if (this.#phase === "header") return "inside the file header";
    if (this.#phase === "section_header") return this.#fixed_fill > 0 ? "inside a section header" : "between sections, before END";
    return `inside the ${kindName(this.#kind)} section`;
  }

  #consume(chunk: Uint8Array): void {
    let pos = 0;
    while (pos < chunk.length) {
      const start = pos;
      const phase = this.#phase;
      switch (phase) {
        case "header":
          pos = this.#fill(chunk, pos);
          this.#checkFileHeader();
          if (this.#fixed_fill === HEADER_BYTES) {
            this.#digest.addHeader(this.#fixed.slice(0, HEADER_BYTES));
            this.#expect("section_header", SECTION_HEADER_BYTES);
          }
          break;
        case "section_header":
          pos = this.#fill(chunk, pos);
          if (this.#fixed_fill === SECTION_HEADER_BYTES) this.#beginSection();
          break;
        case "payload": {
          const n = Math.min(this.#length - this.#payload_fill, chunk.length - pos);
          const piece = chunk.subarray(pos, pos + n);
          this.#payload.set(piece, this.#payload_fill);
          this.#crc = crc32(piece, this.#crc);
          this.#payload_fill += n;
          pos += n;
          if (this.#payload_fill === this.#length) this.#expect("section_crc", SECTION_CRC_BYTES);
          break;
        }
        case "run_header":
          pos = this.#fill(chunk, pos);
          if (this.#fixed_fill === RUN_HEADER_BYTES) {
            this.#crc = crc32(this.#fixed.subarray(0, RUN_HEADER_BYTES), this.#crc);
            // Checked against the section length only after the CRC, so corruption reads as a checksum error.
            this.#run_first = this.#fixed_view.getUint32(0, true);
            this.#run_count = this.#fixed_view.getUint32(4, true);
            this.#payload_fill = 0;
            this.#phase = "run_data";
          }
          break;
        case "run_data":
          pos = this.#runData(chunk, pos);
          break;
        case "skip": {
          const n = Math.min(this.#skip_bytes, chunk.length - pos);
          this.#crc = crc32(chunk.subarray(pos, pos + n), this.#crc);
          this.#skip_bytes -= n;
          pos += n;
          if (this.#skip_bytes === 0) this.#expect("section_crc", SECTION_CRC_BYTES);
          break;
        }
        case "section_crc":
          pos = this.#fill(chunk, pos);
          if (this.#fixed_fill === SECTION_CRC_BYTES) this.#endSection();
          break;
        case "done":
          throw malformed(`${chunk.length - pos} bytes follow the END section at offset ${this.#offset}`);
      }
      // A section header is digested once its kind is known (#beginSection):
      // the SIGNATURE section's own header is not part of what it signs.
      if (phase === "section_header") {
        // digested in #beginSection
      } else if (this.#landed !== undefined) {
        this.#sha?.update(this.#landed);
        this.#landed = undefined;
      } else this.#sha?.update(chunk.subarray(start, pos));
      this.#offset += pos - start;
    }
  }

  #streamRun(chunk: Uint8Array, pos: number, data_bytes: number, write: (byte_offset: number, piece: Uint8Array) => unknown): number {
    // The run header is not checked yet (its CRC comes at the end): write
    // only inside the declared memory; the end of the section decides.
    if (this.#payload_fill === 0) this.#run_fits = this.#assembler.runFits(this.#run_first, data_bytes / PAGE_BYTES);
    const n = Math.min(data_bytes - this.#payload_fill, chunk.length - pos);
    const piece = chunk.subarray(pos, pos + n);
    if (this.#run_fits) {
      const landed = write(this.#run_first * PAGE_BYTES + this.#payload_fill, piece);
      // Only an off-thread hash gains from it (no copy); the local one hashes the piece it has.
      if (this.#async_sha !== undefined && landed instanceof Uint8Array && landed.length === n && landed.buffer instanceof SharedArrayBuffer) this.#landed = landed;
    }
    this.#crc = crc32(piece, this.#crc);
    this.#payload_fill += n;
    if (this.#payload_fill === data_bytes) this.#expect("section_crc", SECTION_CRC_BYTES);
    return pos + n;
  }

  #fill(chunk: Uint8Array, pos: number): number {
    const n = Math.min(this.#fixed_need - this.#fixed_fill, chunk.length - pos);
    this.#fixed.set(chunk.subarray(pos, pos + n), this.#fixed_fill);
    this.#fixed_fill += n;
    return pos + n;
  }

  #expect(phase: Phase, bytes: number): void {
    this.#phase = phase;
    this.#fixed_fill = 0;
    this.#fixed_need = bytes;
  }

  // Checked as bytes arrive, so a foreign file fails on its first wrong byte.
  #checkFileHeader(): void {
    const fill = this.#fixed_fill;
    for (let i = 0; i < Math.min(fill, IMAGE_MAGIC.length); i++) {
      if (this.#fixed[i] !== IMAGE_MAGIC[i]) {
        throw new ImageError(ImageErrorCodes.magic, `not a Ferry process image: byte ${i} of the magic is wrong`);
      }
    }
    if (fill >= 12) {
      const version = this.#fixed_view.getUint32(8, true);
      if (version === IMAGE_VERSION_UNSIGNED) throw unsignedError(`a format version ${version} image (written before images were signed)`);
      if (version !== IMAGE_VERSION) {
        throw new ImageError(
          ImageErrorCodes.version,
          `image format version ${version}; this build reads only version ${IMAGE_VERSION}: use a matching Ferry release`,
        );
      }
    }
    if (fill === HEADER_BYTES && this.#fixed_view.getUint32(12, true) !== 0) {
      throw malformed("the file header's reserved field is not zero");
    }
  }

  #beginSection(): void {
    const view = this.#fixed_view;
    const at = this.#digest.image_bytes; // this section's offset: every byte before it is in a finished section
    if (crc32(this.#fixed.subarray(0, 12)) !== view.getUint32(12, true)) {
      throw checksumError(`section header at offset ${at}`);
    }
    const kind = view.getUint16(0, true);
    const flags = view.getUint16(2, true);
    // Exact below 2^53; above, it only needs to compare greater than every limit.
    const length = view.getUint32(8, true) * 2 ** 32 + view.getUint32(4, true);
    this.#kind = kind;
    this.#length = length;
    this.#crc = crc32(this.#fixed.subarray(0, SECTION_HEADER_BYTES));
    const mode: PayloadMode = this.#assembler.begin({ kind, flags, length_bytes: length }, at);
    if (kind === SectionKind.signature && this.#sha !== null) {
      this.#signed_digest = this.#sha.digest();
      // Not rejected unobserved if the decode fails before finish() awaits it.
      if (this.#signed_digest instanceof Promise) this.#signed_digest.catch(() => undefined);
      this.#sha = null;
    }
    this.#sha?.update(this.#fixed.subarray(0, SECTION_HEADER_BYTES));
    switch (mode) {
      case "pages":
        this.#expect("run_header", RUN_HEADER_BYTES);
        return;
      case "skip":
        this.#skip_bytes = length;
        this.#phase = "skip";
        break;
      case "buffer":
        // Allocation is safe now: `length` passed its header CRC and its limit.
        this.#payload = new Uint8Array(length);
        this.#payload_fill = 0;
        this.#phase = "payload";
        break;
    }
    if (length === 0) this.#expect("section_crc", SECTION_CRC_BYTES);
  }

  #runData(chunk: Uint8Array, pos: number): number {
    const data_bytes = this.#length - RUN_HEADER_BYTES;
    if (this.#write_pages !== undefined) return this.#streamRun(chunk, pos, data_bytes, this.#write_pages);
    if (this.#payload_fill === 0 && !this.#copy_pages && chunk.length - pos >= data_bytes) {
      // The whole run is inside this chunk: keep a view, the caller promised not to reuse chunks.
      this.#payload = chunk.subarray(pos, pos + data_bytes);
      this.#crc = crc32(this.#payload, this.#crc);
      this.#payload_fill = data_bytes;
      this.#expect("section_crc", SECTION_CRC_BYTES);
      return pos + data_bytes;
    }
    // Bounded by the verified section length and the memory's remaining pages (see #beginSection).
    if (this.#payload_fill === 0) this.#payload = new Uint8Array(data_bytes);
    const n = Math.min(data_bytes - this.#payload_fill, chunk.length - pos);
    const piece = chunk.subarray(pos, pos + n);
    this.#payload.set(piece, this.#payload_fill);
    this.#crc = crc32(piece, this.#crc);
    this.#payload_fill += n;
    if (this.#payload_fill === data_bytes) this.#expect("section_crc", SECTION_CRC_BYTES);
    return pos + n;
  }

  #endSection(): void {
    const stored = this.#fixed_view.getUint32(0, true);
    if (stored !== this.#crc) {
      throw checksumError(`${kindName(this.#kind)} section at offset ${this.#digest.image_bytes}`);
    }
    const payload = this.#payload;
    this.#payload = new Uint8Array(0); // not retained past its section
    if (this.#kind === SectionKind.end) {
      this.#result = this.#assembler.finish(payload, this.#digest);
      this.#phase = "done";
      return;
    }
    if (this.#kind === SectionKind.signature) {
      // begin() let the section through only once, so the digest is set.
      const record = parseSignature(payload);
      if (this.#async_sha !== undefined) this.#signature = record; // finish() verifies it once the digest is back
      else verifySignature(record, this.#signed_digest as Uint8Array, this.#trust);
    }
    const streamed = this.#kind === SectionKind.pages && this.#write_pages !== undefined;
    this.#assembler.accept(this.#kind, payload, { first: this.#run_first, count: this.#run_count, streamed_bytes: streamed ? this.#payload_fill : undefined });
    this.#digest.addSection(this.#crc, this.#length);
    this.#expect("section_header", SECTION_HEADER_BYTES);
  }
}

/**
 * Decodes a whole image held in one buffer. Page data are views into `bytes`
 * (no copy), so `bytes` must not be modified while the result is in use.
 * Only an image signed by a key `trust` knows is returned (else
 * ERR_IMAGE_SIGNATURE); with `module_sha256`, an image of another module is
 * ERR_IMAGE_MODULE_MISMATCH.
 */
export function decodeImage(bytes: Uint8Array, options: { trust: ImageTrust; module_sha256?: Uint8Array }): DecodedImage {
  const decoder = new ImageDecoder({ trust: options.trust, module_sha256: options.module_sha256, copy_pages: false });
  decoder.push(bytes);
  return decoder.end();
}
