/**
 * Bodies of the `ferry-net/2` frames that name a connection (the connection
 * relay's wire, `_net_wire.ts`): fixed binary layouts, little-endian, so the
 * frames of every relayed request and reply (its bytes, and the WRITTEN or
 * CONSUMED that confirm them) cost no JSON on either side. Codecs only:
 * bytes in, checked values out, no I/O. Every decoder throws
 * ERR_NET_PROTOCOL for a body of the wrong length or a field out of range.
 *
 * | body | bytes | fields |
 * |---|---|---|
 * | REF (ARRIVED) | 8 | u32 listener, u32 seq |
 * | OFFSET (SHUTDOWN, CLOSE, CONSUMED, WRITTEN) | 16 | u32 listener, u32 seq, f64 offset |
 * | BYTES (SEND, DATA) | 16 + n | u32 listener, u32 seq, f64 offset of the first byte, n bytes |
 * | END | 9 | u32 listener, u32 seq, u8 how (1 eof, 2 reset) |
 * | LISTENER (UNLISTEN) | 4 | u32 listener |
 * | ID (FLUSH, FLUSHED) | 4 | u32 id |
 *
 * An offset is a whole number of bytes, at most 2^53 - 1 (exact as a double).
 */
import { FerryError } from "../errors.js";
import type { ConnRef } from "../wasi/mod.js";

/** Bytes of a REF body. */
export const NET_REF_BYTES = 8;
/** Bytes of an OFFSET body, and of the head of a BYTES body. */
export const NET_OFFSET_BYTES = 16;
/** Bytes of an END body. */
export const NET_END_BYTES = 9;
/** Bytes of a LISTENER or ID body. */
export const NET_U32_BYTES = 4;

const HOW = { eof: 1, reset: 2 } as const;

function bad(what: string): FerryError {
  return new FerryError("ERR_NET_PROTOCOL", `a ferry-net/2 ${what}`);
}

function view(body: Uint8Array): DataView {
  return new DataView(body.buffer, body.byteOffset, body.byteLength);
}

function exactly(body: Uint8Array, bytes: number, what: string): DataView {
  if (body.length !== bytes) throw bad(`${what} body has ${body.length} bytes, not ${bytes}`);
  return view(body);
}

function offsetAt(v: DataView, what: string): number {
  const offset = v.getFloat64(8, true);
  if (!Number.isSafeInteger(offset) || offset < 0) throw bad(`${what} frame has a bad offset ${offset}`);
  return offset;
}

/** A REF body: `c`. */
export function encodeRef(c: ConnRef): Uint8Array {
  const b = new Uint8Array(NET_REF_BYTES);
  const v = view(b);
  v.setUint32(0, c.listener, true);
  v.setUint32(4, c.seq, true);
  return b;
}

/** Reads a REF body. */
export function decodeRef(body: Uint8Array, what: string): ConnRef {
  const v = exactly(body, NET_REF_BYTES, what);
  return { listener: v.getUint32(0, true), seq: v.getUint32(4, true) };
}

/** An OFFSET body (or a BYTES head when `into` is given, written at its start): `c` and `offset`. */
export function encodeOffset(c: ConnRef, offset: number, into: Uint8Array = new Uint8Array(NET_OFFSET_BYTES)): Uint8Array {
  const v = view(into);
  v.setUint32(0, c.listener, true);
  v.setUint32(4, c.seq, true);
  v.setFloat64(8, offset, true);
  return into;
}

/** Reads an OFFSET body. */
export function decodeOffset(body: Uint8Array, what: string): ConnRef & { offset: number } {
  const v = exactly(body, NET_OFFSET_BYTES, what);
  return { listener: v.getUint32(0, true), seq: v.getUint32(4, true), offset: offsetAt(v, what) };
}

/** Reads a BYTES body; the bytes are a view of `body` (no copy). */
export function decodeBytes(body: Uint8Array, what: string): { conn: ConnRef; offset: number; bytes: Uint8Array } {
  if (body.length < NET_OFFSET_BYTES) throw bad(`${what} body is too short (${body.length} bytes)`);
  const v = view(body);
  return { conn: { listener: v.getUint32(0, true), seq: v.getUint32(4, true) }, offset: offsetAt(v, what), bytes: body.subarray(NET_OFFSET_BYTES) };
}

/** An END body. */
export function encodeEnd(c: ConnRef, how: "eof" | "reset"): Uint8Array {
  const b = new Uint8Array(NET_END_BYTES);
  const v = view(b);
  v.setUint32(0, c.listener, true);
  v.setUint32(4, c.seq, true);
  v.setUint8(8, HOW[how]);
  return b;
}

/** Reads an END body. */
export function decodeEnd(body: Uint8Array): ConnRef & { how: "eof" | "reset" } {
  const v = exactly(body, NET_END_BYTES, "END");
  const how = v.getUint8(8);
  if (how !== HOW.eof && how !== HOW.reset) throw bad(`END frame has a bad kind of end ${how}`);
  return { listener: v.getUint32(0, true), seq: v.getUint32(4, true), how: how === HOW.eof ? "eof" : "reset" };
}

/** A LISTENER or ID body. */
export function encodeU32(n: number): Uint8Array {
  const b = new Uint8Array(NET_U32_BYTES);
  view(b).setUint32(0, n, true);
  return b;
}

/** Reads a LISTENER or ID body. */
export function decodeU32(body: Uint8Array, what: string): number {
  return exactly(body, NET_U32_BYTES, what).getUint32(0, true);
}
