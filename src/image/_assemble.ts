/**
 * The decoder's second half: given sections whose framing and CRCs already
 * passed, it enforces their order (SIGNATURE last before END, none missing),
 * sizes and contents and builds the image.
 * decode.ts turns bytes into verified sections; this file knows what they mean.
 */
import { ImageError, ImageErrorCodes } from "../errors.js";
import { limit, malformed } from "./_bytes.js";
import type { ImageDigest, SectionHeader } from "./_frame.js";
import {
  parseEnd,
  parseGlobals,
  parseJson,
  parseMemory,
  parseMeta,
  parseModule,
  parseStack,
  parseStreams,
} from "./_sections.js";
import {
  END_PAYLOAD_BYTES,
  ImageLimits,
  MEMORY_PAYLOAD_BYTES,
  PAGE_BYTES,
  REQUIRED_ORDER,
  RUN_HEADER_BYTES,
  SectionFlags,
  SectionKind,
  kindName,
  payloadBytesMax,
  type SectionKindCode,
} from "./format.js";
import { RunMemory, type PageRun } from "./pages.js";
import { unsignedError } from "./_signature.js";
import type { DecodedImage, ProcessImage } from "./types.js";

const KNOWN_KINDS = new Set<number>(Object.values(SectionKind));

/** How the framing layer must read a section's payload. */
export type PayloadMode = "buffer" | "pages" | "skip";

/** ERR_IMAGE_CHECKSUM with advice. */
export function checksumError(message: string): ImageError {
  return new ImageError(ImageErrorCodes.checksum, `image checksum mismatch: ${message}; the image is corrupt, capture or fetch it again`);
}

/** Collects verified sections into a DecodedImage. */
export class ImageAssembler {
  readonly #expected_module: Uint8Array | undefined;
  #order = 0; // index into REQUIRED_ORDER of the next required section
  #optional_count = 0;
  /** The SIGNATURE section has begun: only END may follow, as nothing after it is signed. */
  #signed = false;
  #pages_total = 0;
  #next_page_min = 0;
  #page_count = 0;
  readonly #runs: PageRun[] = [];
  readonly #parts: Partial<Omit<ProcessImage, "memory">> & { size_bytes?: number } = {};

  constructor(expected_module: Uint8Array | undefined) {
    this.#expected_module = expected_module;
  }

  /**
   * Checks a section header (its CRC already passed) before any of its payload
   * is read or allocated: kind, flags, order, and the length against its limit.
   */
  begin(header: SectionHeader, offset: number): PayloadMode {
    const { kind, flags, length_bytes: length } = header;
    const name = kindName(kind);
    if (this.#signed && kind !== SectionKind.end) {
      throw malformed(`section ${name} at offset ${offset} follows the SIGNATURE section, which only END may follow`);
    }
    if (!KNOWN_KINDS.has(kind)) {
      if ((flags & SectionFlags.optional) === 0) {
        throw malformed(`unknown section kind ${name} at offset ${offset} is not marked optional: the image needs a newer reader`);
      }
      if (flags !== SectionFlags.optional) throw malformed(`section ${name} has undefined flag bits 0x${flags.toString(16)}`);
      if (++this.#optional_count > ImageLimits.optional_section_count_max) {
        throw limit(`more than ${ImageLimits.optional_section_count_max} optional sections`);
      }
      if (length > ImageLimits.optional_section_bytes_max) {
        throw limit(`optional section ${name} claims ${length} bytes; the limit is ${ImageLimits.optional_section_bytes_max}`);
      }
      return "skip";
    }
    if (flags !== 0) throw malformed(`section ${name} has flags 0x${flags.toString(16)}; this format version defines none for it`);
    this.#checkOrder(kind as SectionKindCode);
    if (kind === SectionKind.memory && length !== MEMORY_PAYLOAD_BYTES) {
      throw malformed(`MEMORY section is ${length} bytes, expected ${MEMORY_PAYLOAD_BYTES}`);
    }
    if (kind === SectionKind.end && length !== END_PAYLOAD_BYTES) {
      throw malformed(`END section is ${length} bytes, expected ${END_PAYLOAD_BYTES}`);
    }
    const max = payloadBytesMax(kind as SectionKindCode);
    if (length > max) throw limit(`${name} section claims ${length} bytes; the limit is ${max}`);
    if (kind !== SectionKind.pages) return "buffer";

    const data_bytes = length - RUN_HEADER_BYTES;
    if (data_bytes < PAGE_BYTES || data_bytes % PAGE_BYTES !== 0) {
      throw malformed(`PAGES section of ${length} bytes does not hold a whole, non-zero number of pages`);
    }
    // Also bounds what a streaming decoder allocates for the run by the memory's verified size.
    if (data_bytes / PAGE_BYTES > this.#pages_total - this.#next_page_min) {
      throw malformed(`PAGES section at offset ${offset} holds more pages than the memory has left`);
    }
    return "pages";
  }

  #checkOrder(kind: SectionKindCode): void {
    const expected = REQUIRED_ORDER[this.#order];
    if (kind === SectionKind.links) {
      // At most once, right after MEMORY.
      if (expected !== undefined || "links" in this.#parts || this.#next_page_min > 0) throw malformed("LINKS section out of order or repeated: it comes once, right after MEMORY");
      return;
    }
    if (kind === SectionKind.pages || kind === SectionKind.end || kind === SectionKind.signature) {
      if (expected !== undefined) throw malformed(`${kindName(kind)} section before the ${kindName(expected)} section`);
      // Refused here, before END's payload: an unsigned image is never one that merely lacks a check.
      if (kind === SectionKind.end && !this.#signed) throw unsignedError("the image");
      if (kind === SectionKind.signature) this.#signed = true;
    } else if (kind !== expected) {
      const wanted = expected === undefined ? "PAGES or END" : kindName(expected);
      throw malformed(`${kindName(kind)} section out of order or repeated: expected ${wanted}`);
    }
  }

  /** Takes a verified section other than END. For PAGES, `payload` is the page data and `run` its run header. */
  accept(kind: number, payload: Uint8Array, run: { first: number; count: number; streamed_bytes?: number | undefined }): void {
    const parts = this.#parts;
    switch (kind) {
      case SectionKind.module: {
        const module = parseModule(payload);
        this.#checkModule(module.module_sha256);
        parts.module_sha256 = module.module_sha256;
        parts.instrumenter = module.instrumenter;
        break;
      }
      case SectionKind.meta:
        parts.meta = parseMeta(payload);
        break;
      case SectionKind.globals:
        parts.globals = parseGlobals(payload);
        break;
      case SectionKind.stack:
        parts.stack = parseStack(payload);
        break;
      case SectionKind.wasi:
        parts.wasi = parseJson(payload, "WASI");
        break;
      case SectionKind.streams:
        parts.streams = parseStreams(payload);
        break;
      case SectionKind.memory:
        parts.size_bytes = parseMemory(payload);
        this.#pages_total = parts.size_bytes / PAGE_BYTES;
        break;
      case SectionKind.pages:
        this.#addRun(payload, run);
        return;
      case SectionKind.links:
        parts.links = parseJson(payload, "LINKS");
        return;
      case SectionKind.signature:
        return; // the decoder verified it against the bytes before it

      default:
        return; // an optional section this reader skips
    }
    this.#order += 1;
  }

  #checkModule(actual: Uint8Array): void {
    const expected = this.#expected_module;
    if (expected === undefined || Buffer.from(expected).equals(actual)) return;
    const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
    throw new ImageError(
      ImageErrorCodes.moduleMismatch,
      `image is of module ${hex(actual)}, not ${hex(expected)}: restore it with the module it was captured from`,
    );
  }

  /** The memory size the MEMORY section declared, bytes; undefined before it. */
  get memory_bytes(): number | undefined {
    return this.#parts.size_bytes;
  }

  // The run header is checked only here, after the CRC, so a corrupted one reads as a checksum error.
  /** Whether a run of `count` pages from `first` lies inside the declared memory (streaming decode). */
  runFits(first: number, count: number): boolean {
    return first + count <= this.#pages_total;
  }

  #addRun(data: Uint8Array, run: { first: number; count: number; streamed_bytes?: number | undefined }): void {
    const count = (run.streamed_bytes ?? data.length) / PAGE_BYTES;
    if (run.count !== count) throw malformed(`PAGES run header says ${run.count} pages but the section holds ${count}`);
    if (run.first < this.#next_page_min || run.first + count > this.#pages_total) {
      throw malformed(
        `PAGES run ${run.first}..${run.first + count - 1} is out of order or outside memory (next page >= ${this.#next_page_min}, pages ${this.#pages_total})`,
      );
    }
    // A streamed run went to the receiver as it came; nothing is kept here.
    if (run.streamed_bytes === undefined) this.#runs.push({ first: run.first, data });
    this.#next_page_min = run.first + count;
    this.#page_count += count;
  }

  /** Checks the verified END payload against everything before it and returns the image. */
  finish(payload: Uint8Array, digest: ImageDigest): DecodedImage {
    const end = parseEnd(payload);
    if (end.image_crc !== digest.crc) throw checksumError("the END section's whole-image CRC does not match the sections before it");
    if (end.image_bytes !== digest.image_bytes || end.section_count !== digest.section_count || end.page_count !== this.#page_count) {
      throw malformed(
        `END expects ${end.image_bytes} bytes, ${end.section_count} sections, ${end.page_count} pages; found ${digest.image_bytes}, ${digest.section_count}, ${this.#page_count}`,
      );
    }
    const p = this.#parts;
    // begin() lets END through only after every required section, so all parts are set.
    if (
      p.module_sha256 === undefined || p.instrumenter === undefined || p.meta === undefined || p.globals === undefined ||
      p.stack === undefined || p.streams === undefined || p.size_bytes === undefined || !("wasi" in p)
    ) {
      throw new Error("image decoder: END accepted before every required section (decoder bug)");
    }
    return {
      module_sha256: p.module_sha256,
      instrumenter: p.instrumenter,
      memory: new RunMemory(p.size_bytes, this.#runs),
      globals: p.globals,
      stack: p.stack,
      wasi: p.wasi,
      streams: p.streams,
      meta: p.meta,
      ...("links" in p ? { links: p.links } : {}),
    };
  }
}
