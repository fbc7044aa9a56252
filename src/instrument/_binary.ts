/**
 * Minimal reader/writer of the WebAssembly binary container: enough to walk
 * sections and rewrite the memory section's limits. Binaryen builds the
 * module; this only flips a flag it has no JS API for.
 */

const WASM_MAGIC_BYTES = 8; // "\0asm" + version

/** A section as found in the binary. */
export interface Section {
  id: number;
  /** Offset of the section id byte. */
  start: number;
  /** Offset of the payload. */
  payload: number;
  /** Offset just past the payload. */
  end: number;
}

function readU32Leb(bytes: Uint8Array, offset: number): { value: number; next: number } {
  let value = 0;
  let shift = 0;
  let pos = offset;
  for (;;) {
    const byte = bytes[pos];
    if (byte === undefined) throw new Error("truncated LEB128");
    pos += 1;
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) break;
    shift += 7;
    if (shift > 35) throw new Error("LEB128 too long");
  }
  return { value, next: pos };
}

export function writeU32Leb(value: number): number[] {
  const out: number[] = [];
  let v = value;
  do {
    let byte = v & 0x7f;
    v = Math.floor(v / 128);
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
  return out;
}

/** The sections of `bytes`, in order (headers only: nothing in them is read). */
export function sections(bytes: Uint8Array): Section[] {
  const out: Section[] = [];
  let pos = WASM_MAGIC_BYTES;
  while (pos < bytes.length) {
    const id = bytes[pos] as number;
    const size = readU32Leb(bytes, pos + 1);
    out.push({ id, start: pos, payload: size.next, end: size.next + size.value });
    pos = size.next + size.value;
  }
  return out;
}

const SECTION_MEMORY = 5;
const LIMITS_HAS_MAX = 0x01;
const LIMITS_SHARED = 0x02;
const LIMITS_MEMORY64 = 0x04;

/** A memory's limits, in 64 KiB pages. */
export interface MemoryLimits {
  shared: boolean;
  initial: number;
  /** Absent: the module declares none. */
  maximum: number | undefined;
}

/**
 * The limits of `wasm`'s (single, defined) memory, and where its section is;
 * undefined when it has no memory section (no memory, or an imported one).
 */
function readMemoryLimits(wasm: Uint8Array): { limits: MemoryLimits; memory: Section } | undefined {
  const memory = sections(wasm).find((s) => s.id === SECTION_MEMORY);
  if (memory === undefined) return undefined;
  const count = readU32Leb(wasm, memory.payload);
  if (count.value !== 1) throw new Error(`expected one memory, found ${count.value}`);
  const flags = wasm[count.next] as number;
  if ((flags & LIMITS_MEMORY64) !== 0) throw new Error("memory64 is not supported");
  const initial = readU32Leb(wasm, count.next + 1);
  let after = initial.next;
  let declared: number | undefined;
  if ((flags & LIMITS_HAS_MAX) !== 0) {
    const max = readU32Leb(wasm, initial.next);
    declared = max.value;
    after = max.next;
  }
  if (after !== memory.end) throw new Error("unexpected bytes after memory limits");
  return { limits: { shared: (flags & LIMITS_SHARED) !== 0, initial: initial.value, maximum: declared }, memory };
}

/**
 * The limits of `wasm`'s memory when its memory section defines exactly one
 * 32-bit memory; else undefined, and the caller's other path says what is
 * wrong (an imported memory has no section here: `_safepoints.ts` refuses it).
 */
export function definedMemory(wasm: Uint8Array): MemoryLimits | undefined {
  try {
    return readMemoryLimits(wasm)?.limits;
  } catch {
    // Several memories, memory64, or a damaged section: Binaryen's path reports it with the module's name.
    return undefined;
  }
}

/**
 * Returns a copy of `wasm` whose (single, defined) memory has the limits
 * `rewrite` makes of the declared ones; `wasm` itself when it has no memory
 * section.
 */
function rewriteMemoryLimits(wasm: Uint8Array, rewrite: (limits: MemoryLimits) => MemoryLimits & { maximum: number }): Uint8Array {
  const read = readMemoryLimits(wasm);
  if (read === undefined) return wasm;
  const { memory } = read;
  const limits = rewrite(read.limits);
  const payload = [
    ...writeU32Leb(1),
    LIMITS_HAS_MAX | (limits.shared ? LIMITS_SHARED : 0),
    ...writeU32Leb(limits.initial),
    ...writeU32Leb(limits.maximum),
  ];
  const header = [SECTION_MEMORY, ...writeU32Leb(payload.length)];
  const out = new Uint8Array(wasm.length - (memory.end - memory.start) + header.length + payload.length);
  out.set(wasm.subarray(0, memory.start), 0);
  out.set(header, memory.start);
  out.set(payload, memory.start + header.length);
  out.set(wasm.subarray(memory.end), memory.start + header.length + payload.length);
  return out;
}

/**
 * Returns a copy of `wasm` whose (single, defined) memory is shared with the
 * given maximum in 64 KiB pages. A shared memory lets the controlling thread
 * read the guest's pages while it runs, with no copy.
 */
export function makeMemoryShared(wasm: Uint8Array, maximum_pages: number): Uint8Array {
  return rewriteMemoryLimits(wasm, (l) => ({ shared: true, initial: l.initial, maximum: l.maximum ?? maximum_pages }));
}

/**
 * Returns a copy of `wasm` whose memory may grow to `maximum_pages` at most
 * (its declared maximum when that is lower). The engine enforces it: the
 * guest's `memory.grow` past it returns -1, as on a machine out of memory.
 * Throws RangeError when the memory starts larger than that.
 */
export function capMemory(wasm: Uint8Array, maximum_pages: number): Uint8Array {
  return rewriteMemoryLimits(wasm, (l) => {
    if (l.initial > maximum_pages) throw new RangeError(`the module's memory starts at ${l.initial} pages, over the cap of ${maximum_pages}`);
    return { shared: l.shared, initial: l.initial, maximum: Math.min(l.maximum ?? maximum_pages, maximum_pages) };
  });
}

const SECTION_IMPORT = 2;
const SECTION_CODE = 10;
const IMPORT_KIND_FUNCTION = 0;

/**
 * Where each defined function's body starts in the binary (module-relative
 * byte offsets, ascending), and how many functions are imported. V8 reports
 * a wasm frame's position as a module offset; these map it to a function
 * index without formatting a stack trace.
 */
export function functionLayout(wasm: Uint8Array): { imported: number; body_offsets: number[] } {
  let imported = 0;
  const body_offsets: number[] = [];
  for (const section of sections(wasm)) {
    if (section.id === SECTION_IMPORT) {
      const count = readU32Leb(wasm, section.payload);
      let pos = count.next;
      for (let i = 0; i < count.value; i += 1) {
        for (let name = 0; name < 2; name += 1) {
          const len = readU32Leb(wasm, pos);
          pos = len.next + len.value;
        }
        const kind = wasm[pos] as number;
        pos += 1;
        if (kind === IMPORT_KIND_FUNCTION) {
          imported += 1;
          pos = readU32Leb(wasm, pos).next; // type index
        } else if (kind === 1) {
          pos += 1; // table: reftype, then limits
          pos = skipLimits(wasm, pos);
        } else if (kind === 2) {
          pos = skipLimits(wasm, pos);
        } else if (kind === 3) {
          pos += 2; // global: valtype, mutability
        } else {
          pos = readU32Leb(wasm, pos + 1).next; // tag: attribute, type index
        }
      }
    } else if (section.id === SECTION_CODE) {
      const count = readU32Leb(wasm, section.payload);
      let pos = count.next;
      for (let i = 0; i < count.value; i += 1) {
        const size = readU32Leb(wasm, pos);
        body_offsets.push(size.next);
        pos = size.next + size.value;
      }
    }
  }
  return { imported, body_offsets };
}

function skipLimits(wasm: Uint8Array, pos: number): number {
  const flags = wasm[pos] as number;
  let p = readU32Leb(wasm, pos + 1).next;
  if ((flags & LIMITS_HAS_MAX) !== 0) p = readU32Leb(wasm, p).next;
  return p;
}

const SECTION_START = 8;
const SECTION_DATA = 11;
const OP_I32_CONST = 0x41;
const OP_END = 0x0b;

/** A signed LEB128 i32, as the u32 a memory offset reads it as. */
function readI32LebAsU32(bytes: Uint8Array, offset: number): { value: number; next: number } {
  let value = 0;
  let shift = 0;
  let pos = offset;
  let byte: number;
  do {
    const b = bytes[pos];
    if (b === undefined) throw new Error("truncated LEB128");
    byte = b;
    pos += 1;
    value |= (byte & 0x7f) << shift;
    shift += 7;
    if (shift > 35) throw new Error("LEB128 too long");
  } while ((byte & 0x80) !== 0);
  if (shift < 32 && (byte & 0x40) !== 0) value |= -1 << shift;
  return { value: value >>> 0, next: pos };
}

/**
 * The ranges of memory a module's instantiation writes: its active data
 * segments, each at a constant offset. Null when it cannot say for sure
 * (a start function, which may write anywhere; an offset that is not an
 * `i32.const`; a segment for another memory; a section it cannot read).
 * The rest of a new instance's memory is zero without having been touched.
 */
export function instantiationWrites(wasm: Uint8Array): { offset: number; length: number }[] | null {
  try {
    const all = sections(wasm);
    if (all.some((s) => s.id === SECTION_START)) return null;
    const data = all.find((s) => s.id === SECTION_DATA);
    if (data === undefined) return [];
    const count = readU32Leb(wasm, data.payload);
    let pos = count.next;
    const out: { offset: number; length: number }[] = [];
    for (let i = 0; i < count.value; i += 1) {
      const flags = readU32Leb(wasm, pos);
      pos = flags.next;
      if (flags.value === 1) {
        // Passive: applied only by memory.init, which the guest's own code runs.
        const len = readU32Leb(wasm, pos);
        pos = len.next + len.value;
        continue;
      }
      if (flags.value === 2) {
        const memory = readU32Leb(wasm, pos);
        if (memory.value !== 0) return null;
        pos = memory.next;
      } else if (flags.value !== 0) return null;
      if (wasm[pos] !== OP_I32_CONST) return null;
      const offset = readI32LebAsU32(wasm, pos + 1);
      if (wasm[offset.next] !== OP_END) return null;
      const len = readU32Leb(wasm, offset.next + 1);
      out.push({ offset: offset.value, length: len.value });
      pos = len.next + len.value;
    }
    return pos === data.end ? out : null;
  } catch {
    // A section cut short or a LEB128 too long: the caller wipes all of memory, as when it cannot say.
    return null;
  }
}

/** An active data segment held back from instantiation: where it goes in memory, where its bytes are in the module. */
export interface HeldSegment {
  /** Offset in the guest's memory. */
  offset: number;
  /** Offset of its bytes in the module it was taken from. */
  at: number;
  length: number;
}

/**
 * A copy of `wasm` whose active data segments are empty, and the segments
 * taken out, for the runtime to write itself: into memory whose pages it
 * backed in bulk first, for a fresh start, and not at all for a standby,
 * whose image says what is in memory (docs/runtime.md, "Data segments").
 * Every segment keeps its index, flags and offset, so `memory.init` and
 * `data.drop` mean what they meant (an active segment is dropped once
 * instantiated: empty, it is as good as dropped). Null when the module
 * writes nothing at instantiation, or may write more than its segments, or
 * the segments cannot be read for sure (as {@link instantiationWrites}).
 */
export function holdBackData(wasm: Uint8Array): { wasm: Uint8Array; segments: HeldSegment[] } | null {
  const writes = instantiationWrites(wasm);
  if (writes === null || !writes.some((w) => w.length > 0)) return null;
  const data = sections(wasm).find((s) => s.id === SECTION_DATA);
  if (data === undefined) return null;
  const count = readU32Leb(wasm, data.payload);
  // The new section's payload, as pieces: the count, then each segment as it was up to its bytes' length, and an empty length for an active one.
  const pieces: Uint8Array[] = [new Uint8Array(writeU32Leb(count.value))];
  const EMPTY = new Uint8Array([0]);
  const segments: HeldSegment[] = [];
  let pos = count.next;
  for (let i = 0; i < count.value; i += 1) {
    const begin = pos;
    const flags = readU32Leb(wasm, pos);
    pos = flags.next;
    if (flags.value === 1) {
      const len = readU32Leb(wasm, pos);
      pos = len.next + len.value;
      pieces.push(wasm.subarray(begin, pos));
      continue;
    }
    if (flags.value === 2) pos = readU32Leb(wasm, pos).next;
    // instantiationWrites read this segment's offset as one i32.const and its `end`.
    const offset = readI32LebAsU32(wasm, pos + 1);
    pos = offset.next + 1;
    const len = readU32Leb(wasm, pos);
    pieces.push(wasm.subarray(begin, pos), EMPTY);
    segments.push({ offset: offset.value, at: len.next, length: len.value });
    pos = len.next + len.value;
  }
  const length = pieces.reduce((n, p) => n + p.length, 0);
  const header = new Uint8Array([SECTION_DATA, ...writeU32Leb(length)]);
  const out = new Uint8Array(wasm.length - (data.end - data.start) + header.length + length);
  out.set(wasm.subarray(0, data.start), 0);
  let at = data.start;
  for (const piece of [header, ...pieces]) {
    out.set(piece, at);
    at += piece.length;
  }
  out.set(wasm.subarray(data.end), at);
  return { wasm: out, segments };
}
