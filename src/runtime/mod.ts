/** Runtime: runs one process in a worker; suspend, capture, restore, resume (DESIGN.md layer 2). */
export { GuestProcess, type ExitStatus, type LinkHooks, type NetHooks, type ProcessIo, type ProcessSpec, type StandbyOptions, type StartTimings, type Suspension } from "./process.js";
export { MESSAGE_BYTES_MAX, PID_BYTES_MAX, type InboxMessage } from "./_inbox.js";
export { OUTBOX_MAX, THROTTLE_PCT_MAX } from "./_control.js";
export { borrowedBytes } from "./_stack.js";
export { End, NET_AREA_BYTES, NET_SEND_WINDOW, NET_SLOTS, NetArea } from "./_net_area.js";
export type { OutputTarget, SuspendedState } from "./_protocol.js";
export type { GuestUsage } from "./_usage.js";
export { readImageFile, writeImageFile, type ReadImageOptions, type WriteImageOptions } from "./image_file.js";
export { ENCRYPTION_KEY_FILE, KEYS_DIR, SIGNING_KEY_FILE, localEncryptionKey, localEnvelopeKeys, localSigner, localTrust } from "./image_keys.js";
export { MODULE_BYTES_MAX, readModuleFile } from "./module_file.js";
export { STDIN_READ_AHEAD_BYTES_MAX } from "./stdin.js";
export { hostStdioKinds, hostStreamKind } from "./stdio_kinds.js";
export { collectNow } from "./_reclaim.js";
export { HIBERNATE_AFTER_MS_DEFAULT, HIBERNATE_AFTER_MS_MAX } from "./_hibernate.js";
export { claimWarm, keepWarm, refillWarm, WARM_WORKERS_MAX, warmWorkers } from "./_warm.js";
export { workerCode, workerCodeCache } from "./_worker_code.js";
