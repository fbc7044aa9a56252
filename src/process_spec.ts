/**
 * What a process is started with, as it crosses the network: the fields a
 * client's run request and a migration's OFFER share (names, pids, the
 * module, arguments, environment, directories, listening addresses, the
 * memory cap), their limits and their schemas. Both sides check them with
 * the same schemas, so a process the API accepted is one an OFFER can carry.
 */
import * as v from "valibot";
import { integer, list, text } from "./validate.js";

/** A module name is a file name: NAME_MAX on Linux. */
export const MODULE_NAME_CHARS_MAX = 255;
/** Arguments of one process: more than any real command line, few enough to bound its image's WASI state. */
export const ARGS_MAX = 1024;
/** Characters of one argument. */
export const ARG_CHARS_MAX = 8192;
/** Environment entries of one process (as for arguments). */
export const ENV_MAX = 1024;
/** Characters of one `K=V` entry. */
export const ENV_CHARS_MAX = 8192;
/** Directories given to one process: each is a preopened fd, and WASI programs scan them all. */
export const DIRS_MAX = 64;
/** Characters of a host or guest path: PATH_MAX on Linux. */
export const PATH_CHARS_MAX = 4096;
/** Listening addresses of one process: each is a socket its home owns for its whole life. */
export const LISTEN_MAX = 16;
/** Files one process may have open: the WASI host's fd table holds at most 1024 descriptors. */
export const OPEN_FILES_MAX = 1024;

/** Bytes of a wasm page: memory sizes and caps are whole pages. */
export const WASM_PAGE_BYTES = 65536;
/** wasm32 addresses 4 GiB at most. */
export const WASM_MEMORY_BYTES_MAX = 4 * 1024 * 1024 * 1024;

/** Node names (docs/cluster.md). */
export const NODE_NAME_PATTERN = /^[A-Za-z0-9_]{1,32}$/;
/** Pids: the home node's name, a dash, a number unique on that node. */
export const PID_PATTERN = /^([A-Za-z0-9_]{1,32})-(\d{1,15})$/;
/** "HOST:PORT" with an IPv6 host in brackets. */
const HOST_PORT_PATTERN = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s/[\]]+)):(\d{1,5})$/;

/** Splits "HOST:PORT" (IPv6 hosts in brackets, port 0-65535), or null if it is not one. */
export function splitHostPort(value: string): { host: string; port: number } | null {
  const m = HOST_PORT_PATTERN.exec(value);
  const port = m === null ? NaN : Number(m[3]);
  if (m === null || !(port <= 65535)) return null;
  return { host: m[1] ?? (m[2] as string), port };
}

/**
 * Whether a host path is absolute and already normal (no `.`, `..`, `//` or
 * trailing `/`): what it names is then what it says, and a check of the
 * path against the node's allowed roots means what it appears to.
 */
export function isNormalAbsolutePath(value: string): boolean {
  return value.startsWith("/") && (value === "/" || (!value.endsWith("/") && !/\/\.{0,2}(?=\/|$)/.test(value)));
}

/** A node's name. */
export const NodeName = v.pipe(v.string(), v.regex(NODE_NAME_PATTERN, "must be a node name (1-32 letters, digits or _)"));
/** A pid. */
export const Pid = v.pipe(v.string(), v.regex(PID_PATTERN, "must be a pid (NODE-N)"));
/** A module's SHA-256, lower-case hex. */
export const Sha256 = v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/, "must be a SHA-256 in lower-case hex"));
/** A module's name (shown in `ferry ps`, given to the guest as argv[0]). */
export const ModuleName = text(MODULE_NAME_CHARS_MAX, 1);
/** A host path: absolute and normal. */
export const HostPath = v.pipe(text(PATH_CHARS_MAX, 1), v.check(isNormalAbsolutePath, "must be an absolute path without ., .. or a trailing /"));
/** "HOST:PORT". */
export const HostPort = v.pipe(v.string(), v.maxLength(300, "must be HOST:PORT"), v.check((s) => splitHostPort(s) !== null, "must be HOST:PORT"));

/** The guest's arguments (after argv[0]). */
export const Args = list(text(ARG_CHARS_MAX), ARGS_MAX);
/** The guest's environment, `K=V` each. */
export const Env = list(v.pipe(text(ENV_CHARS_MAX), v.regex(/^[^=]+=/, "must be K=V")), ENV_MAX);
/** Host directories given to the guest, each seen at `guest`. */
export const Dirs = list(v.object({ host: HostPath, guest: text(PATH_CHARS_MAX, 1) }), DIRS_MAX);
/** Addresses its home listens on for it. */
export const Listen = list(HostPort, LISTEN_MAX);
/** A memory size: whole wasm pages up to 4 GiB. */
export const MemoryBytes = v.pipe(integer(0, WASM_MEMORY_BYTES_MAX), v.multipleOf(WASM_PAGE_BYTES, `must be a whole number of ${WASM_PAGE_BYTES}-byte wasm pages`));
/** A memory cap: at least one wasm page. */
export const MemoryCap = v.pipe(MemoryBytes, v.minValue(WASM_PAGE_BYTES, `must be at least ${WASM_PAGE_BYTES}`));
