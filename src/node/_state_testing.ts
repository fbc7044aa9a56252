/** A saved home-table entry for tests and benchmarks of the node's state file: a running process, `over` changing any field. */
import type { SavedHome } from "./node_state.js";

export function savedHome(pid: string, over: Partial<SavedHome> = {}): SavedHome {
  return {
    pid,
    home: "n1",
    node: "n1",
    state: "running",
    exit: null,
    moves: 0,
    previous: null,
    started_unix_ms: 1,
    module_sha256: "a".repeat(64),
    module_name: "x.wasm",
    args: ["1"],
    env: [],
    dirs: [],
    listen: [],
    memory_max_bytes: 65536,
    ...over,
  };
}
