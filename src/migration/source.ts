/**
 * The source side of a migration (DESIGN.md, "A migration, pre-copy"): offer,
 * optional pre-copy rounds while the process runs, stop, send the rest,
 * wait until the destination runs it. Until then the process is the
 * source's: any failure leaves it running here.
 */
import type { ImageSigner } from "../image/mod.js";
import type { Compression } from "./_compress.js";
import type { PageTracker } from "../memory/mod.js";
import type { GuestProcess } from "../runtime/mod.js";
import type { Duplex } from "node:stream";
import type { FramedConnection } from "../transport/mod.js";
import type { Strategy } from "./_schemas.js";
import type { PageChannel, PostCopyMetrics } from "./postcopy.js";
import type { DestinationPhase, PhasesMs, SourcePhase } from "./phases.js";
import { OutgoingMigration, type OutState } from "./_outgoing.js";
export type { PageChannel, PostCopyMetrics } from "./postcopy.js";

export { STRATEGIES, type Strategy } from "./_schemas.js";
export { OUT_STATES, type OutState } from "./_outgoing.js";

/** Default wait for a broken post-copy link to come back before the process is given up. */
export const RECOVER_MS_DEFAULT = 10_000;

/** Most pre-copy rounds before stopping the process anyway. */
export const PRECOPY_ROUNDS_MAX = 12;
/** Default downtime target of pre-copy. */
export const MAX_DOWNTIME_MS_DEFAULT = 300;

/** What the destination is asked to take. */
export interface Offer {
  pid: string;
  home: string;
  module_sha256: string;
  module_name: string;
  args: string[];
  env: string[];
  dirs: { host: string; guest: string }[];
  /** Addresses its home listens on for it (informational: the sockets stay at the home). */
  listen?: string[];
  /** Files the process has open: they must exist on the destination. */
  open_files: string[];
  strategy: Strategy;
  /** The source node's address (the destination fetches a missing module there). */
  source: string;
  /** Memory size when offered; it can only grow, so the destination may reserve this much at once. */
  memory_bytes: number;
  /** The process's memory cap (it travels with the process; the destination checks it against its own maximum). */
  memory_max_bytes: number;
  /** Post-copy and hybrid: how long either side waits for a broken page channel to come back. */
  recover_ms?: number;
  /**
   * The process's move counter once it runs at the destination: one more
   * than at the source. Its home records locations, and takes its exit
   * report, in this order only.
   */
  moves: number;
  /**
   * Between nodes without TLS only: the public key (SPKI DER, base64) the
   * source signs the image with, which the destination then trusts for this
   * migration. It proves nothing about who sent the offer; with TLS the
   * destination trusts the key of the peer's authenticated certificate and
   * ignores this field.
   */
  signing_key?: string;
  /** Periodic checkpoints of the process, every this many ms (docs/checkpoints.md); they go on wherever it runs. */
  checkpoint_every_ms?: number;
  /**
   * Post-copy and hybrid: the page channel's session. The source names it in
   * the OFFER so that a destination that says so in READY takes the channel
   * before the stop; its handshake then happens while the process runs.
   */
  page_session?: string;
}

/** What a migration reports. */
export interface MigrationMetrics {
  strategy: Strategy;
  /** From the request to the destination running the process. */
  total_ms: number;
  /** From the process stopping at the source to it running at the destination. */
  downtime_ms: number;
  /** Bytes sent on the data connection, and the record connection's where pages went there. */
  bytes: number;
  /** Pages sent, all rounds and the final copy together. */
  pages: number;
  /** Pre-copy rounds (0 for stop-and-copy). */
  rounds: number;
  /** Pages sent in each pre-copy round, then in the final copy (post-copy and hybrid: the pages left to the post-copy phase). */
  dirty_pages: number[];
  /** Post-copy and hybrid: the phase after the process resumed at the destination. */
  post_copy?: PostCopyMetrics;
  /**
   * Pre-copy and hybrid, after the first round: the rate the destination
   * confirmed pages at (all rounds on the data connection; `ConfirmedRate`), the rate the process wrote them at (the
   * last round), and the auto-converge throttle it ran under at the end (0:
   * none), in percent of its time. `stop_cost_ms`: what a stop to this
   * destination was taken to cost besides the final copy's bytes (from
   * earlier moves; 0: not known), so the final copy was given the downtime
   * target less that, and at least a fifth of it.
   */
  convergence?: { link_bytes_per_s: number; dirty_bytes_per_s: number | null; throttle_pct: number; stop_cost_ms: number };
  /**
   * Pre-copy and hybrid: how the first round went, `records` on a connection
   * of its own from a native thread (as stop-copy's pages), or `frames` on
   * the data connection (a round that compresses, a source without the
   * native addon or the kernel's tracker, a small memory).
   */
  first_round?: "records" | "frames";
  /** Rounds that compressed their pages (`_compress.ts`): bytes they stood for, and bytes sent. */
  compression?: { codec: "lz4"; raw_bytes: number; wire_bytes: number };
  /**
   * Where the source's time went, phase by phase (phases.ts): they add up to
   * `total_ms`, and from `suspend` to `restore` to the downtime.
   */
  phases_ms: PhasesMs<SourcePhase>;
  /** The destination's own account of its part (inside the source's `prepare`, then `encode` to `restore`). */
  destination_phases_ms: PhasesMs<DestinationPhase>;
}

/** Most often a migration reports bytes moved within a phase (`in_phase`): a display's bar moves, and the events stay few. */
export const PROGRESS_MS_MIN = 250;

/**
 * A step of a migration, for a progress display; or, with `in_phase`, the
 * bytes moved so far within the phase under way (at most every
 * {@link PROGRESS_MS_MIN}, and only when they grew).
 */
export interface MigrationProgress {
  phase: "offered" | "round" | "stopping" | "copying" | "post-copy";
  round?: number;
  /** Pages sent in this round (a round's end only). */
  pages?: number;
  /** Bytes sent so far; never less than an earlier report of the same migration. */
  bytes: number;
  /** The process's memory size now. */
  memory_bytes: number;
  /**
   * Pre-copy and hybrid, at the end of a round after the first: how fast the
   * process wrote memory between this round's scan and the one before, bytes
   * per second (`convergence.dirty_bytes_per_s`). The first round copies all
   * of memory and measures no writes, so it has none.
   */
  dirty_bytes_per_s?: number;
  /** An update within the phase (its bytes so far), not a step to it. */
  in_phase?: true;
}

/** How the source reaches the world. */
export interface SourceSide {
  proc: GuestProcess;
  offer: Offer;
  /**
   * Signs the image (Ed25519 or ECDSA P-256 private key); the destination
   * runs the process only if it trusts this key. A node passes its own key.
   */
  signer: ImageSigner;
  connect(): Promise<FramedConnection>;
  /** Resolves once all output written so far has reached the home node. */
  flushOutput(): Promise<void>;
  /** After the link broke with the image sent: does the destination run the process? */
  destinationRuns(): Promise<boolean>;
  /** Progress for a user watching. */
  progress?(p: MigrationProgress): void;
  /**
   * Stop-copy to a destination with TLS: opens the sealed BULK connection
   * through the door `ticket` names (`_sealed_bulk.ts`), resolving once the
   * destination has taken it. Absent: the pages go on the data connection.
   */
  connectSealed?(ticket: Uint8Array): Promise<Duplex>;
  /**
   * Post-copy and hybrid: opens the page channel of migration session
   * `session` to the destination, or with `demand` its demand channel
   * (answers to faults only, docs/cluster.md "Demand channel").
   */
  connectPages?(session: string, options?: { demand?: boolean }): Promise<PageChannel>;
  /**
   * The process's links: stop taking and sending messages once it is
   * stopped (their state goes in the image), and take up again here if the
   * move fails.
   */
  links?: { freeze(): void; capture(): unknown; resume(): void };
  /**
   * The process's TCP connections: once it is stopped, make sure its home
   * has every byte it sent (their positions go in the image), and take them
   * up again here if the move fails.
   */
  net?: { freeze(): void; flush(): Promise<void>; resume(): void };
  /**
   * Post-copy and hybrid: the destination runs the process now. The source
   * keeps its suspended copy only to serve pages; it must never resume it.
   */
  resumed?(): void;
}

/** Options of {@link migrateOut}. */
export interface MigrationOptions {
  strategy: Strategy;
  /** Makes the page tracker pre-copy uses (default: the portable one). */
  tracker?: () => PageTracker;
  max_downtime_ms?: number;
  rounds_max?: number;
  /** Pre-copy: hold the process at its safe points when rounds stop shrinking (default true); see `_precopy.ts`. */
  auto_converge?: boolean;
  /** Pre-copy and hybrid: compress the rounds' pages (default `auto`: below a confirmed rate; `_compress.ts`). */
  compression?: Compression;
  /** The rate the destination confirmed pages at in this node's last move to it, for `auto`'s first round. */
  link_hint_bytes_per_s?: number;
  /** Pre-copy: what a stop to this destination cost besides its final copy's bytes, lately (`stopCostMs`); taken off `max_downtime_ms` for the final copy. */
  stop_cost_hint_ms?: number;
  /**
   * Stop-copy: a memory of at most this many bytes carries its pages inside
   * the signed image, hashed on this thread (`_small.ts`; default
   * SMALL_MEMORY_BYTES_MAX). 0: outside it wherever the destination takes
   * BULK frames.
   */
  small_memory_bytes_max?: number;
  /** Post-copy and hybrid: cap on the background push, bytes per second. */
  push_bytes_per_s?: number;
  /**
   * Aborts the migration (ERR_MIGRATION_STALLED, the process resumed here)
   * when it makes no progress for this long before the whole image is sent
   * (`stall.ts`). Past that point the destination may already run the
   * process, so an abort could leave two copies: the restore timeout, and
   * for post-copy `recover_ms`, apply instead. Default: no watchdog.
   */
  stall_ms?: number;
  /** Told once when the watchdog aborts the migration, with the phase it stalled in. */
  onStall?: (info: { idle_ms: number; phase: string }) => void;
  /**
   * Told of each state the migration enters (`_outgoing.ts`), as it enters
   * it; what it throws is a fault in that state, handled as any other.
   */
  onState?: (state: OutState) => void;
}

/**
 * Moves a running process to the destination. Resolves once the destination
 * runs it (the caller then drops its copy); rejects with the process running
 * here as before, or with ERR_PROCESS_ENDED when it ended here on its own
 * before it was stopped (its end is recorded as any other). The states and
 * their faults: `_outgoing.ts`.
 */
export function migrateOut(side: SourceSide, options: MigrationOptions): Promise<MigrationMetrics> {
  return new OutgoingMigration(side, options).run();
}
