/** Instrumentation: plain WASI module in, suspendable module out (DESIGN.md layer 1). */
export {
  DEFAULT_BLOCKING_IMPORTS,
  GLOBAL_EXPORT_PREFIX,
  INSTRUMENTER_VERSION,
  POLL_BUDGET_INITIAL,
  POLL_IMPORT,
  RESTART_POLL_IMPORT,
  instrumentModule,
  moduleHash,
  type InstrumentInfo,
  type InstrumentOptions,
  type Instrumented,
} from "./instrument.js";
export { defaultCacheDir, inSharedMemory, loadInstrumented, type CacheOptions, type CachedInstrumented, type InstrumentThread } from "./cache.js";
export { capMemory, holdBackData, type HeldSegment } from "./_binary.js";
export { STAGE_TEXT, type InstrumentStage, type StageListener } from "./stages.js";
