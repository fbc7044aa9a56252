/**
 * Post-copy's second half at the source (DESIGN.md, "A migration":
 * post-copy): the process already runs at the destination; serve its pages
 * until the destination has them all. A broken page channel is reopened for
 * as long as `recover_ms` allows; after that the process is lost (its live
 * state is at the destination, its memory here: neither can go on alone).
 */
import { errorField, logger } from "../log/mod.js";
import type { Duplex } from "node:stream";
import { FerryError } from "../errors.js";
import { CHUNK_BYTES, type PageChannelKeys } from "../memory/mod.js";
import { PageServer } from "./page_server.js";
import type { Handover } from "./_wire.js";
import type { SourceSide } from "./source.js";

/** A page channel as the source opens it: the socket and what was read past the upgrade. */
export interface PageChannel {
  socket: Duplex;
  head: Uint8Array;
  /** The connection's keys when its frames travel sealed (a node with TLS); absent: in the clear. */
  keys?: PageChannelKeys;
}

/** What the post-copy phase reports. */
export interface PostCopyMetrics {
  /** Chunks (64 KiB) the destination asked for because its guest touched them. */
  demand_chunks: number;
  /** Chunks sent by the background push. */
  pushed_chunks: number;
  /** All-zero chunks, sent as ranges. */
  zero_chunks: number;
  /** From the process resuming at the destination to its last page being there. */
  resume_to_last_page_ms: number;
  /** Page channels opened (more than one: the link broke and was recovered). */
  connections: number;
  /** Chunks answered on the demand channel (QEMU's "preempt"), never queued behind the push. */
  preempt_chunks?: number;
  bytes: number;
  /** `abort`: the process ended at the destination before every page was there. */
  end: "done" | "abort";
}

/** What serving reports; the caller knows when the process resumed, so it measures from there. */
export type Served = Omit<PostCopyMetrics, "resume_to_last_page_ms"> & {
  /** When the last page was there (performance.now()). */
  finished_at: number;
};

/** Pause between attempts to reopen a broken page channel. */
const RECONNECT_PAUSE_MS = 200;

/**
 * Least memory still at the source for which a demand channel is opened.
 * Its handshake (an upgrade over TLS, a grant, a second connection) takes
 * the source's thread a few ms just as the push starts. A 2 MiB memhog got
 * its last page 20 ms after RUNNING without one, 24 ms with (medians of 12
 * moves each); a client of kvserver (1.5 MiB) moved by post-copy waited 29 ms
 * at most against 32 (`--only=net`, 4 runs each, alternated). An answer on
 * the page channel waits behind at most 2 MiB of push (`QUEUED_BYTES_MAX`).
 */
const DEMAND_CHANNEL_BYTES_MIN = 8 * 1048576;

/**
 * Serves pages until the destination has them all (resolves), or rejects with
 * ERR_POSTCOPY_LOST once the link stayed down for `recover_ms`. Starts as
 * soon as the channel opens, before the destination says it runs the process
 * (a fault then is answered; the push waits for `push_from`); `signal` stops
 * it if the destination never runs it.
 */
export async function servePostCopy(
  side: SourceSide,
  handover: Handover,
  first: Promise<PageChannel>,
  memory: Uint8Array,
  options: {
    recover_ms: number;
    push_bytes_per_s?: number | undefined;
    signal: AbortSignal;
    push_from: Promise<void>;
    hot: number[];
    /** Given, at once, what reads the bytes served so far (for a progress display). */
    meter?: (bytes_out: () => number) => void;
  },
): Promise<Served> {
  const signal = options.signal;
  const server = new PageServer(memory.subarray(0, handover.remote_bytes), {
    hold_push: true,
    ...(options.push_bytes_per_s !== undefined ? { push_bytes_per_s: options.push_bytes_per_s } : {}),
  });
  server.prefetch(options.hot);
  options.meter?.(() => server.stats.bytes_out);
  // The demand channel opens with the push (before it, nothing is queued ahead of an answer): its handshake is no part of the downtime.
  let demand: Duplex | null = null;
  let ended = false;
  const openDemand = async (): Promise<void> => {
    const channel = await side.connectPages!(handover.session, { demand: true });
    if (ended || signal.aborted) {
      channel.socket.destroy();
      return;
    }
    demand = channel.socket;
    const end = await server.serve(channel.socket, channel.head, channel.keys, { demand: true });
    if (!ended) logger().info({ pid: side.offer.pid, end }, "the post-copy demand channel closed; faults go on the page channel");
  };
  // Below DEMAND_CHANNEL_BYTES_MIN the push brings everything in about the time the demand channel's handshake would take.
  const missing_bytes = handover.missing.reduce((n, [, count]) => n + count * CHUNK_BYTES, 0);
  // push_from never rejects (a promise the source resolves at RUNNING); the handler only satisfies the type.
  void options.push_from.then(
    () => {
      server.startPush();
      if (missing_bytes < DEMAND_CHANNEL_BYTES_MIN) return;
      openDemand().catch((err: unknown) => {
        // Faults are then asked for and answered on the page channel, as without one.
        logger().info({ pid: side.offer.pid, err: errorField(err) }, "the post-copy demand channel could not be opened; faults go on the page channel");
      });
    },
    () => undefined,
  );
  const closeDemand = (): void => {
    ended = true;
    (demand as Duplex | null)?.destroy();
  };
  const metrics = (end: "done" | "abort"): Served => ({
    demand_chunks: server.stats.demand_chunks,
    pushed_chunks: server.stats.pushed_chunks,
    zero_chunks: server.stats.zero_chunks,
    finished_at: performance.now(),
    connections: server.stats.connections,
    bytes: server.stats.bytes_out,
    preempt_chunks: server.stats.preempt_chunks,
    end,
  });
  try {
    let channel: PageChannel | null = await first.catch((err: unknown) => {
      // Reopened below, for recover_ms, like a channel that broke.
      logger().info({ err: errorField(err) }, "the first post-copy page channel did not open; retrying");
      return null;
    });
    let down_since = performance.now();
    let why = "the page channel could not be opened";
    for (;;) {
      if (signal.aborted) {
        channel?.socket.destroy();
        throw new FerryError("ERR_MIGRATION_FAILED", "page serving stopped: the destination never ran the process");
      }
      if (channel !== null) {
        const socket = channel.socket;
        const stop = (): void => void socket.destroy();
        signal.addEventListener("abort", stop);
        const end = await server.serve(socket, channel.head, channel.keys).finally(() => signal.removeEventListener("abort", stop));
        if (end !== "closed") return metrics(end);
        down_since = performance.now();
        why = "the page channel broke";
      }
      if (performance.now() - down_since > options.recover_ms) break;
      await new Promise((resolve) => setTimeout(resolve, RECONNECT_PAUSE_MS));
      try {
        channel = await side.connectPages!(handover.session);
      } catch (err: unknown) {
        channel = null;
        why = err instanceof Error ? err.message : String(err);
        if (err instanceof FerryError && err.code === "ERR_NO_SUCH_SESSION") {
          // The destination no longer serves this session: it has every page
          // (DONE was lost with the link) if the process still runs there.
          const runs = await side.destinationRuns().catch((e: unknown) => {
            logger().warn({ err: errorField(e) }, "could not ask the destination whether it runs the process");
            return false;
          });
          if (runs) return metrics("done");
          break;
        }
      }
    }
    throw new FerryError(
      "ERR_POSTCOPY_LOST",
      `post-copy of ${side.offer.pid} could not finish: ${why}; the destination did not come back within ${(options.recover_ms / 1000).toFixed(1)} s, so the process is lost`,
    );
  } finally {
    closeDemand();
  }
}
