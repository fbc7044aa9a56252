/**
 * Optional compression of pre-copy's pages on slow links (issue 15, item 7;
 * docs/cluster.md, "A migration", step 2). A PAGES frame's pages may travel as one
 * LZ4 block instead (frame PAGES_LZ4), compressed on libuv's thread pool
 * (lz4-napi), so the socket's thread does not pay for it. Whether a migration
 * compresses is chosen from the rate the destination confirmed pages at:
 * where the link is slower than LZ4, fewer bytes win; on a fast link (such as
 * loopback) compressing would only add work, so it stays off unless asked.
 *
 * PAGES_LZ4 payload (little-endian), beside PAGES (`_wire.ts`):
 *
 * | offset | bytes | field |
 * |---|---|---|
 * | 0 | 4 | `count`: pages, 1 to PAGES_PER_FRAME_MAX |
 * | 4 | 4 × count | page indexes |
 * | 4 + 4 × count | 4 | `raw_bytes`: must be exactly count × 4096, checked before anything is decompressed |
 * | 8 + 4 × count | rest | one LZ4 block of the pages, in index order |
 *
 * The receiver rebuilds the PAGES payload (count, indexes, pages) and treats
 * it exactly as a PAGES frame: the digest the signed image vouches for is
 * over the uncompressed payload, so a compressed round changes nothing the
 * image signs.
 */
import { compress, uncompressSync } from "lz4-napi";
import { FerryError } from "../errors.js";

/** How a migration compresses its rounds' pages: by the measured rate (`auto`, the default), always, or never. */
export const COMPRESSIONS = ["auto", "lz4", "off"] as const;
/** One of {@link COMPRESSIONS}. */
export type Compression = (typeof COMPRESSIONS)[number];

/**
 * Below this confirmed rate, `auto` compresses: LZ4 compresses at several
 * hundred MB/s on one core here and decompresses faster, so a link slower
 * than about a third of that gains from any page that shrinks; a faster one
 * would wait on the codec instead.
 */
export const COMPRESS_BELOW_BYTES_PER_S = 100_000_000;

/** Bytes of one page, as `_wire.ts` sends them. */
const PAGE_BYTES = 4096;

/** Whether a round's pages go compressed, from the mode and the confirmed rate (null: not measured yet). */
export function compressRound(mode: Compression, link_bytes_per_s: number | null): boolean {
  if (mode === "lz4") return true;
  if (mode === "off" || link_bytes_per_s === null) return false;
  return link_bytes_per_s < COMPRESS_BELOW_BYTES_PER_S;
}

/**
 * The PAGES_LZ4 payload of a PAGES payload (`count`, indexes, pages), or null
 * when its pages do not shrink (the caller then sends it as PAGES).
 */
export async function compressPagesPayload(payload: Uint8Array): Promise<Uint8Array | null> {
  const count = new DataView(payload.buffer, payload.byteOffset, payload.length).getUint32(0, true);
  const head_bytes = 4 + 4 * count;
  const raw = payload.subarray(head_bytes);
  // lz4-napi writes the raw size as a u32 little-endian prefix of its block: that is `raw_bytes`.
  const block = await compress(Buffer.from(raw.buffer, raw.byteOffset, raw.length));
  if (head_bytes + block.length >= payload.length) return null;
  const out = Buffer.allocUnsafe(head_bytes + block.length);
  out.set(payload.subarray(0, head_bytes), 0);
  out.set(block, head_bytes);
  return out;
}

/**
 * The PAGES payload a PAGES_LZ4 payload stands for. Checks the count and the
 * announced size against `pages_max` before decompressing, so a frame cannot
 * make this side allocate more than one frame's worth; a block that does not
 * decompress to exactly that size is refused (ERR_MIGRATION_PROTOCOL).
 */
export function decompressPagesPayload(payload: Uint8Array, pages_max: number): Uint8Array {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.length);
  if (payload.length < 8) throw protocolError("short PAGES_LZ4 frame");
  const count = view.getUint32(0, true);
  const head_bytes = 4 + 4 * count;
  if (count === 0 || count > pages_max || payload.length < head_bytes + 4) throw protocolError(`PAGES_LZ4 frame of ${payload.length} bytes cannot hold ${count} pages`);
  const raw_bytes = view.getUint32(head_bytes, true);
  if (raw_bytes !== count * PAGE_BYTES) throw protocolError(`PAGES_LZ4 frame announces ${raw_bytes} bytes for ${count} pages`);
  let raw: Buffer;
  try {
    raw = uncompressSync(Buffer.from(payload.buffer, payload.byteOffset + head_bytes, payload.length - head_bytes));
  } catch (err: unknown) {
    throw protocolError("PAGES_LZ4 frame: the LZ4 block is damaged", err);
  }
  if (raw.length !== raw_bytes) throw protocolError(`PAGES_LZ4 frame decompressed to ${raw.length} bytes, not ${raw_bytes}`);
  const out = Buffer.allocUnsafe(head_bytes + raw_bytes);
  out.set(payload.subarray(0, head_bytes), 0);
  out.set(raw, head_bytes);
  return out;
}

function protocolError(message: string, cause?: unknown): FerryError {
  return new FerryError("ERR_MIGRATION_PROTOCOL", message, cause === undefined ? undefined : { cause });
}
