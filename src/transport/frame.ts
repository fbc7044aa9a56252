/**
 * Frame codec of Ferry's data protocol. No I/O: bytes in, frames out.
 *
 * A frame on the wire, byte by byte:
 *
 * | offset | size | field                                             |
 * |--------|------|---------------------------------------------------|
 * | 0      | 4    | length, u32 little-endian: bytes that follow (≥ 1) |
 * | 4      | 1    | type, u8: meaning is the caller's (migration layer) |
 * | 5      | n    | payload, length − 1 bytes                          |
 *
 * The length is checked against a limit as soon as its 4 bytes are in, so a
 * hostile or corrupted length costs nothing: no allocation, no waiting for
 * bytes that will never be accepted.
 */
import { TransportError, TransportErrorCodes } from "../errors.js";

/** Bytes of the length field. */
const LENGTH_BYTES = 4;

/** Bytes before a frame's payload: length u32 and type u8. */
export const FRAME_HEADER_BYTES = LENGTH_BYTES + 1;

/**
 * Largest length field accepted (type byte plus payload): 1 MiB + 64 bytes.
 * The largest frame the migration layer sends is one batch of 256 pages of
 * 4 KiB (the image's PAGE_BYTES) plus a few headers; bounding frames there
 * bounds what one frame can make a receiver allocate, and keeps one frame
 * small next to the send high-water mark.
 */
export const FRAME_BYTES_MAX = 1024 * 1024 + 64;

/** Largest frame type: the type is one byte. */
const FRAME_TYPE_MAX = 0xff;

/** One decoded frame. */
export interface Frame {
  /** The type byte, 0..255. */
  type: number;
  /** The payload; a view of a pushed chunk when it lay inside one, else a copy. */
  payload: Uint8Array;
}

/**
 * Encodes one frame as the header followed by the payload parts, without
 * copying the payload: hand the parts to a stream with `cork`/`uncork` (or
 * `writev`). Throws ERR_FRAME_TOO_LARGE if the peer would reject the frame,
 * so a sender finds out before anything is written; a type outside 0..255 is
 * a programmer error (RangeError).
 */
export function encodeFrame(type: number, payload: Uint8Array | readonly Uint8Array[]): Uint8Array[] {
  if (!Number.isInteger(type) || type < 0 || type > FRAME_TYPE_MAX) {
    throw new RangeError(`frame type must be an integer in 0..${FRAME_TYPE_MAX}, got ${type}`);
  }
  const parts = payload instanceof Uint8Array ? [payload] : payload;
  let payload_bytes = 0;
  for (const part of parts) payload_bytes += part.length;
  const length_bytes = 1 + payload_bytes;
  if (length_bytes > FRAME_BYTES_MAX) {
    throw new TransportError(
      TransportErrorCodes.frameTooLarge,
      `frame of ${length_bytes} bytes exceeds FRAME_BYTES_MAX (${FRAME_BYTES_MAX}); split the payload into smaller frames`,
    );
  }
  // From Node's slab pool: a 5-byte allocation per frame should not cost a page.
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  header.writeUInt32LE(length_bytes, 0);
  header.writeUInt8(type, LENGTH_BYTES);
  const out: Uint8Array[] = [header];
  for (const part of parts) if (part.length > 0) out.push(part);
  return out;
}

/** Options of {@link FrameParser}. */
export interface FrameParserOptions {
  /** Largest length field accepted; default and ceiling FRAME_BYTES_MAX. Lower it for a peer that only sends small frames. */
  frame_bytes_max?: number;
  /**
   * Frame types whose payload is a byte stream that may be cut anywhere (a
   * migration's IMAGE frames): one that spans chunks is handed on as
   * several frames of the same type, each a view of a chunk, instead of
   * being copied together first.
   */
  splittable_types?: readonly number[];
}

/**
 * Push parser: feed chunks as they arrive (split anywhere), get back the
 * frames they complete. The first bad header throws a TransportError
 * (ERR_FRAME_TOO_LARGE or ERR_FRAME_MALFORMED) and every later push rethrows
 * it: after a bad length nothing on the stream can be trusted to be aligned,
 * so frames completed earlier in the failing chunk are not returned either.
 */
export class FrameParser {
  readonly #frame_bytes_max: number;
  #failure: TransportError | undefined;

  // Header being collected; may span chunks.
  readonly #header = Buffer.alloc(FRAME_HEADER_BYTES);
  #header_fill = 0;

  // The frame whose header is complete: its payload size, and the copy being
  // filled once the payload turns out to span chunks (allocated only after
  // the length passed its check, and only when a view is impossible).
  #type = 0;
  /** The current frame's type is splittable: its payload goes out in views as it comes. */
  #split = false;
  readonly #splittable: ReadonlySet<number>;
  #payload_bytes: number | undefined;
  #payload: Uint8Array | undefined;
  #payload_fill = 0;

  constructor(options: FrameParserOptions = {}) {
    const max = options.frame_bytes_max ?? FRAME_BYTES_MAX;
    if (!Number.isInteger(max) || max < 1 || max > FRAME_BYTES_MAX) {
      throw new RangeError(`frame_bytes_max must be an integer in 1..${FRAME_BYTES_MAX}, got ${max}`);
    }
    this.#frame_bytes_max = max;
    this.#splittable = new Set(options.splittable_types ?? []);
  }

  /** Bytes of an incomplete frame held so far; 0 exactly at a frame boundary. */
  get partial_bytes(): number {
    return this.#payload_bytes === undefined ? this.#header_fill : FRAME_HEADER_BYTES + this.#payload_fill;
  }

  /**
   * Feeds the next chunk and returns the frames it completes, in order. The
   * chunk is not modified, but payloads may be views of it, so the caller
   * must not reuse it afterwards (stream chunks are never reused).
   */
  push(chunk: Uint8Array): Frame[] {
    if (this.#failure !== undefined) throw this.#failure;
    const frames: Frame[] = [];
    let at = 0;
    while (at < chunk.length) {
      const payload_bytes = this.#payload_bytes;
      if (payload_bytes !== undefined) {
        const available = chunk.length - at;
        if (this.#payload === undefined && this.#payload_fill === 0 && available >= payload_bytes) {
          // The whole payload is in this chunk: a view, no copy.
          this.#emit(frames, chunk.subarray(at, at + payload_bytes));
          at += payload_bytes;
          continue;
        }
        if (this.#split) {
          // A piece now, as a frame of its own: a view, no copy.
          const take = Math.min(payload_bytes - this.#payload_fill, available);
          const piece = chunk.subarray(at, at + take);
          this.#payload_fill += take;
          at += take;
          if (this.#payload_fill === payload_bytes) this.#emit(frames, piece);
          else frames.push({ type: this.#type, payload: piece });
          continue;
        }
        // Unzeroed (every byte is written before the frame is emitted; zeroing 1 MiB per frame costs as much as the copy),
        // and not from the shared pool, so a frame never holds a slab others use.
        this.#payload ??= Buffer.allocUnsafeSlow(payload_bytes);
        const take = Math.min(payload_bytes - this.#payload_fill, available);
        this.#payload.set(chunk.subarray(at, at + take), this.#payload_fill);
        this.#payload_fill += take;
        at += take;
        if (this.#payload_fill === payload_bytes) this.#emit(frames, this.#payload);
        continue;
      }
      // Collecting the header. Check the length the moment its 4 bytes are in,
      // before waiting for the type byte.
      const had = this.#header_fill;
      const take = Math.min(FRAME_HEADER_BYTES - had, chunk.length - at);
      this.#header.set(chunk.subarray(at, at + take), had);
      this.#header_fill += take;
      at += take;
      if (had < LENGTH_BYTES && this.#header_fill >= LENGTH_BYTES) this.#checkLength(this.#header.readUInt32LE(0));
      if (this.#header_fill < FRAME_HEADER_BYTES) continue;
      this.#header_fill = 0;
      this.#type = this.#header.readUInt8(LENGTH_BYTES);
      this.#split = this.#splittable.has(this.#type);
      this.#payload_bytes = this.#header.readUInt32LE(0) - 1;
      // An empty payload completes here; the loop would not run again at a chunk's end.
      if (this.#payload_bytes === 0) this.#emit(frames, chunk.subarray(at, at));
    }
    return frames;
  }

  #emit(frames: Frame[], payload: Uint8Array): void {
    frames.push({ type: this.#type, payload });
    this.#payload_bytes = undefined;
    this.#payload = undefined;
    this.#payload_fill = 0;
  }

  #checkLength(length_bytes: number): void {
    if (length_bytes > this.#frame_bytes_max) {
      this.#failure = new TransportError(
        TransportErrorCodes.frameTooLarge,
        `peer announced a frame of ${length_bytes} bytes, above the limit of ${this.#frame_bytes_max}; the peer is broken or not speaking Ferry's data protocol`,
      );
    } else if (length_bytes === 0) {
      this.#failure = new TransportError(
        TransportErrorCodes.frameMalformed,
        "peer sent a frame of length 0 (every frame has at least its type byte); the stream is corrupt",
      );
    }
    if (this.#failure !== undefined) throw this.#failure;
  }
}
