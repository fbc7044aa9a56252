/**
 * Ferry's error hierarchy. Every failure an operator or a caller may meet has a
 * stable `code` (matched by callers, also across process boundaries) and keeps
 * the underlying error as `cause`. The codes live in one registry
 * (`error_codes.ts`) with their HTTP status and meaning.
 */
import type { ErrorCode } from "./error_codes.js";

export { ERROR_CODES, isErrorCode, knownCode, statusOf, type ErrorCode, type ErrorCodeInfo } from "./error_codes.js";

/** Base class of every error Ferry raises on purpose. */
export class FerryError extends Error {
  /** Stable machine-readable code, e.g. `ERR_IMAGE_CHECKSUM`; always a registered one. */
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = "FerryError";
  }
}

/**
 * An error the other side of a protocol reported (an ERROR frame): `code` is
 * the peer's (or ERR_PEER when this node does not know it). Callers tell a
 * refusal from a local failure by this class, never by the message.
 */
export class PeerError extends FerryError {
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = "PeerError";
  }
}

/** An image (or image stream) failed a check; nothing was restored from it. */
export class ImageError extends FerryError {
  constructor(code: ImageErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = "ImageError";
  }
}

/** Codes carried by {@link ImageError}. */
export const ImageErrorCodes = {
  magic: "ERR_IMAGE_MAGIC",
  version: "ERR_IMAGE_VERSION",
  truncated: "ERR_IMAGE_TRUNCATED",
  checksum: "ERR_IMAGE_CHECKSUM",
  malformed: "ERR_IMAGE_MALFORMED",
  moduleMismatch: "ERR_IMAGE_MODULE_MISMATCH",
  limit: "ERR_IMAGE_LIMIT",
  /** Unsigned, signed by a key the reader does not trust, or changed since it was signed. */
  signature: "ERR_IMAGE_SIGNATURE",
  /** An encrypted image whose key is not here, or whose ciphertext or envelope was changed. */
  decrypt: "ERR_IMAGE_DECRYPT",
} as const;

/** Union of image error codes. */
export type ImageErrorCode = (typeof ImageErrorCodes)[keyof typeof ImageErrorCodes];

/**
 * Instrumenting a module failed: not valid wasm, an unsupported feature,
 * Binaryen itself failed (ERR_INSTRUMENT_FAILED) or ran out of memory
 * (ERR_INSTRUMENT_LIMIT).
 */
export class InstrumentError extends FerryError {
  declare readonly code: InstrumentErrorCode;

  constructor(code: InstrumentErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = "InstrumentError";
  }
}

/** Codes carried by {@link InstrumentError}. */
export type InstrumentErrorCode = "ERR_INSTRUMENT_INVALID" | "ERR_INSTRUMENT_UNSUPPORTED" | "ERR_INSTRUMENT_FAILED" | "ERR_INSTRUMENT_LIMIT";

/**
 * Restoring a process failed before it ran: a file or directory it needs is
 * gone (ERR_RESTORE_FILE, ERR_RESTORE_PREOPEN), or its state does not fit the
 * module or cannot be taken up (ERR_RESTORE_STATE: globals, stack, memory).
 */
export class RestoreError extends FerryError {
  constructor(code: "ERR_RESTORE_FILE" | "ERR_RESTORE_PREOPEN" | "ERR_RESTORE_STATE", message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = "RestoreError";
  }
}

/**
 * A key file under the Ferry home is unusable: unreadable, not a key of the
 * expected kind, or readable by other users (ERR_KEY_FILE).
 */
export class KeyFileError extends FerryError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_KEY_FILE", message, options);
    this.name = "KeyFileError";
  }
}

/**
 * A module file cannot be used: not a regular file (a device, a FIFO, a
 * directory: ERR_MODULE_NOT_FILE), or larger than a module may be
 * (ERR_MODULE_TOO_LARGE, the code the node's module store uses too).
 */
export class ModuleFileError extends FerryError {
  constructor(code: "ERR_MODULE_NOT_FILE" | "ERR_MODULE_TOO_LARGE", message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = "ModuleFileError";
  }
}

/** A runtime operation on a process failed (trap, suspend refused...). */
export class RuntimeError extends FerryError {
  constructor(code: "ERR_GUEST_TRAP" | "ERR_SUSPEND_FAILED" | "ERR_PROCESS_STATE" | "ERR_WORKER" | "ERR_MEMORY_LIMIT", message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = "RuntimeError";
  }
}

/** The framed data protocol between nodes failed: a bad frame, a closed peer, a silent peer. */
export class TransportError extends FerryError {
  constructor(code: TransportErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = "TransportError";
  }
}

/** Codes carried by {@link TransportError}. */
export const TransportErrorCodes = {
  frameTooLarge: "ERR_FRAME_TOO_LARGE",
  frameMalformed: "ERR_FRAME_MALFORMED",
  connectionClosed: "ERR_CONNECTION_CLOSED",
  timeout: "ERR_TRANSPORT_TIMEOUT",
} as const;

/** Union of transport error codes. */
export type TransportErrorCode = (typeof TransportErrorCodes)[keyof typeof TransportErrorCodes];
