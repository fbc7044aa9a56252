/**
 * Schemas of what nodes send each other outside the migration protocol:
 * the node-to-node endpoints' bodies (output relay, exit, location,
 * deliveries), peers' answers this node acts on, and the connection relay's
 * JSON frames (docs/cluster.md, docs/links.md, docs/networking.md). A peer is as untrusted as a client: everything it
 * sends is checked before anything acts on it.
 */
import * as v from "valibot";
import { BATCH_MESSAGES_MAX } from "../links/mod.js";
import { LISTEN_MAX, NodeName } from "../process_spec.js";
import { MESSAGE_BYTES_MAX, NET_SLOTS, PID_BYTES_MAX } from "../runtime/mod.js";
import { base64, integer, list, text, Uint } from "../validate.js";
import { JSON_BODY_BYTES_MAX } from "./_http.js";

/** Characters of a trap's or a loss's message kept: a sentence or two, never a dump. */
export const STATUS_MESSAGE_CHARS_MAX = 4096;

/** Chunks in one output relay request: the relay sends at most 256 KiB per request, in chunks of at least a byte each. */
const OUTPUT_CHUNKS_MAX = 256 * 1024;

/** Peers listed by one node's answer (its own view of the cluster). */
const PEERS_MAX = 1024;

/** A u32 on the wire (listener numbers, connection sequence numbers). */
const U32 = integer(0, 0xffff_ffff);

/** How a process ended (`ExitStatus`). */
export const ExitStatusSchema = v.variant("kind", [
  v.object({ kind: v.literal("exit"), code: integer(-0x8000_0000, 0xffff_ffff) }),
  v.object({ kind: v.literal("trap"), message: text(STATUS_MESSAGE_CHARS_MAX) }),
  v.object({ kind: v.literal("killed") }),
  v.object({ kind: v.literal("lost"), message: text(STATUS_MESSAGE_CHARS_MAX) }),
]);

/** `POST /v1/internal/output/PID`: output chunks for the home's log. */
export const OutputChunksSchema = list(
  v.object({ stream: v.picklist(["stdout", "stderr"], "must be stdout or stderr"), offset: Uint, data: base64(JSON_BODY_BYTES_MAX) }),
  OUTPUT_CHUNKS_MAX,
);

/** A process's move counter: moves it has made (`_location.ts`). */
const Moves = integer(0, Number.MAX_SAFE_INTEGER);

/** `POST /v1/internal/exit/PID`: how it ended, on which node, at which move. */
export const ExitReportSchema = v.object({ status: ExitStatusSchema, node: NodeName, moves: Moves });

/** `POST /v1/internal/location/PID`: move `moves` took it to `node`. */
export const LocationSchema = v.object({ node: NodeName, moves: Moves });

/** A batch of link messages (`POST /v1/internal/deliver/PID`; the link channel's frames are binary, `_link_frames.ts`). */
export const BatchSchema = v.object({
  from: text(PID_BYTES_MAX, 1),
  messages: list(v.object({ seq: integer(1, Number.MAX_SAFE_INTEGER), data: base64(MESSAGE_BYTES_MAX) }), BATCH_MESSAGES_MAX),
});

/** `GET /v1/internal/running/PID`'s answer. */
export const RunningAnswerSchema = v.object({ running: v.boolean() });

/** `GET /v1/node`'s answer, as a peer's is read (only what this node uses of it). */
export const PeerInfoSchema = v.object({
  name: NodeName,
  address: text(300),
  peers: list(text(300), PEERS_MAX),
  processes: Uint,
  started_unix_ms: Uint,
  page_tracker: v.object({ name: text(64), note: text(1024) }),
  post_copy: v.object({ available: v.boolean(), reason: v.optional(text(1024)) }),
  os_pid: v.optional(integer(1, 0x7fff_ffff)),
});

/** The connection relay's HELLO (`NetHello`): what the runner knows and holds. */
export const NetHelloSchema = v.object({
  known: list(Uint, LISTEN_MAX),
  conns: list(v.object({ listener: U32, seq: U32, received: Uint }), NET_SLOTS),
});

/** An error a peer reported in a frame (`{code, message}`); the code is mapped onto this node's registry by the reader. */
export const PeerErrorSchema = v.object({
  code: v.optional(text(64)),
  message: v.optional(v.pipe(v.string(), v.transform((s) => s.slice(0, STATUS_MESSAGE_CHARS_MAX)))),
});
