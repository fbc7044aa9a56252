/** Page tracking (DESIGN.md layer 4): portable and kernel-assisted backends behind one interface, and remote pages for post-copy. */
export { ShadowTracker, TRACK_PAGE_BYTES, type LookOptions, type PageTracker, type TrackedPage } from "./tracker.js";
export { KernelTracker, kernelTrackerAvailability } from "./kernel.js";
export { createTracker, resolveTracker, type TrackerChoice } from "./select.js";
export {
  CHUNK_BYTES,
  CHUNKS_PER_FRAME_MAX,
  describeRanges,
  PAGE_FRAME_HEAD_BYTES,
  pageFrameHead,
  PageFrame,
  PAGES_FLAG_DEMAND,
  RemotePages,
  remotePagesAvailability,
  type RemoteEvents,
  type RemoteStats,
} from "./remote.js";
export {
  RECORD_BYTES_MAX,
  RECORD_HEAD_BYTES,
  RECORD_KEY_BYTES,
  RECORD_TAG_BYTES,
  RecordDirection,
  RecordOpener,
  RecordSealer,
  recordNonce,
  type PageChannelKeys,
} from "./page_records.js";
export { NativeRecordSealer, nativeRecordSealer, RECORD_WIRE_BYTES_MAX } from "./native_seal.js";
export { socketPeek, type SocketPeek } from "./peek.js";
