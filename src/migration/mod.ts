/** Migration strategies over transport + runtime + memory (DESIGN.md layer 6). */
export { MAX_DOWNTIME_MS_DEFAULT, PRECOPY_ROUNDS_MAX, migrateOut, type MigrationMetrics, type MigrationOptions, type MigrationProgress, type Offer, type SourceSide, type Strategy } from "./source.js";
export { migrateIn, type DestinationSide, type Landing } from "./destination.js";
