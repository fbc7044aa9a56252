/**
 * The cluster directory (DESIGN.md layer 9, docs/directory.md): process
 * records and node membership behind one interface, with its backends side
 * by side — in memory (tests), embedded (file-backed, served by `ferry up`),
 * remote (the client of a served one) and etcd — and the membership a node
 * holds (lease, heartbeat, the others' states). This is the folder's only
 * public entry.
 */
export {
  applyChange,
  CheckpointRefSchema,
  isEnded,
  LEASE_TTL_MS_DEFAULT,
  LEASE_TTL_MS_MAX,
  LEASE_TTL_MS_MIN,
  MemberSchema,
  NewProcessSchema,
  PROCESS_STATES,
  REASON_CHARS_MAX,
  ProcessChangeSchema,
  ProcessRecordSchema,
  type CasResult,
  type CheckpointRef,
  type Directory,
  type DirectoryChange,
  type DirectoryWatcher,
  type Lease,
  type Member,
  type MemberState,
  type NewProcess,
  type ProcessChange,
  type ProcessFilter,
  type ProcessRecord,
  type ProcessState,
} from "./types.js";
export { MemoryDirectory, type MemoryDirectoryOptions, type MemorySnapshot } from "./memory.js";
export { openEmbeddedDirectory, DIRECTORY_FILE_VERSION } from "./embedded.js";
export { RemoteDirectory, ChangeSchema, type DirectoryTransport } from "./remote.js";
export type { EtcdDirectory, EtcdOptions } from "./etcd.js";
export { openEtcdDirectory } from "./open_etcd.js";
export { Membership, type MemberChange, type MembershipOptions } from "./membership.js";
