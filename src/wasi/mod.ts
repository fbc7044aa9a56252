/**
 * Ferry's WASI preview1 host, whose state can be captured and restored.
 * The folder's only public entry.
 */

export type {
  Blocker,
  Clock,
  ConnRef,
  InputSource,
  NetPort,
  NetRead,
  OutputSink,
  Preopen,
  StdinRead,
  StdioKinds,
  StreamKind,
  WaitResult,
  WasiConfig,
  WasiDeps,
} from "./deps.js";
export { idleDeps, ProcExit, STREAM_KINDS } from "./deps.js";
export { WasiHost } from "./host.js";
export type { WasiState, FdState, StdioFdState, DirFdState, FileFdState, ListenerFdState, ConnFdState, PendingPollState } from "./state.js";
export { WASI_STATE_VERSION, parse_wasi_state, socket_positions } from "./state.js";
export { Errno, type ErrnoValue } from "./errno.js";
export { grant_preopens, match_preopens, type PreopenMatch, type RestoreGrant } from "./grant.js";
