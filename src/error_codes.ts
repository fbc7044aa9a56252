/**
 * Every error code Ferry uses, in one place: its HTTP status (what a node
 * answers when a request fails with it) and what it means. `FerryError`'s
 * `code` is typed as a key of this registry, so a code that is not here does
 * not compile; codes that arrive from elsewhere (a peer's answer, an ERROR
 * frame, the native addon) go through {@link knownCode}.
 *
 * To add a code: add an entry here (keep the groups), and a row to the error
 * table in docs/cluster.md (`src/error_codes_test.ts` checks that the table
 * and this registry agree).
 */

/** One registered code. */
export interface ErrorCodeInfo {
  /** HTTP status of a control API answer that fails with this code. */
  readonly status: number;
  /** One line: what happened, for the docs and for operators. */
  readonly meaning: string;
}

/** The registry: code → HTTP status and meaning. */
export const ERROR_CODES = {
  // Requests and their input.
  ERR_BAD_REQUEST: { status: 400, meaning: "A request's body, query or path failed its schema; the message names the field." },
  ERR_NOT_FOUND: { status: 404, meaning: "No such path or method in the control API." },
  ERR_BODY_TOO_LARGE: { status: 413, meaning: "A request body is larger than the node reads." },
  ERR_FORBIDDEN: { status: 403, meaning: "The node does not allow this: a directory outside its allowed roots, a privileged port, an action the caller may not take." },
  ERR_UNAUTHENTICATED: { status: 401, meaning: "The client did not prove who it is (no or a bad client certificate or token)." },
  ERR_TOKEN: { status: 401, meaning: "A join token is malformed, unknown, used, expired, or for another role or name." },
  ERR_SESSION: { status: 401, meaning: "A dashboard login token or session cookie is missing, malformed, unknown, used or expired: run ferry dashboard again." },
  ERR_CSRF: { status: 403, meaning: "A dashboard action came without its session's CSRF token, or from a page of another origin." },
  ERR_NO_AUTHORITY: { status: 409, meaning: "This node does not hold the cluster CA's key, so it cannot issue join tokens or certificates." },
  ERR_NO_CREDENTIALS: { status: 401, meaning: "The CLI found no client credential (CLI only): run ferry up, or ferry login with a token." },
  ERR_QUOTA: { status: 503, meaning: "A quota of the node is used up (processes, bytes held by incoming migrations); try later or another node." },
  ERR_MEMORY_LIMIT: { status: 400, meaning: "A memory cap is over the node's maximum, or a process or offer needs more memory than its cap." },
  ERR_USAGE: { status: 400, meaning: "The command line is wrong (CLI only; exit status 2)." },

  // Names and addresses.
  ERR_NODE_NAME: { status: 400, meaning: "Not a valid node name (1-32 letters, digits or _)." },
  ERR_ADDRESS: { status: 400, meaning: "Not a HOST:PORT address." },
  ERR_ADDRESS_IN_USE: { status: 409, meaning: "A node cannot listen on its address: something else listens there." },
  ERR_LISTEN: { status: 409, meaning: "A node cannot listen where it was asked to (its own address, or a process's --listen)." },
  ERR_TLS_CONFIG: { status: 500, meaning: "The node's TLS setup (certificates, keys, trust roots) is unusable." },

  // Modules.
  ERR_MODULE_HASH: { status: 400, meaning: "Module bytes do not hash to the SHA-256 named, or the name is not a SHA-256." },
  ERR_MODULE_TOO_LARGE: { status: 413, meaning: "A module is larger than the node accepts (--max-module-size)." },
  ERR_MODULE_MISSING: { status: 409, meaning: "The module is not on the node: upload it first." },
  ERR_INSTRUMENT_INVALID: { status: 400, meaning: "The module is not valid WebAssembly." },
  ERR_INSTRUMENT_UNSUPPORTED: { status: 400, meaning: "The module uses something Ferry cannot run or capture (no memory, memory64, imported memory...)." },
  ERR_INSTRUMENT_FAILED: { status: 500, meaning: "Binaryen failed while instrumenting the module; the message names the module, the step and Binaryen's own words." },
  ERR_INSTRUMENT_LIMIT: { status: 413, meaning: "Instrumenting the module needs more memory than Binaryen can have (4 GiB) or than the instrumenter allows; the message names the module." },

  // Processes.
  ERR_NO_SUCH_PROCESS: { status: 404, meaning: "No such process (on this node, or at all)." },
  ERR_NO_SUCH_NODE: { status: 404, meaning: "No node of that name in the cluster." },
  ERR_NO_SUCH_SESSION: { status: 404, meaning: "No such post-copy session on the node (any more)." },
  ERR_PROCESS_STATE: { status: 409, meaning: "The process is not in a state that allows this (already moving, ended, not running here)." },
  ERR_PROCESS_ENDED: { status: 409, meaning: "The process has ended." },
  ERR_OUTPUT_GAP: { status: 409, meaning: "Output arrived before what precedes it; the sender retries." },
  ERR_MISSING_DIRECTORY: { status: 409, meaning: "A directory the process is given does not exist on the node (it lies under an allowed root)." },
  ERR_MISSING_FILE: { status: 409, meaning: "A file the process has open does not exist on the destination." },
  ERR_GUEST_TRAP: { status: 500, meaning: "The guest trapped." },
  ERR_SUSPEND_FAILED: { status: 409, meaning: "The guest could not be suspended at a safe point." },
  ERR_WORKER: { status: 500, meaning: "A process's worker thread failed." },
  ERR_RELAY_FAILED: { status: 502, meaning: "A process's output could not reach its home node." },
  ERR_LOCATION_STALE: { status: 409, meaning: "A location update older than (or contradicting) the move the home has recorded; refused and never retried." },
  ERR_LOCATION_PENDING: { status: 409, meaning: "A location update or exit report from a move the home has not recorded yet; the sender retries." },
  ERR_NOT_RUNNER: { status: 409, meaning: "An exit report from a node that is not the process's recorded runner (or of an earlier move); refused." },
  ERR_REQUIREMENT: { status: 409, meaning: "The node's labels do not meet the process's requirements (--require k=v), or the process is pinned (--pin)." },
  ERR_NODE_DRAINING: { status: 409, meaning: "The node is drained (ferry drain): nothing new starts or lands there until ferry undrain." },
  ERR_NO_PLACE: { status: 503, meaning: "No node known meets the process's requirements, with the memory free and not drained." },
  ERR_STATE_FILE: { status: 500, meaning: "A node's state file (DATA/state/node.json or its journal) is damaged or unreadable; the message says where and what to do." },

  // The cluster directory (docs/directory.md).
  ERR_DIRECTORY_URL: { status: 400, meaning: "A --directory URL is not etcd://HOST:PORT,... nor https://HOST:PORT (or http:// with --insecure)." },
  ERR_DIRECTORY_UNAVAILABLE: { status: 503, meaning: "The cluster directory did not answer (etcd or ferry up's embedded directory); the caller retries." },
  ERR_DIRECTORY_CONFLICT: { status: 409, meaning: "A process record of that pid already exists in the directory; records are never overwritten." },
  ERR_DIRECTORY_FILE: { status: 500, meaning: "The embedded directory's file is damaged or unreadable; the message says where." },
  ERR_LEASE_EXPIRED: { status: 404, meaning: "A membership lease is unknown or expired: the node has been declared dead and must take a new lease." },

  // Images and restores.
  ERR_IMAGE_MAGIC: { status: 400, meaning: "Not a Ferry image (bad magic)." },
  ERR_IMAGE_VERSION: { status: 400, meaning: "An image of a format version this build does not read." },
  ERR_IMAGE_TRUNCATED: { status: 400, meaning: "The image ends early." },
  ERR_IMAGE_CHECKSUM: { status: 400, meaning: "A section of the image fails its checksum." },
  ERR_IMAGE_MALFORMED: { status: 400, meaning: "The image is well-framed but its content is inconsistent." },
  ERR_IMAGE_MODULE_MISMATCH: { status: 400, meaning: "The image was taken from another module." },
  ERR_IMAGE_LIMIT: { status: 400, meaning: "The image exceeds a limit of the format (sizes, counts)." },
  ERR_IMAGE_SIGNATURE: { status: 502, meaning: "The image's signature is missing, bad, or by a key the resuming side does not trust (502: a migration's destination refused it)." },
  ERR_IMAGE_DECRYPT: { status: 400, meaning: "The image cannot be decrypted with the keys here, or its ciphertext was changed." },
  ERR_PAGE_RECORD_AUTH: { status: 502, meaning: "A sealed record of a post-copy page channel failed its check (changed, replayed or out of order): the channel is dropped as broken." },
  ERR_PAGE_RECORD_LIMIT: { status: 502, meaning: "A sealed record of a post-copy page channel is longer than a record may be: the channel is dropped as broken." },
  ERR_PEEK_ARGS: { status: 500, meaning: "The native addon's peek was called with bad arguments (a programming error)." },
  ERR_COPY_ARGS: { status: 500, meaning: "The native addon's copyOut was called with bad arguments (a programming error)." },
  ERR_PEEK: { status: 500, meaning: "The native addon could not look at a socket's first bytes (recv with MSG_PEEK failed)." },
  ERR_TIMES_ARGS: { status: 500, meaning: "The native addon's file-times setter was called with bad arguments (a programming error)." },
  ERR_DUP_ARGS: { status: 500, meaning: "The native addon's dupFd was called with bad arguments (a programming error)." },
  ERR_DUP: { status: 500, meaning: "The native addon could not duplicate a link lane's socket (fcntl F_DUPFD_CLOEXEC failed: out of descriptors)." },
  ERR_SEAL_ARGS: { status: 500, meaning: "The native page-record sealer was called with bad arguments (a programming error)." },
  ERR_SEAL: { status: 500, meaning: "The native page-record sealer could not be set up or could not seal (OpenSSL refused, or out of memory)." },
  ERR_BULK_SEND: { status: 502, meaning: "The native thread writing a stop-copy's page records could not start or write (out of memory, or the socket failed other than by closing): the migration fails and the process keeps running at the source." },
  ERR_BULK_RECV: { status: 502, meaning: "The native thread reading a stop-copy's page records into the standby failed (out of memory, or the socket failed): nothing runs at the destination, and the process keeps running at the source." },
  ERR_KEY_FILE: { status: 500, meaning: "A local key file cannot be made or read, or others can read it." },
  ERR_MODULE_NOT_FILE: { status: 400, meaning: "A module path is not a regular file (/dev/zero, a FIFO, a directory)." },
  ERR_RESTORE_FILE: { status: 409, meaning: "A file the image had open is missing here." },
  ERR_RESTORE_PREOPEN: { status: 409, meaning: "A directory the image was given is missing here." },
  ERR_RESTORE_STATE: { status: 502, meaning: "The image's state (WASI, globals, stack, memory) does not fit its module or cannot be restored (502: a migration's destination refused it)." },

  // Migrations.
  ERR_MIGRATION_REFUSED: { status: 409, meaning: "The destination refused the migration; the process keeps running at the source." },
  ERR_MIGRATION_FAILED: { status: 502, meaning: "The migration failed; the process keeps running at the source." },
  ERR_MIGRATION_STALLED: { status: 504, meaning: "The migration made no progress for the node's --stall-timeout and was aborted; the process keeps running at the source." },
  ERR_MIGRATION_PROTOCOL: { status: 502, meaning: "A frame of the migration protocol is malformed or unexpected." },
  ERR_UFFD_UNAVAILABLE: { status: 409, meaning: "The destination cannot take post-copy or hybrid migrations (no userfaultfd); the reason follows." },
  ERR_TRACKER_UNAVAILABLE: { status: 409, meaning: "The userfaultfd page tracker cannot be used here." },
  ERR_POSTCOPY_LOST: { status: 502, meaning: "A post-copy page channel stayed down past recover_ms: the process ended as lost." },
  ERR_POSTCOPY_PROTOCOL: { status: 502, meaning: "A post-copy page channel frame is malformed or unexpected." },
  ERR_POSTCOPY: { status: 500, meaning: "A post-copy session could not be set up on this node." },

  // Checkpoints.
  ERR_CHECKPOINT_PROTOCOL: { status: 502, meaning: "A frame of the checkpoint protocol is malformed or unexpected." },
  ERR_CHECKPOINT_CHAIN: { status: 409, meaning: "The keeper holds no chain this checkpoint follows; the runner starts a new chain with a base." },
  ERR_CHECKPOINT_LIMIT: { status: 507, meaning: "A checkpoint, or the checkpoints a keeper holds, would pass the keeper's limit." },
  ERR_NO_KEEPER: { status: 503, meaning: "No other node is up to keep a checkpoint: checkpoints are stored on a node other than the runner." },
  ERR_NO_CHECKPOINT: { status: 409, meaning: "The process has no stored checkpoint to resume from." },

  // Between nodes.
  ERR_PEER: { status: 502, meaning: "A peer answered with an error this node does not know (the peer's code is in the message)." },
  ERR_PEER_UNREACHABLE: { status: 502, meaning: "A peer node did not answer, or answered with something that is not the protocol." },
  ERR_PEER_UNAUTHENTICATED: { status: 502, meaning: "A peer node could not be authenticated (its certificate is not trusted or names another node)." },
  ERR_LINK_PROTOCOL: { status: 502, meaning: "A frame of the link channel is malformed or unexpected." },
  ERR_NET_PROTOCOL: { status: 502, meaning: "A frame of the connection relay is malformed or unexpected." },
  ERR_FRAME_TOO_LARGE: { status: 502, meaning: "A peer sent (or a sender tried) a frame over FRAME_BYTES_MAX." },
  ERR_FRAME_MALFORMED: { status: 502, meaning: "A frame header is malformed." },
  ERR_CONNECTION_CLOSED: { status: 502, meaning: "A framed connection closed." },
  ERR_TRANSPORT_TIMEOUT: { status: 504, meaning: "No frame arrived in time on a framed connection." },
  ERR_TRANSFER_TIMEOUT: { status: 504, meaning: "A module sent between nodes did not arrive within its deadline (an allowance plus its size at a floor rate): the peer stalled or the link is too slow." },

  // The CLI's side of the control API.
  ERR_CLUSTER_UNREACHABLE: { status: 502, meaning: "No node answers at the cluster address (CLI only)." },
  ERR_CLUSTER_CONNECTION: { status: 502, meaning: "A connection to a node failed mid-request (CLI only)." },
  ERR_CLUSTER_PROTOCOL: { status: 502, meaning: "A node answered something the CLI cannot read (CLI only)." },
  ERR_NODE_DOWN: { status: 502, meaning: "The node named is down (CLI only)." },

  // Raised by the native addon (native/*.c) as plain errors with these codes.
  ERR_UFFD: { status: 500, meaning: "A userfaultfd system call failed in the native addon." },
  ERR_UFFD_ARGS: { status: 500, meaning: "The native post-copy code was called with bad arguments (a bug)." },
  ERR_POSTCOPY_OPEN: { status: 500, meaning: "The native addon could not open a post-copy session." },
  ERR_POPULATE: { status: 500, meaning: "Backing a standby's memory in advance failed in the native addon." },
  ERR_DISCARD: { status: 500, meaning: "Giving a moved process's memory back to the kernel failed in the native addon." },
  ERR_TRACKER_ARGS: { status: 500, meaning: "The native page tracker was called with bad arguments (a bug)." },
  ERR_TRACKER_SCAN: { status: 500, meaning: "A page tracker scan failed in the native addon." },

  // Faults.
  ERR_INTERNAL: { status: 500, meaning: "A fault of the node itself (not of the request); the message says what." },
} as const satisfies Record<`ERR_${string}`, ErrorCodeInfo>;

/** A registered error code. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** Whether `value` is a registered code. */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && Object.hasOwn(ERROR_CODES, value);
}

/**
 * A code that came from outside this process (a peer's answer, an ERROR
 * frame, a worker), or `fallback` when it is not registered here: an
 * unknown code never passes for a known one.
 */
export function knownCode(value: unknown, fallback: ErrorCode): ErrorCode {
  return isErrorCode(value) ? value : fallback;
}

/** The HTTP status a node answers for `code`. */
export function statusOf(code: ErrorCode): number {
  return ERROR_CODES[code].status;
}
