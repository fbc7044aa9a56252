/** Page tracking (DESIGN.md layer 4). */
export { ShadowTracker, TRACK_PAGE_BYTES, type PageTracker, type TrackedPage } from "./tracker.js";
