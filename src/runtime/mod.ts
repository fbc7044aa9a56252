/** Runtime: runs one process in a worker; suspend, capture, restore, resume (DESIGN.md layer 2). */
export { GuestProcess, type ExitStatus, type ProcessIo, type ProcessSpec, type StartTimings, type Suspension } from "./process.js";
export type { OutputTarget, SuspendedState } from "./_protocol.js";
export { readImageFile, writeImageFile } from "./image_file.js";
export { STDIN_READ_AHEAD_BYTES_MAX } from "./stdin.js";
