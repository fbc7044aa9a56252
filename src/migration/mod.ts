/** Migration strategies over transport + runtime + memory (DESIGN.md layer 6). */
export {
  MAX_DOWNTIME_MS_DEFAULT,
  PRECOPY_ROUNDS_MAX,
  RECOVER_MS_DEFAULT,
  STRATEGIES,
  migrateOut,
  type MigrationMetrics,
  type MigrationOptions,
  type MigrationProgress,
  type Offer,
  type PageChannel,
  type PostCopyMetrics,
  type SourceSide,
  type Strategy,
} from "./source.js";
export { PageServer, type PageServerStats } from "./page_server.js";
export type { Handover } from "./_wire.js";
export { migrateIn, type DestinationSide, type Landing } from "./destination.js";
