/**
 * How long a loop on a node's thread may run before it gives the event loop
 * a turn. A node's one thread serves everything at once: the control API,
 * output relays, links, connections relayed for processes that moved,
 * post-copy page requests. A loop that writes to a socket the kernel takes
 * every write of at once (a plain TCP socket on a fast link: the sealed
 * records of a migration's pages) completes each write without a turn, and
 * ran on for hundreds of milliseconds while requests waited unread
 * (docs/cluster.md, "What the guest sees").
 */
export const TURN_MS = 1;

/** When the stretch of this thread's work without a turn of its event loop began, as first seen by {@link turnDue}; null: none seen since the last turn. */
let stretch_started: number | null = null;

/**
 * Whether this thread has run for `ms` or more since its event loop last
 * turned, as far as callers of this function can tell: the first call after
 * a turn starts the clock and leaves a mark (a setImmediate) that the next
 * turn clears. So a loop that waits on real I/O between its calls is never
 * told to yield, and one that runs on through resolved promises is, once.
 */
export function turnDue(ms: number = TURN_MS): boolean {
  const now = performance.now();
  if (stretch_started === null) {
    stretch_started = now;
    setImmediate(() => {
      stretch_started = null;
    });
    return false;
  }
  return now - stretch_started >= ms;
}

/** Resolves after one turn of the event loop (its I/O callbacks included). */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Gives the event loop a turn if {@link turnDue}; else resolves at once. */
export async function yieldIfDue(ms: number = TURN_MS): Promise<void> {
  if (turnDue(ms)) await nextTurn();
}
