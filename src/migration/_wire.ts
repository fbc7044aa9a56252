/**
 * Frames of the migration protocol on a data connection (docs/cluster.md):
 * control messages as JSON, pages and image bytes as binary. Everything read
 * here comes from the peer and is checked before it is used; a bad frame is a
 * FerryError (ERR_MIGRATION_PROTOCOL), never another exception.
 */
import type { Hash } from "node:crypto";
import type * as v from "valibot";
import { FerryError, isErrorCode, knownCode, PeerError } from "../errors.js";
import { FRAME_BYTES_MAX, type FramedConnection } from "../transport/mod.js";
import { parseJson, type Schema } from "../validate.js";
import { compressPagesPayload } from "./_compress.js";
import { ErrorFrameSchema } from "./_schemas.js";

/** Frame types. */
export const Msg = {
  offer: 1,
  ready: 2,
  error: 3,
  pages: 4,
  round_end: 5,
  image: 6,
  image_end: 7,
  running: 8,
  handover: 9,
  round_ack: 10,
  /** Stop-copy's pages, outside the image (`_bulk.ts`). */
  bulk: 11,
  /** Stop-copy's pages went on the sealed connection instead (`_sealed_bulk.ts`): how many records. */
  bulk_sealed: 12,
  /** PAGES with the pages as one LZ4 block (`_compress.ts`). */
  pages_lz4: 30,
} as const;

/**
 * Post-copy and hybrid, sent before the image: the session whose page channel
 * the source opens next, the memory size the pages come from, and the chunks
 * the destination does not have yet ([first, count] runs of CHUNK_BYTES).
 */
export interface Handover {
  session: string;
  remote_bytes: number;
  missing: [number, number][];
}

/** Bytes of one page on the wire. */
export const WIRE_PAGE_BYTES = 4096;

/**
 * Pre-copy's final copy of at most this many pages is hashed on the thread
 * that sends it and on the one that receives it: 8 MiB takes about 5 ms
 * there, less than handing it to a hashing thread and waiting for its
 * answer, all of it downtime. The last round's count stands for it (the
 * rounds stopped because little was left), and both sides know that count,
 * so they choose alike with nothing said between them.
 */
export const INLINE_FINAL_PAGES_MAX = 2048;

/** Payload room in one frame (the type byte is counted in the frame). */
export const FRAME_PAYLOAD_BYTES_MAX = FRAME_BYTES_MAX - 1;

/** Pages per PAGES frame: count, one u32 index per page, then the pages. */
export const PAGES_PER_FRAME_MAX = Math.floor((FRAME_PAYLOAD_BYTES_MAX - 4) / (WIRE_PAGE_BYTES + 4));

function protocolError(message: string, cause?: unknown): FerryError {
  return new FerryError("ERR_MIGRATION_PROTOCOL", message, cause === undefined ? undefined : { cause });
}

/** Sends a JSON control message. */
export function sendJson(conn: FramedConnection, type: number, value: unknown): Promise<void> {
  return conn.send(type, Buffer.from(JSON.stringify(value)));
}

/** Parses a JSON control message and checks it against its schema; throws ERR_MIGRATION_PROTOCOL naming `what`. */
export function readFrame<S extends Schema>(schema: S, payload: Uint8Array, what: string): v.InferOutput<S> {
  return parseJson(schema, payload, `${what} frame`, { code: "ERR_MIGRATION_PROTOCOL" });
}

/** Options of {@link sendPages}. */
export interface SendPagesOptions {
  /** Folds every PAGES payload into it in order, as the receiver folds what it gets (the image then vouches for them). */
  digest?: Hash;
  /** Sends each frame whose pages shrink as PAGES_LZ4 (`_compress.ts`). */
  compress?: boolean;
  /** The pages cannot change until sent (the process is stopped): a digest reads them where they are, with no copy. */
  stable?: boolean;
}

/**
 * Sends pages in as few frames as the frame limit allows; resolves with the
 * pages, the bytes sent and the bytes they stood for (more than those sent
 * when compressed). With a digest or compression, the pages are copied into
 * the frame first, because a running process may write a page between the
 * hash (or the compression) and the socket's write of a view of it.
 */
export async function sendPages(
  conn: FramedConnection,
  pages: Iterable<{ index: number; data: Uint8Array }>,
  options: SendPagesOptions = {},
): Promise<{ pages: number; bytes: number; raw_bytes: number }> {
  const { digest, compress = false, stable = false } = options;
  let batch: { index: number; data: Uint8Array }[] = [];
  let count = 0;
  let bytes = 0;
  let raw_bytes = 0;
  // With compression, the frame being compressed (on the thread pool) and the one being sent overlap: at most one of each.
  let sending: Promise<void> = Promise.resolve();
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const head_bytes = 4 + 4 * batch.length;
    const copy = (digest !== undefined && !stable) || compress;
    // Not zeroed first: every byte is written below (the count, the indices, then each page).
    const head = Buffer.allocUnsafe(copy ? head_bytes + batch.length * WIRE_PAGE_BYTES : head_bytes);
    head.writeUInt32LE(batch.length, 0);
    batch.forEach((p, i) => head.writeUInt32LE(p.index, 4 + 4 * i));
    const frame_bytes = head_bytes + batch.length * WIRE_PAGE_BYTES + 5;
    raw_bytes += frame_bytes;
    count += batch.length;
    if (!copy) {
      if (digest !== undefined) {
        // In frame order, as the receiver folds them: the head, then each page.
        digest.update(head);
        for (const p of batch) digest.update(p.data);
      }
      await conn.send(Msg.pages, [head, ...batch.map((p) => p.data)]);
      bytes += frame_bytes;
    } else {
      batch.forEach((p, i) => head.set(p.data, head_bytes + i * WIRE_PAGE_BYTES));
      // In frame order, as the receiver folds them.
      digest?.update(head);
      const packed = compress ? compressPagesPayload(head) : Promise.resolve(null);
      const previous = sending;
      sending = (async () => {
        const p = await packed;
        await previous;
        await conn.send(p === null ? Msg.pages : Msg.pages_lz4, p ?? head);
        bytes += p === null ? frame_bytes : p.length + 5;
      })();
      // Seen where it is awaited (the next frame, or the end); this only keeps it from being unhandled if the pages' source throws first.
      sending.catch(() => undefined);
      await previous;
    }
    batch = [];
  };
  for (const page of pages) {
    batch.push(page);
    if (batch.length === PAGES_PER_FRAME_MAX) await flush();
  }
  await flush();
  await sending;
  return { pages: count, bytes, raw_bytes };
}

/** Reads a PAGES frame: page indexes and views of their bytes. */
export function readPages(payload: Uint8Array): { index: number; data: Uint8Array }[] {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.length);
  if (payload.length < 4) throw protocolError("short PAGES frame");
  const count = view.getUint32(0, true);
  if (count > PAGES_PER_FRAME_MAX || payload.length !== 4 + count * (4 + WIRE_PAGE_BYTES)) {
    throw protocolError(`PAGES frame of ${payload.length} bytes does not hold ${count} pages`);
  }
  const data = 4 + 4 * count;
  const out: { index: number; data: Uint8Array }[] = [];
  for (let i = 0; i < count; i += 1) {
    out.push({ index: view.getUint32(4 + 4 * i, true), data: payload.subarray(data + i * WIRE_PAGE_BYTES, data + (i + 1) * WIRE_PAGE_BYTES) });
  }
  return out;
}

/**
 * Sends an encoded image, packing its chunks into frames; resolves with the
 * bytes sent. Stops early, without IMAGE_END, once `stop()` says so (the
 * destination has refused the image already: the rest would be wasted).
 */
export async function sendImage(conn: FramedConnection, chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>, stop: () => boolean = () => false): Promise<number> {
  let parts: Uint8Array[] = [];
  let size = 0;
  let bytes = 0;
  const flush = async (): Promise<void> => {
    if (size === 0) return;
    await conn.send(Msg.image, parts);
    bytes += size + 5;
    parts = [];
    size = 0;
  };
  for await (const chunk of chunks) {
    for (let at = 0; at < chunk.length; ) {
      const room = FRAME_PAYLOAD_BYTES_MAX - size;
      const piece = chunk.subarray(at, at + room);
      parts.push(piece);
      size += piece.length;
      at += piece.length;
      // writev-friendly: cap parts per frame too.
      if (size === FRAME_PAYLOAD_BYTES_MAX || parts.length >= 512) {
        await flush();
        if (stop()) return bytes;
      }
    }
  }
  await flush();
  if (stop()) return bytes;
  await conn.send(Msg.image_end, new Uint8Array(0));
  return bytes + 5;
}

/**
 * Throws the peer's error (a PeerError) if `frame` is an ERROR frame. A code
 * this node does not know becomes ERR_PEER, the peer's own kept in the message.
 */
export function raiseIfError(frame: { type: number; payload: Uint8Array }, peer: string): void {
  if (frame.type !== Msg.error) return;
  const e = readFrame(ErrorFrameSchema, frame.payload, "ERROR");
  const code = e.code === undefined ? "ERR_MIGRATION_REFUSED" : knownCode(e.code, "ERR_PEER");
  const unknown = e.code !== undefined && !isErrorCode(e.code) ? ` [${e.code}]` : "";
  throw new PeerError(code, `${peer}: ${e.message ?? "refused"}${unknown}`);
}
