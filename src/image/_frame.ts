/**
 * Section framing shared by the encoder and the decoder: the 16-byte section
 * header with its own CRC, and the running whole-image checksum the END
 * section asserts.
 */
import { crc32, crc32Combine } from "./_crc.js";
import { SECTION_CRC_BYTES, SECTION_HEADER_BYTES } from "./format.js";

/** The fields of a section header. */
export interface SectionHeader {
  kind: number;
  flags: number;
  /** Payload length in bytes. */
  length_bytes: number;
}

/** A section: kind, flags and payload. */
export interface Section {
  kind: number;
  flags: number;
  payload: Uint8Array;
}

/**
 * Writes a section header at `at` in `out`: kind u16, flags u16, payload
 * length u64, then CRC-32 of those 12 bytes. The header has its own CRC so a
 * corrupted length is caught before the decoder allocates or waits for that
 * many bytes. Buffer methods, not DataView/BigInt: this runs once per PAGES
 * section, up to a million times for a sparse 4 GiB memory.
 */
export function writeSectionHeader(out: Buffer, at: number, header: SectionHeader): void {
  out.writeUInt16LE(header.kind, at);
  out.writeUInt16LE(header.flags, at + 2);
  out.writeUInt32LE(header.length_bytes % 2 ** 32, at + 4);
  out.writeUInt32LE(Math.floor(header.length_bytes / 2 ** 32), at + 8);
  out.writeUInt32LE(crc32(out.subarray(at, at + 12)), at + 12);
}

/** A section header as its own 16 bytes. */
export function sectionHeader(header: SectionHeader): Uint8Array {
  const bytes = Buffer.allocUnsafe(SECTION_HEADER_BYTES);
  writeSectionHeader(bytes, 0, header);
  return bytes;
}

/** A little-endian u32 as 4 bytes (section CRCs); from Node's slab pool, as it runs per section. */
export function u32Bytes(value: number): Uint8Array {
  const bytes = Buffer.allocUnsafe(4);
  bytes.writeUInt32LE(value, 0);
  return bytes;
}

/**
 * A whole small section as one buffer: header, payload, CRC-32 of header and
 * payload. Also used by tests to craft sections with valid checksums.
 */
export function frameSection(section: Section): { bytes: Uint8Array; crc: number } {
  const { kind, flags, payload } = section;
  const bytes = Buffer.alloc(SECTION_HEADER_BYTES + payload.length + SECTION_CRC_BYTES);
  writeSectionHeader(bytes, 0, { kind, flags, length_bytes: payload.length });
  bytes.set(payload, SECTION_HEADER_BYTES);
  const crc = crc32(bytes.subarray(0, SECTION_HEADER_BYTES + payload.length));
  bytes.writeUInt32LE(crc, SECTION_HEADER_BYTES + payload.length);
  return { bytes, crc };
}

/**
 * The END section's view of everything before it: byte count, section count,
 * and CRC-32 of all those bytes. Sections are folded in by their own CRC
 * (crc32Combine), so no byte is checksummed twice.
 */
export class ImageDigest {
  image_bytes = 0;
  section_count = 0;
  crc = 0;
  readonly #crc_bytes = Buffer.alloc(SECTION_CRC_BYTES);

  /** Folds in the file header. */
  addHeader(header: Uint8Array): void {
    this.crc = crc32(header, this.crc);
    this.image_bytes += header.length;
  }

  /** Folds in a whole section given the CRC of its header and payload and its payload length. */
  addSection(section_crc: number, payload_bytes: number): void {
    this.crc = crc32Combine(this.crc, section_crc, SECTION_HEADER_BYTES + payload_bytes);
    this.#crc_bytes.writeUInt32LE(section_crc, 0);
    this.crc = crc32(this.#crc_bytes, this.crc);
    this.image_bytes += SECTION_HEADER_BYTES + payload_bytes + SECTION_CRC_BYTES;
    this.section_count += 1;
  }
}
