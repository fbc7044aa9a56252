/**
 * Schemas of the JSON frames of the migration protocol (docs/cluster.md,
 * "Data protocol"): OFFER, READY, ERROR, ROUND_END, HANDOVER and RUNNING.
 * Every such frame is checked against its schema before anything acts on it;
 * a frame that fails is ERR_MIGRATION_PROTOCOL and changes nothing.
 */
import * as v from "valibot";
import { CHUNK_BYTES } from "../memory/mod.js";
import { Args, Dirs, Env, HostPath, HostPort, Listen, MemoryBytes, MemoryCap, ModuleName, NodeName, OPEN_FILES_MAX, Pid, Sha256, WASM_MEMORY_BYTES_MAX } from "../process_spec.js";
import { integer, list, text } from "../validate.js";
import { DESTINATION_PHASES, type DestinationPhase } from "./phases.js";

/** Every strategy, in the order a user meets them. */
export const STRATEGIES = ["stop-copy", "pre-copy", "post-copy", "hybrid"] as const;

/** Migration strategies. */
export type Strategy = (typeof STRATEGIES)[number];

/** Longest wait for a broken post-copy link a client (or an OFFER) may ask for: ten minutes of a process stalled on a page is already an outage. */
export const RECOVER_MS_MAX = 600_000;

/** An SPKI DER public key of the algorithms images are signed with is under 100 bytes; base64 of far more is not a key. */
const SIGNING_KEY_CHARS_MAX = 1024;

/** Characters of an ERROR frame's message kept: a sentence or two, never a dump. */
export const ERROR_MESSAGE_CHARS_MAX = 4096;

/** Chunks of a 4 GiB memory: the most a HANDOVER can name. */
const CHUNKS_MAX = WASM_MEMORY_BYTES_MAX / CHUNK_BYTES;

/** OFFER (S→D): what the destination is asked to take (see `Offer` in source.ts). */
/** A post-copy page channel's session, as the source names it. */
const SessionName = v.pipe(v.string(), v.regex(/^[A-Za-z0-9._-]{1,128}$/, "must be a session name"));

export const OfferSchema = v.object({
  pid: Pid,
  home: NodeName,
  module_sha256: Sha256,
  module_name: ModuleName,
  args: Args,
  env: Env,
  dirs: Dirs,
  listen: v.optional(Listen),
  open_files: list(HostPath, OPEN_FILES_MAX),
  strategy: v.picklist(STRATEGIES, `must be one of ${STRATEGIES.join(", ")}`),
  source: HostPort,
  memory_bytes: MemoryBytes,
  memory_max_bytes: MemoryCap,
  recover_ms: v.optional(integer(1, RECOVER_MS_MAX)),
  /** The process's move counter once it runs at the destination (the home records moves in this order). */
  moves: integer(1, Number.MAX_SAFE_INTEGER),
  /** Between nodes without TLS only: the key that signs the image (SPKI DER, base64; see `Offer` in source.ts). */
  signing_key: v.optional(v.pipe(v.string(), v.maxLength(SIGNING_KEY_CHARS_MAX), v.base64())),
  /** Periodic checkpoints of the process, every this many ms (0 or absent: none); they go on wherever it runs. */
  checkpoint_every_ms: v.optional(integer(0, Number.MAX_SAFE_INTEGER)),
  /** Post-copy and hybrid: the page channel's session, named now so that the channel can open before the stop (READY `page_session`). */
  page_session: v.optional(SessionName),
});

/** A frame whose body says nothing (a keeper's acknowledgement of a checkpoint): an empty object. */
export const EmptySchema = v.object({});

/** Longest a phase can be reported to have taken: a day, far past any timeout of a migration. */
const PHASE_MS_MAX = 86_400_000;

/** 32 bytes in base64 (44 characters with padding). */
const Base64Key = v.pipe(v.string(), v.regex(/^[A-Za-z0-9+/]{43}=$/, "must be 32 bytes in base64"));

/** BULK_SEALED (S→D): how many sealed records the BULK connection carried. */
export const BulkSealedSchema = v.object({ records: integer(0, 2 ** 32) });

/** Milliseconds of one destination phase. */
const PhaseMs = v.pipe(v.number(), v.finite(), v.minValue(0), v.maxValue(PHASE_MS_MAX));

/**
 * READY and RUNNING (D→S): where the destination's time went so far
 * (phases.ts). Only the phases it knows are kept; others are dropped.
 */
export const AnswerSchema = v.object({
  /** READY: this destination takes stop-copy's pages as BULK frames (`_bulk.ts`); absent from an older one, which gets them in the image. */
  bulk: v.optional(v.literal(true)),
  /**
   * READY: the door of the record connection for stop-copy's pages
   * (`_sealed_bulk.ts`, `_native_bulk.ts`): a one-time ticket and the key of
   * its records, 32 bytes each, base64; `cipher` how its records are
   * protected (absent: `aes-256-gcm`). Between nodes with TLS the records
   * are sealed and this frame is confidential, inside mutual TLS; between
   * nodes without, they are tagged in the clear (`gmac`).
   */
  sealed: v.optional(v.object({ ticket: Base64Key, key: Base64Key, cipher: v.optional(v.picklist(["aes-256-gcm", "gmac"])) })),
  /** READY: the page channel of the session the offer named may open now (absent: only once the process stopped). */
  page_session: v.optional(v.literal(true)),
  /**
   * RUNNING: how long the process had run at the destination when it
   * answered (ms, on the destination's clock); absent from an older one.
   */
  ran_ms: v.optional(PhaseMs),
  phases_ms: v.optional(
    v.object(Object.fromEntries(DESTINATION_PHASES.map((p) => [p, v.optional(PhaseMs)])) as Record<DestinationPhase, v.OptionalSchema<typeof PhaseMs, undefined>>),
  ),
});

/** ROUND_END (S→D): the pre-copy round that just ended; ROUND_ACK (D→S): its pages are in place. */
export const RoundEndSchema = v.object({ round: integer(1, Number.MAX_SAFE_INTEGER) });

/** ERROR (both ways): why the sender gives up; the code is mapped onto this node's registry. */
export const ErrorFrameSchema = v.object({
  code: v.optional(text(64)),
  message: v.optional(v.pipe(v.string(), v.transform((s) => (s.length > ERROR_MESSAGE_CHARS_MAX ? `${s.slice(0, ERROR_MESSAGE_CHARS_MAX)}...` : s)))),
});

/** HANDOVER (S→D, post-copy and hybrid): see `Handover` in _wire.ts; order and bounds of the runs are checked by the destination. */
export const HandoverSchema = v.object({
  session: SessionName,
  remote_bytes: v.pipe(MemoryBytes, v.multipleOf(CHUNK_BYTES, `must be a whole number of ${CHUNK_BYTES}-byte chunks`)),
  missing: list(v.tuple([integer(0, CHUNKS_MAX - 1), integer(1, CHUNKS_MAX)]), CHUNKS_MAX),
});

/** Checkpoints in a chain: far more than any policy keeps, well inside exact JSON numbers. */
const CHECKPOINT_SEQ_MAX = Number.MAX_SAFE_INTEGER;

/** BEGIN (runner → keeper): see `CheckpointBegin` in checkpoint.ts. */
export const CheckpointBeginSchema = v.object({
  process: v.object({
    pid: Pid,
    home: NodeName,
    module_sha256: Sha256,
    module_name: ModuleName,
    args: Args,
    env: Env,
    dirs: Dirs,
    listen: v.optional(Listen),
    source: HostPort,
    memory_bytes: MemoryBytes,
    memory_max_bytes: MemoryCap,
    moves: integer(0, Number.MAX_SAFE_INTEGER),
    checkpoint_every_ms: v.optional(integer(0, Number.MAX_SAFE_INTEGER)),
    signing_key: v.optional(v.pipe(v.string(), v.maxLength(SIGNING_KEY_CHARS_MAX), v.base64())),
  }),
  chain: v.pipe(v.string(), v.regex(/^[A-Za-z0-9._-]{1,64}$/, "must be a chain name")),
  seq: integer(1, CHECKPOINT_SEQ_MAX),
});

/** STORED (keeper → runner). */
export const CheckpointStoredSchema = v.object({ stored_bytes: integer(0, Number.MAX_SAFE_INTEGER) });
