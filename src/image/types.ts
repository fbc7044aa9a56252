/**
 * The values an image carries. Plain data: the codec turns these into bytes
 * and back, and knows nothing of how the runtime captured them.
 */

/** A WebAssembly value type a global may have. */
export type GlobalType = "i32" | "i64" | "f32" | "f64";

/**
 * One mutable global's value as raw bits: i32 as an unsigned 32-bit integer,
 * i64 as an unsigned 64-bit integer, f32/f64 as their IEEE-754 bit pattern
 * (raw bits keep NaN payloads, which a JS number would canonicalise).
 */
export interface GlobalValue {
  name: string;
  type: GlobalType;
  bits: bigint;
}

/** One non-zero page of memory. */
export interface MemoryPage {
  /** Byte offset in memory divided by PAGE_BYTES. */
  index: number;
  /** Exactly PAGE_BYTES bytes; usually a view into the memory, not a copy. */
  data: Uint8Array;
}

/**
 * A memory as a sparse set of pages: `pages()` yields the pages that are not
 * all zero, in strictly increasing index order; pages it omits are zero.
 */
export interface MemorySource {
  /** Memory size in bytes, a multiple of PAGE_BYTES. */
  size_bytes: number;
  /** The non-zero pages, strictly increasing by index, each index < size_bytes / PAGE_BYTES. */
  pages(): Iterable<MemoryPage>;
  /**
   * Optionally, the same pages as runs of consecutive pages, each one view of
   * the memory (`data` a whole number of pages, at most
   * ImageLimits.page_run_pages_max), in increasing order: the encoder then
   * takes a run without an object per page. Runs need not be maximal.
   */
  pageRuns?(): Iterable<MemoryRun>;
}

/** Consecutive non-zero pages from page `first`, as one view. */
export interface MemoryRun {
  first: number;
  data: Uint8Array;
}

/** Where the process's output and input streams stood when it was suspended. */
export interface StreamPositions {
  /** Bytes the guest had written to stdout, so the relay resumes exactly after them. */
  stdout_bytes: number;
  /** Bytes the guest had written to stderr. */
  stderr_bytes: number;
  /** stdin bytes received from the client but not yet read by the guest. */
  stdin_pending: Uint8Array;
  /** Whether the client had closed stdin. */
  stdin_eof: boolean;
}

/** Free-form JSON metadata about the image; the two named fields are required. */
export interface ImageMeta {
  module_path: string;
  created_unix_ms: number;
  [k: string]: unknown;
}

/** A suspended process's state: everything needed to resume it on another node. */
export interface ProcessImage {
  /** SHA-256 (32 bytes) of the ORIGINAL, uninstrumented module: the cluster-wide module key. */
  module_sha256: Uint8Array;
  /** Instrumenter version that produced the running module; the stack layout depends on it. */
  instrumenter: string;
  memory: MemorySource;
  globals: GlobalValue[];
  /** The export the process was started through, and the unwound Asyncify stack bytes. */
  stack: { entry: string; asyncify: Uint8Array };
  /** JSON-serialisable WASI host state; opaque to the image codec. */
  wasi: unknown;
  streams: StreamPositions;
  meta: ImageMeta;
  /** JSON-serialisable link state (messages in and out, sequence numbers); absent outside a cluster. */
  links?: unknown;
}

/** A decoded memory: a MemorySource that also knows how many pages it holds. */
export interface DecodedMemory extends MemorySource {
  page_count: number;
}

/** A ProcessImage that passed every check of the decoder. */
export interface DecodedImage extends ProcessImage {
  memory: DecodedMemory;
}
