/**
 * Missing pages for post-copy (issue 4's first step): a memory registered
 * with userfaultfd in MISSING mode and dropped, whose first touches block the
 * toucher until the page is placed. A native thread reads the faults and
 * hands them to `on_fault` on this thread; `place` copies pages in (and wakes
 * whoever waits on them). The thread that serves must never touch the
 * missing memory itself, and a memory must not be dropped while anything
 * might still run on it unserved.
 */
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { FerryError } from "../errors.js";
import { TRACK_PAGE_BYTES } from "./tracker.js";

/** The wasm32 reservation: grown pages are covered too. */
const REGISTERED_BYTES = 4 * 1024 * 1024 * 1024;

interface NativeMissing {
  missingOpen(view: Uint8Array, registered_bytes: number, on_fault: (page: number) => void): unknown;
  missingDrop(handle: unknown, bytes: number): void;
  missingCopy(handle: unknown, byte_offset: number, data: Uint8Array): number;
  missingClose(handle: unknown): void;
}

function load(): NativeMissing {
  const file = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "native", "build", "Release", "ferry_uffd.node");
  try {
    return createRequire(import.meta.url)(file) as NativeMissing;
  } catch (err: unknown) {
    throw new FerryError("ERR_UFFD_UNAVAILABLE", `post-copy needs the native addon, which is not built: ${(err as Error).message.split("\n")[0]}`);
  }
}

/** A memory whose pages arrive on demand. */
export class MissingPages {
  readonly #native: NativeMissing;
  readonly #handle: unknown;
  #faults = 0;
  #placed = 0;

  /** Registers `view`'s memory; nothing is missing until {@link drop}. Throws ERR_UFFD_UNAVAILABLE with the reason. */
  constructor(view: Uint8Array, on_fault: (page: number) => void) {
    this.#native = load();
    try {
      this.#handle = this.#native.missingOpen(view, REGISTERED_BYTES, (page) => {
        this.#faults += 1;
        on_fault(page);
      });
    } catch (err: unknown) {
      throw new FerryError("ERR_UFFD_UNAVAILABLE", `post-copy cannot use userfaultfd here: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Makes the first `bytes` of memory missing. */
  drop(bytes: number): void {
    this.#native.missingDrop(this.#handle, bytes);
  }

  /** Places whole pages at `byte_offset` (pages already there are kept); returns how many it placed. */
  place(byte_offset: number, data: Uint8Array): number {
    if (byte_offset % TRACK_PAGE_BYTES !== 0 || data.length % TRACK_PAGE_BYTES !== 0) throw new RangeError("place whole pages");
    const placed = this.#native.missingCopy(this.#handle, byte_offset, data);
    this.#placed += placed;
    return placed;
  }

  /** Faults served so far, and pages placed (on demand and pushed). */
  get stats(): { faults: number; placed: number } {
    return { faults: this.#faults, placed: this.#placed };
  }

  /** Stops serving; only once every page of the memory is in place. */
  close(): void {
    this.#native.missingClose(this.#handle);
  }
}
