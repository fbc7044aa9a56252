/**
 * Missing pages for post-copy (issue 4's first step): a memory registered
 * with userfaultfd in MISSING mode and dropped, whose first touches block the
 * toucher until the page is placed. A native thread reads the faults and
 * hands them to `on_fault` on this thread; `place` copies pages in (and wakes
 * whoever waits on them). The thread that serves must never touch the
 * missing memory itself, and a memory must not be dropped while anything
 * might still run on it unserved.
 */
import { FerryError } from "../errors.js";
import { nativeAddon, REGISTERED_BYTES, type NativeAddon } from "./_native.js";
import { TRACK_PAGE_BYTES } from "./tracker.js";

function load(): NativeAddon {
  const n = nativeAddon();
  if (!("addon" in n)) throw new FerryError("ERR_UFFD_UNAVAILABLE", `post-copy cannot run here: ${n.reason}`);
  return n.addon;
}

/** A memory whose pages arrive on demand. */
export class MissingPages {
  readonly #native: NativeAddon;
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
