/**
 * Kernel-assisted page tracking: userfaultfd asynchronous write-protect and
 * the PAGEMAP_SCAN ioctl, through the native addon in native/ (Linux >= 6.7,
 * root or CAP_SYS_PTRACE or access to /dev/userfaultfd). A round costs a
 * page-table walk instead of a compare of every page.
 */
import { FerryError } from "../errors.js";
import { nativeAddon, REGISTERED_BYTES, type NativeAddon } from "../native.js";
import { TRACK_PAGE_BYTES, type LookOptions, type PageTracker, type TrackedPage } from "./tracker.js";

function load(): NativeAddon | null {
  const n = nativeAddon();
  return "addon" in n ? n.addon : null;
}

/** Whether the kernel tracker works here; if not, why. Probes once. */
export function kernelTrackerAvailability(): { available: boolean; reason: string } {
  const n = nativeAddon();
  if (!("addon" in n)) return { available: false, reason: n.reason };
  if (probed !== undefined) return probed;
  try {
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
    const handle = n.addon.create(new Uint8Array(memory.buffer), REGISTERED_BYTES);
    n.addon.close(handle);
    probed = { available: true, reason: "" };
  } catch (err: unknown) {
    probed = { available: false, reason: (err as Error).message };
  }
  return probed;
}
let probed: { available: boolean; reason: string } | undefined;

/** Finds changed pages with userfaultfd write-protect and PAGEMAP_SCAN. */
export class KernelTracker implements PageTracker {
  readonly name = "userfaultfd";
  readonly #native: NativeAddon;
  #handle: unknown = null;

  constructor() {
    const availability = kernelTrackerAvailability();
    const n = load();
    if (!availability.available || n === null) {
      throw new FerryError("ERR_TRACKER_UNAVAILABLE", `the userfaultfd page tracker cannot be used here: ${availability.reason}`);
    }
    this.#native = n;
  }

  *changed(memory: Uint8Array, options: LookOptions = {}): Generator<TrackedPage> {
    if (this.#handle === null) {
      // First look: arm every page, then report the non-zero ones. A write
      // after arming is caught by the next look.
      this.#handle = this.#native.create(memory, REGISTERED_BYTES);
      const live = Buffer.from(memory.buffer, memory.byteOffset, memory.length);
      const zero = Buffer.alloc(TRACK_PAGE_BYTES);
      for (let at = 0; at < memory.length; at += TRACK_PAGE_BYTES) {
        if (zero.compare(live, at, at + TRACK_PAGE_BYTES) !== 0) yield { index: at / TRACK_PAGE_BYTES, data: memory.subarray(at, at + TRACK_PAGE_BYTES) };
      }
      return;
    }
    const ranges = this.#native.scan(this.#handle, memory.length, options.last !== true);
    for (let i = 0; i + 1 < ranges.length; i += 2) {
      for (let page = ranges[i] as number; page < (ranges[i + 1] as number); page += 1) {
        yield { index: page, data: memory.subarray(page * TRACK_PAGE_BYTES, (page + 1) * TRACK_PAGE_BYTES) };
      }
    }
  }

  arm(memory: Uint8Array): void {
    if (this.#handle !== null) throw new FerryError("ERR_TRACKER_ARGS", "arm() on a tracker that has looked already");
    this.#handle = this.#native.create(memory, REGISTERED_BYTES);
  }

  changedRuns(memory: Uint8Array, options: LookOptions = {}): Uint32Array {
    if (this.#handle !== null) return this.#native.scan(this.#handle, memory.length, options.last !== true);
    // Never looked: what changed is every non-zero page, found as `changed` finds them (and armed the same way).
    const runs: number[] = [];
    for (const { index } of this.changed(memory)) {
      if (runs.length > 0 && runs[runs.length - 1] === index) runs[runs.length - 1] = index + 1;
      else runs.push(index, index + 1);
    }
    return Uint32Array.from(runs);
  }

  close(): void {
    if (this.#handle !== null) this.#native.close(this.#handle);
    this.#handle = null;
  }
}
