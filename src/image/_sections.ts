/**
 * Payload layouts of the small sections, both directions side by side so the
 * writer and the reader of each field sit together. Encoders validate their
 * input (bad input is a programming error: TypeError/RangeError; an input too
 * big for the format is ERR_IMAGE_LIMIT). Parsers run only on payloads whose
 * CRC already passed, and fail only with ImageError.
 */
import { Reader, Writer, limit, malformed, utf8Decode, utf8Strict } from "./_bytes.js";
import { GlobalTypeCode, ImageLimits, MEMORY_PAYLOAD_BYTES, PAGE_BYTES, StreamFlags, END_PAYLOAD_BYTES } from "./format.js";
import type { GlobalType, GlobalValue, ImageMeta, StreamPositions } from "./types.js";

const SHA256_BYTES = 32;
const U32_MAX = 0xffff_ffffn;
const U64_MAX = 0xffff_ffff_ffff_ffffn;

function checkLimit(n: number, max: number, what: string): void {
  if (n > max) throw limit(`${what} is ${n} bytes; the limit is ${max}`);
}

function checkCount(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${what} must be a non-negative safe integer, got ${value}`);
  }
}

// --- MODULE: sha256[32], instrumenter (u32 length + UTF-8) ---

/** MODULE payload. */
export function encodeModule(module_sha256: Uint8Array, instrumenter: string): Uint8Array {
  if (module_sha256.length !== SHA256_BYTES) {
    throw new RangeError(`module_sha256 must be ${SHA256_BYTES} bytes, got ${module_sha256.length}`);
  }
  const name = utf8Strict(instrumenter, "instrumenter");
  checkLimit(name.length, ImageLimits.instrumenter_bytes_max, "instrumenter");
  const w = new Writer(SHA256_BYTES + 4 + name.length);
  w.raw(module_sha256);
  w.u32(name.length);
  w.raw(name);
  return w.done();
}

/** Parses a MODULE payload. */
export function parseModule(payload: Uint8Array): { module_sha256: Uint8Array; instrumenter: string } {
  const r = new Reader(payload, "MODULE");
  const module_sha256 = r.bytes(SHA256_BYTES, "module_sha256").slice();
  const instrumenter = r.string(ImageLimits.instrumenter_bytes_max, "instrumenter");
  r.end();
  return { module_sha256, instrumenter };
}

// --- META and WASI: UTF-8 JSON text ---

/** UTF-8 JSON of a value; `what` names it in errors. */
export function encodeJson(value: unknown, what: string, max_bytes: number = ImageLimits.json_section_bytes_max): Uint8Array {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (cause) {
    throw new TypeError(`${what} is not JSON-serialisable`, { cause });
  }
  if (text === undefined) throw new TypeError(`${what} is not JSON-serialisable (got ${typeof value})`);
  const bytes = utf8Strict(text, what);
  checkLimit(bytes.length, max_bytes, what);
  return bytes;
}

/** Parses a JSON payload (META, WASI or LINKS). */
export function parseJson(payload: Uint8Array, what: string): unknown {
  const text = utf8Decode(payload, `${what} section`);
  try {
    return JSON.parse(text) as unknown;
  } catch (cause) {
    throw malformed(`${what} section is not valid JSON`, cause);
  }
}

/** Parses META and checks its required fields. */
export function parseMeta(payload: Uint8Array): ImageMeta {
  const value = parseJson(payload, "META");
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw malformed("META section is not a JSON object");
  }
  const meta = value as Record<string, unknown>;
  if (typeof meta["module_path"] !== "string") throw malformed("META.module_path is missing or not a string");
  if (typeof meta["created_unix_ms"] !== "number") throw malformed("META.created_unix_ms is missing or not a number");
  return meta as ImageMeta;
}

// --- GLOBALS: count u32, then per global: type u8, name (u32 length + UTF-8), bits u64 ---

const TYPE_BY_CODE = new Map<number, GlobalType>(
  Object.entries(GlobalTypeCode).map(([name, code]) => [code, name as GlobalType]),
);

/** GLOBALS payload. */
export function encodeGlobals(globals: readonly GlobalValue[]): Uint8Array {
  if (globals.length > ImageLimits.global_count_max) {
    throw limit(`${globals.length} globals; the limit is ${ImageLimits.global_count_max}`);
  }
  const names: Uint8Array[] = [];
  const seen = new Set<string>();
  let size = 4;
  for (const g of globals) {
    const code = GlobalTypeCode[g.type];
    if (code === undefined) throw new TypeError(`global ${g.name}: unknown type ${String(g.type)}`);
    const max = g.type === "i32" || g.type === "f32" ? U32_MAX : U64_MAX;
    if (typeof g.bits !== "bigint" || g.bits < 0n || g.bits > max) {
      throw new RangeError(`global ${g.name}: bits must be an unsigned ${max === U32_MAX ? 32 : 64}-bit bigint (use BigInt.asUintN)`);
    }
    if (seen.has(g.name)) throw new RangeError(`global ${g.name} appears twice`);
    seen.add(g.name);
    const name = utf8Strict(g.name, "global name");
    checkLimit(name.length, ImageLimits.name_bytes_max, `global name ${g.name}`);
    names.push(name);
    size += 1 + 4 + name.length + 8;
  }
  checkLimit(size, ImageLimits.globals_section_bytes_max, "GLOBALS section");
  const w = new Writer(size);
  w.u32(globals.length);
  globals.forEach((g, i) => {
    const name = names[i] as Uint8Array;
    w.u8(GlobalTypeCode[g.type]);
    w.u32(name.length);
    w.raw(name);
    w.u64(g.bits);
  });
  return w.done();
}

/** Parses a GLOBALS payload. */
export function parseGlobals(payload: Uint8Array): GlobalValue[] {
  const r = new Reader(payload, "GLOBALS");
  const count = r.u32("count");
  if (count > ImageLimits.global_count_max) {
    throw limit(`GLOBALS claims ${count} globals; the limit is ${ImageLimits.global_count_max}`);
  }
  // Every entry is at least 13 bytes: reject an impossible count before looping on it.
  if (count * 13 > r.remaining) throw malformed(`GLOBALS claims ${count} globals but holds only ${r.remaining} bytes`);
  const globals: GlobalValue[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < count; i++) {
    const code = r.u8("type");
    const type = TYPE_BY_CODE.get(code);
    if (type === undefined) throw malformed(`global #${i} has unknown type code 0x${code.toString(16)}`);
    const name = r.string(ImageLimits.name_bytes_max, "global name");
    const bits = r.u64("bits");
    if ((type === "i32" || type === "f32") && bits > U32_MAX) {
      throw malformed(`global ${name} is ${type} but its bits do not fit 32 bits`);
    }
    if (seen.has(name)) throw malformed(`global ${name} appears twice`);
    seen.add(name);
    globals.push({ name, type, bits });
  }
  r.end();
  return globals;
}

// --- STACK: entry (u32 length + UTF-8), asyncify (u32 length + bytes) ---

/** STACK payload. */
export function encodeStack(stack: { entry: string; asyncify: Uint8Array }): Uint8Array {
  const entry = utf8Strict(stack.entry, "stack entry");
  checkLimit(entry.length, ImageLimits.name_bytes_max, "stack entry name");
  checkLimit(stack.asyncify.length, ImageLimits.stack_bytes_max, "asyncify stack");
  const w = new Writer(4 + entry.length + 4 + stack.asyncify.length);
  w.u32(entry.length);
  w.raw(entry);
  w.u32(stack.asyncify.length);
  w.raw(stack.asyncify);
  return w.done();
}

/** Parses a STACK payload; `asyncify` is a view into the payload, which the decoder owns. */
export function parseStack(payload: Uint8Array): { entry: string; asyncify: Uint8Array } {
  const r = new Reader(payload, "STACK");
  const entry = r.string(ImageLimits.name_bytes_max, "entry");
  const asyncify = r.sized(ImageLimits.stack_bytes_max, "asyncify");
  r.end();
  return { entry, asyncify };
}

// --- STREAMS: stdout_bytes u64, stderr_bytes u64, flags u32, stdin_pending (u32 length + bytes) ---

/** STREAMS payload. */
export function encodeStreams(streams: StreamPositions): Uint8Array {
  checkCount(streams.stdout_bytes, "streams.stdout_bytes");
  checkCount(streams.stderr_bytes, "streams.stderr_bytes");
  checkLimit(streams.stdin_pending.length, ImageLimits.stdin_pending_bytes_max, "stdin_pending");
  const w = new Writer(8 + 8 + 4 + 4 + streams.stdin_pending.length);
  w.u64(streams.stdout_bytes);
  w.u64(streams.stderr_bytes);
  w.u32(streams.stdin_eof ? StreamFlags.stdin_eof : 0);
  w.u32(streams.stdin_pending.length);
  w.raw(streams.stdin_pending);
  return w.done();
}

/** Parses a STREAMS payload. */
export function parseStreams(payload: Uint8Array): StreamPositions {
  const r = new Reader(payload, "STREAMS");
  const stdout_bytes = r.u64Number("stdout_bytes");
  const stderr_bytes = r.u64Number("stderr_bytes");
  const flags = r.u32("flags");
  if ((flags & ~StreamFlags.stdin_eof) !== 0) throw malformed(`STREAMS flags 0x${flags.toString(16)} has unknown bits`);
  const stdin_pending = r.sized(ImageLimits.stdin_pending_bytes_max, "stdin_pending");
  r.end();
  return { stdout_bytes, stderr_bytes, stdin_pending, stdin_eof: (flags & StreamFlags.stdin_eof) !== 0 };
}

// --- MEMORY: size_bytes u64, page_bytes u32 ---

/** Checks a memory size the encoder is given. */
export function checkMemorySize(size_bytes: number): void {
  checkCount(size_bytes, "memory.size_bytes");
  checkLimit(size_bytes, ImageLimits.memory_bytes_max, "memory");
  if (size_bytes % PAGE_BYTES !== 0) throw new RangeError(`memory.size_bytes ${size_bytes} is not a multiple of ${PAGE_BYTES}`);
}

/** MEMORY payload. */
export function encodeMemory(size_bytes: number): Uint8Array {
  checkMemorySize(size_bytes);
  const w = new Writer(MEMORY_PAYLOAD_BYTES);
  w.u64(size_bytes);
  w.u32(PAGE_BYTES);
  return w.done();
}

/** Parses a MEMORY payload into the memory size in bytes. */
export function parseMemory(payload: Uint8Array): number {
  const r = new Reader(payload, "MEMORY");
  const size = r.u64("size_bytes");
  if (size > BigInt(ImageLimits.memory_bytes_max)) {
    throw limit(`memory of ${size} bytes; the limit is ${ImageLimits.memory_bytes_max}`);
  }
  const size_bytes = Number(size);
  const page_bytes = r.u32("page_bytes");
  if (page_bytes !== PAGE_BYTES) throw malformed(`page size is ${page_bytes}, this reader supports only ${PAGE_BYTES}`);
  if (size_bytes % PAGE_BYTES !== 0) throw malformed(`memory size ${size_bytes} is not a multiple of the page size`);
  r.end();
  return size_bytes;
}

// --- END: image_bytes u64, section_count u32, page_count u32, image_crc u32 ---

/** What the END section asserts about everything before it. */
export interface EndFields {
  image_bytes: number;
  section_count: number;
  page_count: number;
  image_crc: number;
}

/** END payload. */
export function encodeEnd(end: EndFields): Uint8Array {
  const w = new Writer(END_PAYLOAD_BYTES);
  w.u64(end.image_bytes);
  w.u32(end.section_count);
  w.u32(end.page_count);
  w.u32(end.image_crc);
  return w.done();
}

/** Parses an END payload. */
export function parseEnd(payload: Uint8Array): EndFields {
  const r = new Reader(payload, "END");
  const image_bytes = r.u64Number("image_bytes");
  const section_count = r.u32("section_count");
  const page_count = r.u32("page_count");
  const image_crc = r.u32("image_crc");
  r.end();
  return { image_bytes, section_count, page_count, image_crc };
}
