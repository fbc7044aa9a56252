/**
 * The source's sealer of page records in native code (native/seal_napi.c):
 * the same records as {@link RecordSealer} (docs/cluster.md, "Sealed
 * records"), byte for byte, but sealed straight from guest memory into a
 * buffer the caller reuses. Sealing in JavaScript costs a fresh 1 MiB
 * buffer per record (Node's cipher returns new memory, which the kernel
 * must fault in and clear), about three times the encryption itself; the
 * post-copy push is bound by it. A codec: no I/O.
 */
import { nativeAddon, type NativeAddon } from "../native.js";
import { RECORD_BYTES_MAX, RECORD_HEAD_BYTES, RECORD_KEY_BYTES, RECORD_TAG_BYTES, type RecordDirection } from "./page_records.js";

/** Bytes of the largest record on the wire: the buffer each sealed record needs. */
export const RECORD_WIRE_BYTES_MAX = RECORD_HEAD_BYTES + RECORD_BYTES_MAX + RECORD_TAG_BYTES;

/** Seals one direction's records natively, numbering them from 0; see {@link nativeRecordSealer}. */
export class NativeRecordSealer {
  readonly #addon: NativeAddon;
  #handle: unknown;
  #sealed = 0;

  /** Use {@link nativeRecordSealer}, which says when the addon is missing. */
  constructor(addon: NativeAddon, key: Uint8Array, direction: RecordDirection) {
    if (key.length !== RECORD_KEY_BYTES) throw new RangeError(`a page-channel key has ${RECORD_KEY_BYTES} bytes, not ${key.length}`);
    this.#addon = addon;
    this.#handle = addon.sealerCreate(key, direction);
  }

  /** Records sealed so far: the next one's number. */
  get sealed(): number {
    return this.#sealed;
  }

  /**
   * Seals `head` followed by `body` (one whole frame, 1 to RECORD_BYTES_MAX
   * bytes in all) as one record into `out`, which must hold it and must not
   * overlap either; returns the record's bytes, from out[0].
   */
  sealInto(head: Uint8Array, body: Uint8Array | null, out: Uint8Array): number {
    if (this.#handle === null) throw new RangeError("this sealer is closed");
    const bytes = this.#addon.sealerSeal(this.#handle, head, body, out);
    this.#sealed += 1;
    return bytes;
  }

  /**
   * Seals `parts` (1 to 6, whole frames) as one record and writes all of it
   * to socket `fd`, waiting at most `wait_ms` for room: 0, or a positive
   * errno, after which the stream may hold part of the record. Null where
   * the addon predates it.
   */
  send(fd: number, parts: Uint8Array[], wait_ms: number): number | null {
    if (this.#handle === null) throw new RangeError("this sealer is closed");
    if (this.#addon.sealerSend === undefined) return null;
    const err = this.#addon.sealerSend(this.#handle, fd, parts, wait_ms);
    this.#sealed += 1;
    return err;
  }

  /** Wipes the key schedule now (idempotent); sealing after throws. */
  close(): void {
    if (this.#handle === null) return;
    this.#addon.sealerFree(this.#handle);
    this.#handle = null;
  }
}

/** A native sealer of `direction`'s records under `key`, or null where the addon is not built (seal with RecordSealer then). */
export function nativeRecordSealer(key: Uint8Array, direction: RecordDirection): NativeRecordSealer | null {
  const n = nativeAddon();
  // An addon built before the sealer existed lacks it: seal in JavaScript until it is rebuilt.
  if (!("addon" in n) || typeof n.addon.sealerCreate !== "function") return null;
  return new NativeRecordSealer(n.addon, key, direction);
}
