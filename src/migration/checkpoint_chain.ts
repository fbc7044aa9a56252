/**
 * A chain of checkpoints as a keeper holds it (docs/checkpoints.md): a base
 * with every non-zero page, then increments with only the pages written since
 * the one before. Checking a checkpoint that arrives, rebuilding the whole
 * image at the newest one, and the retention policy. No I/O: bytes in, typed
 * values out; the node reads and writes the files.
 */
import { createHash } from "node:crypto";
import { ImageError, ImageErrorCodes } from "../errors.js";
import { ImageDecoder, sparsePages, type DecodedImage, type ImageTrust, type ProcessImage } from "../image/mod.js";
import { readPages, WIRE_PAGE_BYTES } from "./_wire.js";

/**
 * Most increments kept after a base before they are merged into a new one,
 * whatever they weigh: it bounds the files a chain holds and a restore
 * opens. A merge rebuilds the whole memory, so it must be rare next to the
 * increments: at 10 checkpoints a second, 16 meant rebuilding (say) 256 MiB
 * every 1.6 s even for a process that writes almost nothing. What a restore
 * reads is bounded by bytes instead (increments never outweigh the base).
 */
export const CHECKPOINT_INCREMENTS_MAX = 256;

/** One stored checkpoint: the PAGES frames' payloads in order, and the signed image. */
export interface StoredCheckpoint {
  pages: Iterable<Uint8Array>;
  image: Uint8Array;
}

/** What the retention policy looks at of each checkpoint of a chain, base first. */
export interface ChainEntry {
  /** Bytes it holds on disk. */
  bytes: number;
  /** Its process's memory size. */
  memory_bytes: number;
}

/**
 * The retention policy: merge the increments into a new base (and drop the
 * old files) once there are {@link CHECKPOINT_INCREMENTS_MAX} of them or they
 * weigh more than the base; rewrite a base that holds more than its memory
 * (its rounds sent pages the process wrote meanwhile twice), whether or not
 * increments followed it already. So a chain that needs no compaction holds
 * at most twice its base, a base at most its memory plus BASE_SLACK_BYTES,
 * and a restore never reads more than that.
 */
export function needsCompaction(chain: readonly ChainEntry[]): boolean {
  const base = chain[0];
  if (base === undefined) return false;
  const increments = chain.slice(1);
  // The image's own sections and the frames' heads: a base within this of its memory is as small as it gets.
  // Rewritten even once increments follow it: else an oversized base would let them pile up to its size.
  if (base.bytes > base.memory_bytes + BASE_SLACK_BYTES) return true;
  return increments.length >= CHECKPOINT_INCREMENTS_MAX || increments.reduce((n, e) => n + e.bytes, 0) > base.bytes;
}

/** What a base may hold beyond its memory before it is rewritten: its state and framing, never a page twice. */
const BASE_SLACK_BYTES = 1024 * 1024;

/** How much a rebuild does between two looks at the event loop: some milliseconds of copying and hashing. */
const REBUILD_SLICE_BYTES = 8 * 1024 * 1024;

/** What a keeper saw of a checkpoint's PAGES frames as they arrived. */
export interface PagesSeen {
  /** SHA-256 (hex) of every PAGES payload in order; null if there were none. */
  sha256: string | null;
  /** The end of the highest page, bytes. */
  end_bytes: number;
}

/**
 * Checks a checkpoint that arrived: its image decodes, is signed by a key
 * `trust` knows and is of `module_sha256`, its META vouches for exactly the
 * PAGES frames seen (their SHA-256, as in a migration), and they lie inside
 * its memory. Returns the image. Throws an ImageError otherwise.
 */
export function checkCheckpoint(image_bytes: Uint8Array, pages: PagesSeen, trust: ImageTrust, module_sha256: Uint8Array): DecodedImage {
  const image = decode(image_bytes, trust, module_sha256, () => undefined);
  const signed = image.meta["precopy_sha256"];
  const ok = signed === undefined ? pages.sha256 === null : signed === pages.sha256;
  if (!ok) throw new ImageError(ImageErrorCodes.signature, "image signature: the checkpoint's pages are not the ones its runner signed for");
  if (pages.end_bytes > image.memory.size_bytes) {
    throw new ImageError(ImageErrorCodes.limit, `checkpoint pages reach ${pages.end_bytes} bytes, past its memory of ${image.memory.size_bytes}`);
  }
  return image;
}

/** Folds PAGES payloads into a {@link PagesSeen} as they arrive (each is checked to be a PAGES frame). */
export class PagesDigest {
  readonly #hash = createHash("sha256");
  #any = false;
  #end_bytes = 0;

  /** Takes the next payload; throws ERR_MIGRATION_PROTOCOL for one that is not a PAGES frame. */
  update(payload: Uint8Array): void {
    for (const page of readPages(payload)) this.#end_bytes = Math.max(this.#end_bytes, (page.index + 1) * WIRE_PAGE_BYTES);
    this.#hash.update(payload);
    this.#any = true;
  }

  /** What was seen. */
  seen(): PagesSeen {
    return { sha256: this.#any ? this.#hash.digest("hex") : null, end_bytes: this.#end_bytes };
  }
}

/**
 * The whole process as of the newest checkpoint of a chain (base first):
 * memory from the base and every increment's pages in order, everything else
 * from the newest image. `trust` must know every signer (each checkpoint was
 * checked when it arrived; this checks again, as its bytes come off disk).
 * The result's memory is its non-zero pages; its META vouches for no
 * pre-copied pages, so it can be sent as one image. It gives way to the
 * event loop every {@link REBUILD_SLICE_BYTES}: a keeper rebuilding gigabytes
 * goes on answering its peers meanwhile.
 */
export async function rebuildImage(chain: Iterable<StoredCheckpoint>, trust: ImageTrust, module_sha256: Uint8Array): Promise<ProcessImage> {
  let memory: Uint8Array = new Uint8Array(0);
  const fit = (end: number): void => {
    if (end <= memory.length) return;
    const bigger = new Uint8Array(end);
    bigger.set(memory);
    memory = bigger;
  };
  let last: DecodedImage | null = null;
  let since_yield = 0;
  const slice = async (bytes: number): Promise<void> => {
    since_yield += bytes;
    if (since_yield < REBUILD_SLICE_BYTES) return;
    since_yield = 0;
    await new Promise((resolve) => setImmediate(resolve));
  };
  for (const cp of chain) {
    const decoder: ImageDecoder = new ImageDecoder({
      trust,
      module_sha256,
      write_pages: (offset, piece) => {
        // Sized once to the whole memory the image declares: grown piece by piece, a base of 256 MiB was copied over and over (minutes of CPU).
        fit(Math.max(offset + piece.length, decoder.memory_size_bytes ?? 0));
        memory.set(piece, offset);
      },
    });
    for (let at = 0; at < cp.image.length; at += REBUILD_SLICE_BYTES) {
      decoder.push(cp.image.subarray(at, at + REBUILD_SLICE_BYTES));
      await slice(REBUILD_SLICE_BYTES);
    }
    const image = decoder.end();
    fit(image.memory.size_bytes);
    for (const p of cp.pages) {
      for (const page of readPages(p)) {
        fit((page.index + 1) * WIRE_PAGE_BYTES);
        memory.set(page.data, page.index * WIRE_PAGE_BYTES);
      }
      await slice(p.length);
    }
    last = image;
  }
  if (last === null) throw new RangeError("a chain of no checkpoints");
  const { precopy_sha256: _vouched, ...meta } = last.meta;
  const size_bytes = last.memory.size_bytes;
  return { ...last, meta, memory: sparsePages(memory.length === size_bytes ? memory : memory.subarray(0, size_bytes)) };
}

function decode(bytes: Uint8Array, trust: ImageTrust, module_sha256: Uint8Array, write_pages: (offset: number, piece: Uint8Array) => void): DecodedImage {
  const decoder = new ImageDecoder({ trust, module_sha256, write_pages });
  decoder.push(bytes);
  return decoder.end();
}
