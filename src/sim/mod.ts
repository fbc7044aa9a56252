/**
 * The load simulator: a seeded discrete-event simulation of a Ferry cluster
 * that runs the policy layer unchanged (`ferry sim`). See docs/load.md.
 */
export { PARTITION_NODES_MIN, PARTITIONS_MAX, simConfig, SIM_CONFIG_DEFAULT, SIM_NODES_MAX, SIM_PROCESSES_MAX, type EntryMode, type SimChanges, type SimConfig } from "./config.js";
export { simulate } from "./simulate.js";
export type { ImbalanceSample, SimReport } from "./report.js";
export { simulateThreaded } from "./threads.js";
