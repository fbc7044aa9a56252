/**
 * Retrying a node-to-node request whose effect must land (a location
 * update, an exit report): with a growing pause, for a bounded time, and
 * only on failures that may pass (a peer down, a move not recorded yet).
 * A refusal that will never change (stale, forbidden) ends it at once.
 */
import { FerryError, type ErrorCode } from "../errors.js";

/** First pause between tries; doubled each time up to RETRY_PAUSE_MS_MAX. */
const RETRY_PAUSE_MS_FIRST = 25;
/** Longest pause between tries: a peer that comes back is reached within this. */
const RETRY_PAUSE_MS_MAX = 1000;

/** Codes worth another try: the peer did not answer, or answered "not yet". */
const RETRYABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>(["ERR_PEER_UNREACHABLE", "ERR_LOCATION_PENDING", "ERR_OUTPUT_GAP", "ERR_NO_SUCH_NODE"]);

/** Whether a failure may pass if tried again. */
export function retryable(err: unknown): boolean {
  return err instanceof FerryError && RETRYABLE.has(err.code);
}

/** Options of {@link retry}. */
export interface RetryOptions {
  /** Give up after trying this long; the last failure is thrown. */
  give_up_ms: number;
  /** Stop early (e.g. the node is stopping); the last failure is thrown. */
  signal?: AbortSignal;
  /** Which failures are worth another try (default {@link retryable}). */
  retryable?: (err: unknown) => boolean;
}

/** Calls `attempt` until it succeeds, a failure is not {@link retryable} (or the option's), or the time is up. */
export async function retry<T>(attempt: () => Promise<T>, options: RetryOptions): Promise<T> {
  const deadline = Date.now() + options.give_up_ms;
  const again = options.retryable ?? retryable;
  for (let pause = RETRY_PAUSE_MS_FIRST; ; pause = Math.min(RETRY_PAUSE_MS_MAX, pause * 2)) {
    try {
      return await attempt();
    } catch (err: unknown) {
      if (!again(err) || Date.now() + pause > deadline || options.signal?.aborted === true) throw err;
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }
}
