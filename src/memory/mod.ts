/** Page tracking (DESIGN.md layer 4): portable and kernel-assisted backends behind one interface. */
export { ShadowTracker, TRACK_PAGE_BYTES, type PageTracker, type TrackedPage } from "./tracker.js";
export { KernelTracker, kernelTrackerAvailability, populate } from "./kernel.js";
export { createTracker, resolveTracker, type TrackerChoice } from "./select.js";
export { MissingPages } from "./missing.js";
