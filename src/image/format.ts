/**
 * Constants of the process image format v2: magic, version, section kinds,
 * sizes of the fixed-size structures, and the limits a decoder enforces.
 * docs/image-format.md describes the same layout byte by byte; change both together.
 */

/**
 * Version of the format this code writes and the only one it restores. 2 added
 * the SIGNATURE section every reader must check; version 1 images carry none.
 */
export const IMAGE_VERSION = 2;

/** The last version without a SIGNATURE section: such an image is refused as unsigned. */
export const IMAGE_VERSION_UNSIGNED = 1;

/**
 * Granularity of the sparse memory encoding. 4 KiB matches the OS page and the
 * unit page trackers use for dirty sets, so a pre-copy round and an image
 * describe memory in the same units. Wasm's 64 KiB pages are multiples of it.
 */
export const PAGE_BYTES = 4096;

/**
 * `\x89FERRY\r\n`: the high byte catches 7-bit channels, the CR LF catches
 * newline translation, and the ASCII middle makes `xxd` output recognisable.
 */
export const IMAGE_MAGIC: Uint8Array = Uint8Array.of(0x89, 0x46, 0x45, 0x52, 0x52, 0x59, 0x0d, 0x0a);

/** Bytes in the file header: magic (8), version u32, reserved u32. */
export const HEADER_BYTES = 16;

/** Bytes in a section header: kind u16, flags u16, length u64, header CRC u32. */
export const SECTION_HEADER_BYTES = 16;

/** Bytes in the CRC-32 that follows every section's payload. */
export const SECTION_CRC_BYTES = 4;

/** Bytes in a PAGES section's run header: first page u32, page count u32. */
export const RUN_HEADER_BYTES = 8;

/** Bytes in the MEMORY section payload: size u64, page size u32. */
export const MEMORY_PAYLOAD_BYTES = 12;

/** Bytes in the END section payload: image bytes u64, section count u32, page count u32, image CRC u32. */
export const END_PAYLOAD_BYTES = 20;

/** Bytes of a SIGNATURE payload before the signature: key id (32), algorithm u16, reserved u16, signature length u32. */
export const SIGNATURE_HEAD_BYTES = 40;

/**
 * Section kinds (u16). Known kinds appear in exactly this order (PAGES zero or
 * more times); the order puts the module identity first so a receiver can
 * reject a wrong module before gigabytes of pages arrive.
 */
export const SectionKind = {
  module: 0x0001,
  meta: 0x0002,
  globals: 0x0003,
  stack: 0x0004,
  wasi: 0x0005,
  streams: 0x0006,
  memory: 0x0007,
  pages: 0x0008,
  links: 0x0009,
  signature: 0x000a,
  end: 0x00ff,
} as const;

/** Union of the known section kind numbers. */
export type SectionKindCode = (typeof SectionKind)[keyof typeof SectionKind];

/** The known sections that must appear exactly once, in this order, before any PAGES. */
export const REQUIRED_ORDER: readonly SectionKindCode[] = [
  SectionKind.module,
  SectionKind.meta,
  SectionKind.globals,
  SectionKind.stack,
  SectionKind.wasi,
  SectionKind.streams,
  SectionKind.memory,
];

/**
 * Section flag bits (u16). OPTIONAL lets a later writer add a section that an
 * older reader may skip; an unknown kind without it is rejected, because the
 * writer said the reader cannot restore correctly without understanding it.
 */
export const SectionFlags = {
  optional: 0x0001,
} as const;

/** Global value types, coded as WebAssembly's own valtype bytes so a hexdump reads like wasm. */
export const GlobalTypeCode = {
  i32: 0x7f,
  i64: 0x7e,
  f32: 0x7d,
  f64: 0x7c,
} as const;

/**
 * Signature algorithms (u16 in the SIGNATURE section). Both sign the same
 * message (see signedMessage in _signature.ts); both signatures are 64 bytes:
 * Ed25519's by definition, ECDSA's as r ‖ s (IEEE P1363), not DER, so the
 * length does not vary with the values.
 */
export const SignatureAlgorithm = {
  ed25519: 1,
  ecdsa_p256_sha256: 2,
} as const;

/** Union of the signature algorithm numbers. */
export type SignatureAlgorithmCode = (typeof SignatureAlgorithm)[keyof typeof SignatureAlgorithm];

/** Flag bits of the STREAMS section's u32 flags field. */
export const StreamFlags = {
  stdin_eof: 0x0000_0001,
} as const;

/**
 * Limits on every length a decoder reads from untrusted bytes. A length is
 * compared with its limit before anything is allocated from it; exceeding one
 * is ERR_IMAGE_LIMIT. The encoder enforces the same limits, so it never writes
 * an image a peer will refuse.
 */
export const ImageLimits = {
  /** wasm32 memories cannot exceed 65536 × 64 KiB = 4 GiB. */
  memory_bytes_max: 4 * 1024 * 1024 * 1024,
  /**
   * Pages in one PAGES section (1 MiB of data). Bounds the buffer a streaming
   * decoder fills per section and the data lost to one bad CRC; also the
   * granularity at which the encoder yields, so a 1 GiB image streams in MiB steps.
   */
  page_run_pages_max: 256,
  /** META and WASI JSON: fd tables, paths and clocks are kilobytes; 16 MiB is far above honest use. */
  json_section_bytes_max: 16 * 1024 * 1024,
  /** Unwound Asyncify stack: deep recursion yields megabytes; 64 MiB bounds a hostile claim. */
  stack_bytes_max: 64 * 1024 * 1024,
  /** Matches the JS API's implementation limit on globals per module, so any module an engine accepts fits. */
  global_count_max: 1_000_000,
  /** Whole GLOBALS payload: a million globals with short names fit with room to spare. */
  globals_section_bytes_max: 64 * 1024 * 1024,
  /** Global and entry-point names are export names our instrumenter chooses; 4 KiB is far above them. */
  name_bytes_max: 4096,
  /** Instrumenter version strings are short identifiers. */
  instrumenter_bytes_max: 256,
  /** LINKS JSON: up to ~1,300 undelivered or unread messages of at most 64 KiB each, in base64. */
  links_section_bytes_max: 128 * 1024 * 1024,
  /** stdin bytes received but not yet read by the guest; the runtime's stdin buffer is far smaller. */
  stdin_pending_bytes_max: 16 * 1024 * 1024,
  /** A signature of a known algorithm is 64 bytes; room for a future algorithm's (post-quantum ones are kilobytes) without a format change. */
  signature_bytes_max: 8192,
  /** An unknown optional section is checked and skipped, never stored; the limit still bounds its cost. */
  optional_section_bytes_max: 16 * 1024 * 1024,
  /** Unknown optional sections per image: a handful of future extensions, not an unbounded list. */
  optional_section_count_max: 64,
} as const;

/** The payload bytes each known kind may claim before its contents are read. */
export function payloadBytesMax(kind: SectionKindCode): number {
  switch (kind) {
    case SectionKind.module:
      return 32 + 4 + ImageLimits.instrumenter_bytes_max;
    case SectionKind.meta:
    case SectionKind.wasi:
      return ImageLimits.json_section_bytes_max;
    case SectionKind.globals:
      return ImageLimits.globals_section_bytes_max;
    case SectionKind.stack:
      return 4 + ImageLimits.name_bytes_max + 4 + ImageLimits.stack_bytes_max;
    case SectionKind.streams:
      return 24 + ImageLimits.stdin_pending_bytes_max;
    case SectionKind.memory:
      return MEMORY_PAYLOAD_BYTES;
    case SectionKind.pages:
      return RUN_HEADER_BYTES + ImageLimits.page_run_pages_max * PAGE_BYTES;
    case SectionKind.links:
      return ImageLimits.links_section_bytes_max;
    case SectionKind.signature:
      return SIGNATURE_HEAD_BYTES + ImageLimits.signature_bytes_max;
    case SectionKind.end:
      return END_PAYLOAD_BYTES;
  }
}

/** Human name of a section kind for error messages. */
export function kindName(kind: number): string {
  for (const [name, code] of Object.entries(SectionKind)) {
    if (code === kind) return name.toUpperCase();
  }
  return `0x${kind.toString(16).padStart(4, "0")}`;
}
