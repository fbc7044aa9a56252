/**
 * Image encoder: a generator of byte chunks, so a caller can write them to a
 * socket or file with backpressure and the whole image never sits in memory.
 * Every chunk is folded into a SHA-256 as it is yielded; the SIGNATURE
 * section signs that digest, so the bytes are read once.
 */
import { createHash, type Hash } from "node:crypto";
import { crc32 } from "./_crc.js";
import { ImageDigest, frameSection, u32Bytes, writeSectionHeader } from "./_frame.js";
import { encodeSignature, prepareSigner, type ImageSigner } from "./_signature.js";
import {
  encodeEnd,
  encodeGlobals,
  encodeJson,
  encodeMemory,
  encodeModule,
  encodeStack,
  encodeStreams,
} from "./_sections.js";
import {
  HEADER_BYTES,
  IMAGE_MAGIC,
  IMAGE_VERSION,
  ImageLimits,
  PAGE_BYTES,
  RUN_HEADER_BYTES,
  SECTION_HEADER_BYTES,
  SectionKind,
} from "./format.js";
import type { MemoryRun, MemorySource, ProcessImage } from "./types.js";

/** The 16-byte file header: magic, version, reserved zero. */
function fileHeader(): Uint8Array {
  const header = new Uint8Array(HEADER_BYTES);
  header.set(IMAGE_MAGIC, 0);
  new DataView(header.buffer).setUint32(8, IMAGE_VERSION, true);
  return header;
}

/** Options of {@link encodeImage}. */
export interface EncodeOptions {
  /** Signs the image (its SIGNATURE section); readers accept it only if they trust this key. */
  signer: ImageSigner;
}

/**
 * Streams the bytes of an image. The signer and the small sections are
 * validated and built before the first chunk is yielded, so bad input
 * (TypeError/RangeError), an input over a limit (ImageError ERR_IMAGE_LIMIT)
 * or a key that cannot sign (ERR_IMAGE_SIGNATURE) fails before any output. Memory
 * pages are yielded as views of the caller's memory, never copied: the memory
 * must not change until the consumer is done with every chunk (capture happens
 * while the process is suspended). The output is deterministic: the same image
 * encodes to the same bytes.
 */
export function* encodeImage(image: ProcessImage, options: EncodeOptions): Generator<Uint8Array, void, undefined> {
  const signer = prepareSigner(options.signer);
  const small = [
    { kind: SectionKind.module, payload: encodeModule(image.module_sha256, image.instrumenter) },
    { kind: SectionKind.meta, payload: encodeJson(image.meta, "meta") },
    { kind: SectionKind.globals, payload: encodeGlobals(image.globals) },
    { kind: SectionKind.stack, payload: encodeStack(image.stack) },
    { kind: SectionKind.wasi, payload: encodeJson(image.wasi, "wasi state") },
    { kind: SectionKind.streams, payload: encodeStreams(image.streams) },
    { kind: SectionKind.memory, payload: encodeMemory(image.memory.size_bytes) },
    ...(image.links !== undefined ? [{ kind: SectionKind.links, payload: encodeJson(image.links, "link state", ImageLimits.links_section_bytes_max) }] : []),
  ];

  const digest = new ImageDigest();
  const sha = createHash("sha256");
  const header = fileHeader();
  digest.addHeader(header);
  sha.update(header);
  yield header;

  for (const { kind, payload } of small) {
    const section = frameSection({ kind, flags: 0, payload });
    digest.addSection(section.crc, payload.length);
    sha.update(section.bytes);
    yield section.bytes;
  }

  const page_count = yield* encodePages(image.memory, digest, sha);

  const signature = encodeSignature(signer, sha.digest());
  const signed = frameSection({ kind: SectionKind.signature, flags: 0, payload: signature });
  digest.addSection(signed.crc, signature.length);
  yield signed.bytes;

  const end = encodeEnd({
    image_bytes: digest.image_bytes,
    section_count: digest.section_count,
    page_count,
    image_crc: digest.crc,
  });
  yield frameSection({ kind: SectionKind.end, flags: 0, payload: end }).bytes;
}

/**
 * PAGES sections, one per run of consecutive non-zero pages (at most
 * page_run_pages_max pages each). Returns the number of pages written.
 */
function* encodePages(memory: MemorySource, digest: ImageDigest, sha: Hash): Generator<Uint8Array, number, undefined> {
  const pages_total = memory.size_bytes / PAGE_BYTES;
  if (memory.pageRuns !== undefined) return yield* encodeRuns(memory.pageRuns(), pages_total, digest, sha);
  // Views of the pending run's pages; only references, the data stays in place.
  const run: Uint8Array[] = [];
  let run_first = 0;
  let next_index_min = 0;
  let page_count = 0;

  for (const { index, data } of memory.pages()) {
    if (!Number.isInteger(index) || index < next_index_min || index >= pages_total) {
      throw new RangeError(
        `memory.pages() yielded index ${index}; indices must be strictly increasing and below ${pages_total}`,
      );
    }
    if (data.length !== PAGE_BYTES) {
      throw new RangeError(`memory.pages() yielded page ${index} of ${data.length} bytes, expected ${PAGE_BYTES}`);
    }
    if (run.length > 0 && (index !== run_first + run.length || run.length === ImageLimits.page_run_pages_max)) {
      yield* encodeRun(run_first, run, run.length, digest, sha);
      run.length = 0;
    }
    if (run.length === 0) run_first = index;
    run.push(data);
    next_index_min = index + 1;
    page_count += 1;
  }
  if (run.length > 0) yield* encodeRun(run_first, run, run.length, digest, sha);
  return page_count;
}

/**
 * PAGES sections from a source's runs (MemorySource.pageRuns): one section per
 * run as given, the run's bytes one view. The same bytes as from its pages
 * when the runs are maximal up to page_run_pages_max, as sparsePages' are.
 */
function* encodeRuns(runs: Iterable<MemoryRun>, pages_total: number, digest: ImageDigest, sha: Hash): Generator<Uint8Array, number, undefined> {
  let next_index_min = 0;
  let page_count = 0;
  for (const { first, data } of runs) {
    const count = data.length / PAGE_BYTES;
    if (!Number.isInteger(first) || first < next_index_min || !Number.isInteger(count) || count < 1 || count > ImageLimits.page_run_pages_max || first + count > pages_total) {
      throw new RangeError(`memory.pageRuns() yielded ${data.length} bytes from page ${first}; runs must be increasing, of 1 to ${ImageLimits.page_run_pages_max} whole pages, below page ${pages_total}`);
    }
    yield* encodeRun(first, [data], count, digest, sha);
    next_index_min = first + count;
    page_count += count;
  }
  return page_count;
}

/**
 * One PAGES section: header and run header in one small chunk, the page data
 * as views (pages that are adjacent in the same buffer merged into one view,
 * so a dense run is a single 1 MiB chunk), then the CRC.
 */
function* encodeRun(first: number, pages: readonly Uint8Array[], page_count: number, digest: ImageDigest, sha: Hash): Generator<Uint8Array, void, undefined> {
  const payload_bytes = RUN_HEADER_BYTES + page_count * PAGE_BYTES;
  const head = Buffer.allocUnsafe(SECTION_HEADER_BYTES + RUN_HEADER_BYTES);
  writeSectionHeader(head, 0, { kind: SectionKind.pages, flags: 0, length_bytes: payload_bytes });
  head.writeUInt32LE(first, SECTION_HEADER_BYTES);
  head.writeUInt32LE(page_count, SECTION_HEADER_BYTES + 4);
  let crc = crc32(head);
  sha.update(head);
  yield head;

  let i = 0;
  while (i < pages.length) {
    const start = pages[i] as Uint8Array;
    let span_pages = 1;
    for (; i + span_pages < pages.length; span_pages++) {
      const next = pages[i + span_pages] as Uint8Array;
      if (next.buffer !== start.buffer || next.byteOffset !== start.byteOffset + span_pages * PAGE_BYTES) break;
    }
    const span = span_pages === 1 ? start : new Uint8Array(start.buffer, start.byteOffset, span_pages * PAGE_BYTES);
    crc = crc32(span, crc);
    sha.update(span);
    yield span;
    i += span_pages;
  }

  digest.addSection(crc, payload_bytes);
  const tail = u32Bytes(crc);
  sha.update(tail);
  yield tail;
}
