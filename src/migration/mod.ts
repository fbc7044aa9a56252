/** Migration strategies over transport + runtime + memory (DESIGN.md layer 6). */
export {
  MAX_DOWNTIME_MS_DEFAULT,
  OUT_STATES,
  PRECOPY_ROUNDS_MAX,
  PROGRESS_MS_MIN,
  RECOVER_MS_DEFAULT,
  STRATEGIES,
  migrateOut,
  type MigrationMetrics,
  type MigrationOptions,
  type MigrationProgress,
  type Offer,
  type OutState,
  type PageChannel,
  type PostCopyMetrics,
  type SourceSide,
  type Strategy,
} from "./source.js";
export { PageServer, type PageServerStats } from "./page_server.js";
export { Msg, type Handover } from "./_wire.js";
export { SMALL_MEMORY_BYTES_MAX } from "./_small.js";
export { nativeBulkAvailable, type BulkCipher } from "./_native_bulk.js";
export { COMPRESSIONS, COMPRESS_BELOW_BYTES_PER_S, type Compression } from "./_compress.js";
export { stopCostMs } from "./_precopy.js";
export { OfferSchema, RECOVER_MS_MAX } from "./_schemas.js";
export { migrateIn, STANDBY_IDLE_MS_DEFAULT, type DestinationClock, type DestinationSide, type Landing, type MigrateInOptions } from "./destination.js";
export { DESTINATION_PHASES, PhaseClock, SOURCE_PHASES, type DestinationPhase, type PhasesMs, type SourcePhase } from "./phases.js";
export { STALL_MS_DEFAULT, STALL_MS_MAX, StallWatch } from "./stall.js";
export { CHECKPOINT_FINAL_PAGES_GOAL, CHECKPOINT_ROUNDS_MAX, CheckpointMsg, restoreTo, takeCheckpoint, type CheckpointBegin, type CheckpointMetrics, type CheckpointSide, type CheckpointStored } from "./checkpoint.js";
export { CHECKPOINT_INCREMENTS_MAX, checkCheckpoint, needsCompaction, PagesDigest, rebuildImage, type ChainEntry, type PagesSeen, type StoredCheckpoint } from "./checkpoint_chain.js";
export { CheckpointBeginSchema, CheckpointStoredSchema } from "./_schemas.js";
