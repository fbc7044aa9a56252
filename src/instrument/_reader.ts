/**
 * A cursor over a WebAssembly binary, and the encodings the scanners of this
 * folder share (`_calls.ts` reads the code, `_tables.ts` the other sections).
 */

/** Reads a binary forward from a position. */
export class Reader {
  pos: number;
  constructor(
    readonly bytes: Uint8Array,
    start: number,
  ) {
    this.pos = start;
  }

  byte(): number {
    const b = this.bytes[this.pos];
    if (b === undefined) throw new RangeError("truncated module");
    this.pos += 1;
    return b;
  }

  /** An unsigned LEB128 (up to 32 bits, as every index and count is). */
  u32(): number {
    let value = 0;
    let shift = 0;
    for (;;) {
      const b = this.byte();
      value += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return value;
      shift += 7;
      if (shift > 35) throw new RangeError("LEB128 too long");
    }
  }

  /** Skips a signed or unsigned LEB128 of any length up to 64 bits. */
  skipLeb(): void {
    for (let i = 0; i < 10; i += 1) if ((this.byte() & 0x80) === 0) return;
    throw new RangeError("LEB128 too long");
  }

  skip(n: number): void {
    this.pos += n;
  }

  name(): void {
    this.skip(this.u32());
  }

  /** A UTF-8 name. */
  text(): string {
    const length = this.u32();
    const out = new TextDecoder().decode(this.bytes.subarray(this.pos, this.pos + length));
    this.pos += length;
    return out;
  }
}

/** A nullable reference type: a heap type follows (typed function references, GC). */
export const REF_NULLABLE = 0x63;
/** A non-nullable reference type: a heap type follows. */
export const REF = 0x64;

/** Skips one value type. */
export function skipValType(r: Reader): void {
  const t = r.byte();
  if (t === REF_NULLABLE || t === REF) r.skipLeb();
}

/** Skips a table's or a memory's limits. */
export function skipLimits(r: Reader): void {
  const flags = r.byte();
  r.skipLeb();
  if ((flags & 0x01) !== 0) r.skipLeb();
}
