/**
 * What keeps instrumenting a large module bounded in time and memory.
 *
 * Binaryen's cost is roughly linear in the number of functions but grows
 * much faster than linearly with the size of one function (Asyncify flattens
 * a function and then coalesces its locals, which is quadratic in the
 * locals). So the instrumenter must never make functions larger than the
 * producer wrote them before Asyncify runs.
 */
import type Binaryen from "binaryen";

/**
 * Largest body (in Binaryen's expression count) inlined while the poll hook
 * is inlined: the hook is about ten, so 32 takes it and leaves room.
 */
const POLL_INLINE_SIZE_MAX = 32;

/**
 * Runs `inline` (a run of Binaryen's inlining pass) with the inliner allowed
 * to take only tiny functions (the poll hook). By default it also inlines
 * every function that has a single caller, whatever its size: in a program
 * of many functions called once (a `main` calling each step) that merges
 * them into one function of tens of thousands of expressions, on which
 * Asyncify then spends minutes. The global settings are put back afterwards.
 */
export function withInliningOnlyTiny<T>(binaryen: typeof Binaryen, inline: () => T): T {
  const always = binaryen.getAlwaysInlineMaxSize();
  const flexible = binaryen.getFlexibleInlineMaxSize();
  const oneCaller = binaryen.getOneCallerInlineMaxSize();
  binaryen.setAlwaysInlineMaxSize(POLL_INLINE_SIZE_MAX);
  binaryen.setFlexibleInlineMaxSize(0);
  binaryen.setOneCallerInlineMaxSize(0);
  try {
    return inline();
  } finally {
    binaryen.setAlwaysInlineMaxSize(always);
    binaryen.setFlexibleInlineMaxSize(flexible);
    binaryen.setOneCallerInlineMaxSize(oneCaller);
  }
}
