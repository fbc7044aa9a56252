/** The node daemon (DESIGN.md layer 7). */
export { FerryNode, type NodeInfo, type NodeOptions } from "./node.js";
export { checkNodeName, makePid, parseAddress, pidHome } from "./names.js";
export type { ProcessStatus, RunRequest } from "./process_table.js";
export { httpRequest } from "./_http.js";
export { Dialer, toolDialer } from "./_dialer.js";
export { redeemToken, type JoinAnswer } from "./_join.js";
export { connectData } from "./_migrate.js";
export { defaultLimits, halfTheMachine, type NodeLimits } from "./limits.js";
export { PRIVILEGED_PORTS_BELOW, type NodePolicy } from "./policy.js";
export { openDirectory, serveDirectory, directoryTransport, type DirectoryServer } from "./directory_http.js";
export { NodeDirectory, describeRecord, statusOfRecord, type NodeDeadEvent, type NodeDeadListener } from "./cluster_directory.js";
export { FileCheckpointRecords, isNewer, type CheckpointRecord, type CheckpointRecords } from "./_checkpoint_records.js";
export { restoreProcess, type RestoreResult } from "./_checkpoint_routes.js";
export { NodeStatsSchema } from "./_dashboard_api.js";
