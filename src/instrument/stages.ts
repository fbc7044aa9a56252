/**
 * The steps of instrumenting a module, in order, as reported to a progress
 * callback and named in error messages.
 */

/** One step of the instrumenter ("asyncify": Ferry's unwinding pass, or Binaryen's Asyncify in its place). */
export type InstrumentStage = "read" | "call-graph" | "polls" | "asyncify" | "write";

/** What each step does, for a progress line and for an error message ("failed while ..."). */
export const STAGE_TEXT: Readonly<Record<InstrumentStage, string>> = {
  read: "reading the module",
  "call-graph": "walking the call graph",
  polls: "adding polls",
  asyncify: "making the stack unwindable",
  write: "writing the instrumented module",
};

/** Called when the instrumenter starts a step (on the thread that instruments). */
export type StageListener = (stage: InstrumentStage) => void;
