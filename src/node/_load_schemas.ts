/**
 * Schemas of the load module's messages (docs/load.md, "In the daemon"):
 * labels and requirements, the load windows nodes gossip, and the policy
 * changes clients send. A peer's load is as untrusted as a client's request:
 * every figure is checked (finite, in range) before a decision can read it.
 */
import * as v from "valibot";
import { LABELS_MAX } from "../policy/mod.js";
import { NodeName } from "../process_spec.js";
import { integer, list, text, Uint } from "../validate.js";

/** Entries one gossip message carries at most: a window is a handful; more is not a window. */
export const WINDOW_ENTRIES_MAX = 64;

/** A label key or value, as `parseLabels` takes them. */
const LabelKey = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_.\-/]{1,63}$/, "must be 1-63 letters, digits, _ . - /"));
const LabelValue = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_.\-/]{0,63}$/, "must be 0-63 letters, digits, _ . - /"));

/** Labels of a node, or requirements of a process: at most LABELS_MAX `k=v`. */
export const LabelsSchema = v.pipe(
  v.record(LabelKey, LabelValue),
  v.check((r) => Object.keys(r).length <= LABELS_MAX, `at most ${LABELS_MAX} labels`),
);

/** A figure of a load vector: finite and not negative. */
const Figure = v.pipe(v.number(), v.finite(), v.minValue(0));

/** One node's load vector (`NodeLoad`). */
export const NodeLoadSchema = v.object({
  node: NodeName,
  cpus: integer(1, 1_000_000),
  speed: v.pipe(Figure, v.gtValue(0)),
  processes: Uint,
  movable: Uint,
  runnable: Figure,
  cpu_used: Figure,
  memory_used_bytes: Figure,
  memory_free_bytes: Figure,
  remote_bytes_per_s: Figure,
  transfer_bytes_per_s: Figure,
  labels: LabelsSchema,
  draining: v.boolean(),
});

/** A load entry as it travels (`LoadEntry`). */
export const LoadEntrySchema = v.object({ load: NodeLoadSchema, version: Uint, age_ms: Figure });

/** `POST /v1/internal/load` and its answer: the sender's window, its own entry first. */
export const LoadWindowSchema = v.object({ window: list(LoadEntrySchema, WINDOW_ENTRIES_MAX) });

/** `POST /v1/internal/load/accept`: a source asks the target of an automatic move whether it takes it now (`MoveOffer`). */
export const MoveOfferSchema = v.object({
  pid: text(64, 1),
  reason: v.picklist(["drain", "memory", "balance", "colocate", "pack"]),
  cpu_share: v.pipe(Figure, v.maxValue(1)),
  memory_bytes: Figure,
  requires: LabelsSchema,
  source: v.object({ cpus: integer(1, 1_000_000), speed: v.pipe(Figure, v.gtValue(0)), runnable: Figure }),
});

/** The target's answer: whether it takes the move, why not, and its window (its own entry first, measured now). */
export const MoveAnswerSchema = v.object({ accepted: v.boolean(), detail: v.optional(text(1024)), on_load: v.optional(v.boolean()), window: list(LoadEntrySchema, WINDOW_ENTRIES_MAX) });

/** A policy change's values: `KEY=VALUE` as the CLI read it, typed by the node. */
export const PolicyChangeSchema = v.object({
  set: v.pipe(
    v.record(text(64, 1), v.union([v.string(), v.number(), v.boolean()])),
    v.check((r) => Object.keys(r).length <= 32, "at most 32 changes"),
  ),
  /** Only this node (a node passing a change on to its peers sets it). */
  local: v.optional(v.boolean(), false),
});

/** What a runner reads of a process's home record (`GET /v1/processes/PID`): its constraints; absent, none (a home of an older version). */
export const ConstraintsSchema = v.object({ requires: v.optional(LabelsSchema, {}), pinned: v.optional(v.boolean(), false) });

/** A peer's answer to a policy change passed on: the node it names first is the peer itself. */
export const PolicyAnswerSchema = v.object({ nodes: list(v.object({ node: NodeName }), 1024) });

/** `POST /v1/nodes/NAME/drain` and `.../undrain` take no body; their answer. */
export const DrainAnswerSchema = v.object({ node: NodeName, draining: v.boolean(), processes: Uint });
