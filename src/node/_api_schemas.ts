/**
 * Schemas of the control API's request bodies and queries (docs/cluster.md,
 * "Control API"). Routes parse every body and query with these through
 * `parse` (src/validate.ts) before acting: a request that fails is 400
 * ERR_BAD_REQUEST naming the field, and nothing happened.
 */
import * as v from "valibot";
import { COMPRESSIONS, RECOVER_MS_MAX, STRATEGIES } from "../migration/mod.js";
import { Args, Dirs, Env, Listen, MemoryCap, ModuleName, NodeName, Sha256 } from "../process_spec.js";
import { MESSAGE_BYTES_MAX } from "../runtime/mod.js";
import { base64, integer, queryUint, text } from "../validate.js";
import { LabelsSchema } from "./_load_schemas.js";

/** The module name a run request without one gets. */
export const MODULE_NAME_DEFAULT = "program.wasm";

/** Shortest --checkpoint-every: a checkpoint's round and its pause need some time of their own. */
export const CHECKPOINT_EVERY_MS_MIN = 50;
/** Longest --checkpoint-every: a day; a process checkpointed less often has no use for output commit's wait. */
export const CHECKPOINT_EVERY_MS_MAX = 86_400_000;

/** A downtime target past a minute is not a live migration any more. */
export const MAX_DOWNTIME_MS_MAX = 60_000;

/** A push rate past a terabyte per second is not a cap. */
const PUSH_BYTES_PER_S_MAX = 1e12;

/** `POST /v1/processes`. */
export const RunRequestSchema = v.object({
  module_sha256: Sha256,
  module_name: v.optional(ModuleName, MODULE_NAME_DEFAULT),
  args: v.optional(Args, []),
  env: v.optional(Env, []),
  dirs: v.optional(Dirs, []),
  listen: v.optional(Listen, []),
  /** Run it there (the node asked forwards). */
  node: v.optional(NodeName),
  /** Its memory cap; absent: the node's maximum. */
  memory_max_bytes: v.optional(MemoryCap),
  /** Labels a node must have to run it (`--require k=v`): placed and moved only where they hold. */
  requires: v.optional(LabelsSchema),
  /** Never moved automatically (`--pin`). */
  pinned: v.optional(v.boolean()),
  /** Periodic checkpoints every this many ms (0: none; absent: the node's --checkpoint-every). */
  checkpoint_every_ms: v.optional(v.union([v.literal(0), integer(CHECKPOINT_EVERY_MS_MIN, CHECKPOINT_EVERY_MS_MAX)], `must be 0 or ${CHECKPOINT_EVERY_MS_MIN} to ${CHECKPOINT_EVERY_MS_MAX}`)),
});

/** A run request as checked. */
export type RunRequestBody = v.InferOutput<typeof RunRequestSchema>;

/** `POST /v1/processes/PID/migrate` (and a guest's own request to move). */
export const MigrateRequestSchema = v.object({
  to: NodeName,
  strategy: v.optional(v.picklist(STRATEGIES, `must be one of ${STRATEGIES.join(", ")}`), "stop-copy"),
  max_downtime_ms: v.optional(v.pipe(v.number(), v.gtValue(0, "must be more than 0"), v.maxValue(MAX_DOWNTIME_MS_MAX, `must be at most ${MAX_DOWNTIME_MS_MAX}`))),
  recover_ms: v.optional(integer(1, RECOVER_MS_MAX)),
  push_bytes_per_s: v.optional(v.pipe(v.number(), v.gtValue(0, "must be more than 0"), v.maxValue(PUSH_BYTES_PER_S_MAX, `must be at most ${PUSH_BYTES_PER_S_MAX}`))),
  /** Pre-copy: throttle the process when rounds stop shrinking (default true). */
  auto_converge: v.optional(v.boolean()),
  /** Pre-copy and hybrid: compress the rounds' pages (default auto: when the link is slow). */
  compress: v.optional(v.picklist(COMPRESSIONS, `must be one of ${COMPRESSIONS.join(", ")}`)),
});

/** A migration request as checked. */
export type MigrateRequestBody = v.InferOutput<typeof MigrateRequestSchema>;

/** `POST /v1/processes/PID/send`: exactly one of text or base64. */
export const SendRequestSchema = v.pipe(
  v.object({
    data: v.optional(text(MESSAGE_BYTES_MAX)),
    data_base64: v.optional(base64(MESSAGE_BYTES_MAX)),
  }),
  v.check((b) => (b.data === undefined) !== (b.data_base64 === undefined), "want {data: TEXT} or {data_base64: BASE64}"),
);

/** A flag in a query string: `1` or `0`. */
const QueryFlag = v.optional(v.picklist(["0", "1"], "must be 0 or 1"), "0");

/** `GET /v1/processes/PID/output`: the offsets a client has read up to, per stream. */
export const OutputQuerySchema = v.object({
  follow: QueryFlag,
  stdout: v.optional(queryUint(Number.MAX_SAFE_INTEGER), "0"),
  stderr: v.optional(queryUint(Number.MAX_SAFE_INTEGER), "0"),
});

/** `GET /v1/processes` and `GET /v1/links`. */
export const ListQuerySchema = v.object({ local: QueryFlag, inspect: QueryFlag });

/** `POST /v1/processes/PID/migrate`'s query. */
export const MigrateQuerySchema = v.object({ progress: QueryFlag });

/** A query string as a plain object for a schema (a repeated name: its last value). */
export function queryOf(url: URL): Record<string, string> {
  return Object.fromEntries(url.searchParams);
}

/** `GET /metrics`: `node`, another node whose metrics to fetch. */
export const MetricsQuerySchema = v.object({ node: v.optional(NodeName) });

/** `GET /v1/events`: `follow` stays open for new events; `local` only this node's. */
export const EventsQuerySchema = v.object({ follow: QueryFlag, local: QueryFlag });
