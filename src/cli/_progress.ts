/**
 * A one-line progress report on a terminal while something slow runs (the
 * instrumentation of a large module, a start that waits on a node): nothing
 * for the first second, then "ferry: WHAT: STEP... 3.2 s", redrawn in place
 * and erased when done. Nothing at all when the stream is not a terminal, so
 * scripts and logs see only what they saw before.
 */
import type { InstrumentStage } from "../instrument/mod.js";
import { STAGE_TEXT } from "../instrument/mod.js";

/** Quiet for this long: a fast start shows nothing. */
export const PROGRESS_DELAY_MS = 1000;

/** How often the elapsed time is redrawn (when the thread is free to). */
const PROGRESS_REDRAW_MS = 250;

/** Where progress is drawn: a stream that may be a terminal. */
export interface ProgressStream {
  readonly isTTY?: boolean;
  write(text: string): unknown;
}

/** A running progress line. */
export interface Progress {
  /** A step started (redraws at once if the line is showing: the thread may be busy until the next step). */
  step(text: string): void;
  /** Done: erases the line if it was drawn. */
  end(): void;
}

/**
 * Starts a progress line about `what` on `stream` (process.stderr in the
 * CLI). `now` is the clock in milliseconds (injected for tests).
 */
export function startProgress(stream: ProgressStream, what: string, options: { now?: () => number; delay_ms?: number } = {}): Progress {
  if (stream.isTTY !== true) return { step: () => undefined, end: () => undefined };
  const now = options.now ?? (() => performance.now());
  const delay_ms = options.delay_ms ?? PROGRESS_DELAY_MS;
  const started = now();
  let current = "";
  let drawn = false;
  let ended = false;
  const draw = (): void => {
    const elapsed_ms = now() - started;
    if (ended || elapsed_ms < delay_ms) return;
    const step = current === "" ? "" : `: ${current}`;
    stream.write(`\r\x1b[2Kferry: ${what}${step}... ${(elapsed_ms / 1000).toFixed(1)} s`);
    drawn = true;
  };
  const timer = setInterval(draw, PROGRESS_REDRAW_MS);
  timer.unref();
  return {
    step(text: string): void {
      current = text;
      draw();
    },
    end(): void {
      if (ended) return;
      ended = true;
      clearInterval(timer);
      if (drawn) stream.write("\r\x1b[2K");
    },
  };
}

/** The text of an instrumentation step for a progress line. */
export function stageText(stage: InstrumentStage): string {
  return STAGE_TEXT[stage];
}
