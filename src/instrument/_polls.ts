/**
 * Safe points: a countdown poll in every loop and at the entry of every
 * function that can recurse, and a depth counter in each of the latter.
 *
 * Why loops are cut into slices: Asyncify guards every piece of code that
 * shares a loop body with a call that may unwind, so a poll *inside* a hot
 * loop costs a few loads and branches on every iteration. Here the call sits
 * in an outer loop that the hot loop leaves only every `LOOP_SLICE`
 * iterations (or when it is entered):
 *
 *     (loop $slice                     ;; the original loop node, renamed
 *       budget -= n + 1                ;; back-edges since the last visit, and this visit
 *       (if (budget <= 0) budget = (call ferry.poll))
 *       n = 0
 *       (loop $L                       ;; the original name: `br $L` lands here
 *         (br_if $slice (i32.eq (n = n + 1) LOOP_SLICE))
 *         BODY))                       ;; unchanged; falling off exits both
 *
 * When BODY calls nothing that can unwind, Asyncify treats the whole inner
 * loop as one piece of code it skips while rewinding: the hot path is one
 * increment of a local, a compare and a branch. `n` is one local per function
 * shared by all its loops: every back-edge counts on it and only a visit of
 * the countdown sets it back, so at most `LOOP_SLICE` back-edges of a frame
 * pass between two visits, however the loops nest; and each visit takes off
 * the budget the back-edges it covers, so the host is crossed about every
 * `budget` iterations, as with a poll on every iteration. (A frame starts
 * with `n = 0`, as locals do.)
 */
import type Binaryen from "binaryen";
import { isBoundedLoop } from "./_bounded.js";
import { childKeys, replaceWhere } from "./_children.js";
import { Outliner } from "./_outline.js";
import type { Restartable } from "./_restart.js";
import { isUnrollable, UNROLL_COPIES, unrolledLoop } from "./_unroll.js";

/**
 * Back-edges of one frame between two visits of the countdown. Large enough
 * that the visit (and the Asyncify code around its call) is lost in the
 * iterations; it does not change how often the host is crossed.
 */
export const LOOP_SLICE = 256;

/** Parts of binaryen.js its typings leave out (present in the build we depend on). */
interface Raw {
  _BinaryenFunctionAddVar(func: Binaryen.FunctionRef, type: Binaryen.Type): number;
  _BinaryenExpressionFinalize(expr: Binaryen.ExpressionRef): void;
  Loop: {
    getName(loop: Binaryen.ExpressionRef): string | null;
    setName(loop: Binaryen.ExpressionRef, name: string): void;
    getBody(loop: Binaryen.ExpressionRef): Binaryen.ExpressionRef;
    setBody(loop: Binaryen.ExpressionRef, body: Binaryen.ExpressionRef): void;
  };
  Function: { setBody(func: Binaryen.FunctionRef, body: Binaryen.ExpressionRef): void };
}
const raw = (b: typeof Binaryen): Raw => b as unknown as Raw;

/** What {@link injectPolls} added that the runtime must know. */
export interface PollSites {
  /** The import the countdown calls when the budget runs out. */
  poll: string;
  /** Depth counter global → the function whose frames it counts. */
  depth: { global: string; function: string }[];
}

/**
 * Adds the countdown (global `budget`, initially `initial`) and the polls.
 * Functions in `recursive` also get an entry poll and a depth counter,
 * incremented on entry and decremented on return: the runtime sizes an
 * unwind from the counters instead of walking a deep stack.
 */
export function injectPolls(
  b: typeof Binaryen,
  m: Binaryen.Module,
  recursive: Set<string>,
  options: { budget: string; initial: number; import: { module: string; name: string }; looping?: Set<string>; reaches?: (callee: string) => boolean; restart?: Restartable },
): PollSites {
  const poll = "__ferry_poll";
  m.addGlobal(options.budget, b.i32, true, m.i32.const(options.initial));
  m.addFunctionImport(poll, options.import.module, options.import.name, b.none, b.i32);
  const countdown = (weight: Binaryen.ExpressionRef): Binaryen.ExpressionRef =>
    m.block(null, [
      m.global.set(options.budget, m.i32.sub(m.global.get(options.budget, b.i32), weight)),
      m.if(m.i32.le_s(m.global.get(options.budget, b.i32), m.i32.const(0)), m.global.set(options.budget, m.call(poll, [], b.i32))),
    ]);

  const depth: PollSites["depth"] = [];
  const defined: string[] = [];
  for (let i = 0; i < m.getNumFunctions(); i += 1) {
    const info = b.getFunctionInfo(m.getFunctionByIndex(i));
    if (!info.module) defined.push(info.name);
  }
  for (const name of defined) {
    if (!recursive.has(name)) continue;
    const counter = `__ferry_depth_${depth.length}`;
    m.addGlobal(counter, b.i32, true, m.i32.const(0));
    depth.push({ global: counter, function: name });
    const moved = countDepth(b, m, name, counter, countdown);
    if (moved !== undefined && options.looping?.has(name) === true) options.looping.add(moved);
  }
  let labels = 0;
  const outliner = options.reaches === undefined ? undefined : new Outliner(b, m, options.reaches);
  // The outlined loops' functions come after these, and are not polled.
  const count = m.getNumFunctions();
  for (let i = 0; i < count; i += 1) {
    const func = m.getFunctionByIndex(i);
    const info = b.getFunctionInfo(func);
    if (info.module) continue;
    // Walking a body through binaryen.js costs a call per field: skip the
    // ones the binary scan saw no loop in (most of a large module).
    if (options.looping !== undefined && !options.looping.has(info.name)) continue;
    const loops = findLoops(b, info.body).filter(({ loop, prev }) => !isBoundedLoop(b, loop, prev, LOOP_SLICE)).map(({ loop }) => loop);
    if (loops.length === 0) continue;
    const n = raw(b)._BinaryenFunctionAddVar(func, b.i32);
    // A restartable function's fast copy leaves where the budget runs out and a safe point is wanted (`_restart.ts`); nothing in it unwinds, so nothing is outlined.
    const restart = options.restart;
    const fast_copy = restart?.fast.has(info.name) === true;
    const tick = restart !== undefined && fast_copy ? (w: Binaryen.ExpressionRef) => restart.abandon(info.results, w) : countdown;
    for (const loop of loops) {
      const name = raw(b).Loop.getName(loop);
      if (name === null || name === "") continue; // a loop nothing branches to never iterates
      const slice = `__ferry_slice_${labels}`;
      labels += 1;
      const body = raw(b).Loop.getBody(loop);
      // An unrolled loop counts once per UNROLL_COPIES iterations, and is
      // charged for all of them: the budget still counts iterations.
      const unroll = isUnrollable(b, body, options.reaches);
      const copies = unroll ? UNROLL_COPIES : 1;
      const step = m.br(slice, m.i32.eq(m.local.tee(n, m.i32.add(m.local.get(n, b.i32), m.i32.const(1)), b.i32), m.i32.const(LOOP_SLICE / copies)));
      const inner = unroll ? unrolledLoop(b, m, name, body, step, slice) : m.loop(name, m.block(null, [step, body], b.auto));
      const counted = unroll ? m.i32.mul(m.local.get(n, b.i32), m.i32.const(copies)) : m.local.get(n, b.i32);
      const weight = m.i32.add(counted, m.i32.const(1));
      raw(b).Loop.setName(loop, slice);
      const outlined = fast_copy ? inner : (outliner?.outline(func, inner) ?? inner);
      // A loop that never fell off its end keeps its type, which the code
      // around it was typed by (an unrolled one is typed as if it could).
      const placed = b.getExpressionType(loop) === b.unreachable && b.getExpressionType(outlined) !== b.unreachable ? m.block(null, [outlined, m.unreachable()], b.unreachable) : outlined;
      raw(b).Loop.setBody(loop, m.block(null, [tick(weight), m.local.set(n, m.i32.const(0)), placed], b.auto));
      raw(b)._BinaryenExpressionFinalize(loop);
    }
  }
  return { poll, depth };
}

/**
 * `f`'s body becomes `depth += 1; countdown; r = (block $exit BODY'); countdown; depth -= 1; r`,
 * where BODY' is BODY with every `return x` turned into `br $exit x`: one
 * frame per level of recursion, with no inliner to run over the module (on
 * hundreds of thousands of functions that pass alone took minutes).
 * Counted before the poll, so a frame that unwinds from its entry poll is
 * counted too. A frame left by a trap or by an unwind keeps its count: the
 * counter may only be too high, which makes an unwind borrow more than it
 * needs, never less.
 *
 * A body holding an expression the walker cannot see into (exceptions, GC,
 * tail calls) might return from where no decrement follows; such a function
 * keeps its body in `<name>$ferry_body`, called from a wrapper that counts
 * (two frames a level, both in the frame bound); its name is returned.
 */
function countDepth(b: typeof Binaryen, m: Binaryen.Module, name: string, counter: string, countdown: (w: Binaryen.ExpressionRef) => Binaryen.ExpressionRef): string | undefined {
  const func = m.getFunction(name);
  const info = b.getFunctionInfo(func);
  const exit = `__ferry_exit_${counter}`;
  const bump = (delta: number): Binaryen.ExpressionRef => m.global.set(counter, m.i32.add(m.global.get(counter, b.i32), m.i32.const(delta)));
  let body = info.body;
  const direct = returnsToBreaks(b, m, body, exit);
  let inner: string | undefined;
  if (direct === undefined) {
    inner = `${name}$ferry_body`;
    m.addFunction(inner, info.params, info.results, info.vars, info.body);
    body = m.call(inner, b.expandType(info.params).map((t, i) => m.local.get(i, t)), info.results);
  } else {
    body = m.block(exit, [direct], info.results);
  }
  // A poll on the way out too, while the frame is still counted: a deep
  // recursion climbing back up runs no entry of its own, and its return
  // path (a fold, a sum) may hold no loop, so without it 60,000 levels
  // coming back passed no safe point for 10 ms.
  const children = [bump(1), countdown(m.i32.const(1))];
  if (info.results === b.none) {
    children.push(body, countdown(m.i32.const(1)), bump(-1));
  } else {
    const result = raw(b)._BinaryenFunctionAddVar(func, info.results);
    children.push(m.local.set(result, body), countdown(m.i32.const(1)), bump(-1), m.local.get(result, info.results));
  }
  raw(b).Function.setBody(func, m.block(null, children, b.auto));
  return inner;
}

/**
 * Rewrites every `return` in `body` into a `br` to `exit` (both have type
 * unreachable, so no enclosing type changes), and returns the new root; or
 * undefined, with nothing changed, when the body holds an expression whose
 * children the walker does not know, or a tail call.
 */
function returnsToBreaks(b: typeof Binaryen, m: Binaryen.Module, body: Binaryen.ExpressionRef, exit: string): Binaryen.ExpressionRef | undefined {
  return replaceWhere(b, body, (expr, id, info) => {
    if ((id === b.CallId || id === b.CallIndirectId) && info?.["isReturn"] === true) return "give-up";
    if (id !== b.ReturnId) return undefined;
    return () => {
      const value = (b.getExpressionInfo(expr) as unknown as { value: number }).value;
      return value === 0 ? m.br(exit) : m.br(exit, 0, value);
    };
  });
}

/**
 * Every loop of `body`, with the expression right before it when its parent
 * is a block (0 otherwise): that is where a counted loop sets its induction.
 */
function findLoops(b: typeof Binaryen, body: Binaryen.ExpressionRef): { loop: Binaryen.ExpressionRef; prev: Binaryen.ExpressionRef }[] {
  const keys = childKeys(b);
  const loops: { loop: Binaryen.ExpressionRef; prev: Binaryen.ExpressionRef }[] = [];
  const stack: { expr: number; prev: number }[] = [{ expr: body, prev: 0 }];
  while (stack.length > 0) {
    const { expr, prev } = stack.pop() as (typeof stack)[number];
    if (expr === 0) continue;
    const id = b.getExpressionId(expr);
    if (id === b.LoopId) loops.push({ loop: expr, prev });
    // A catch's `pop` holds nothing (and binaryen.js cannot describe it).
    if (id === b.PopId) continue;
    const k = keys.get(id);
    if (k === undefined) {
      // Expressions the walker does not know (exceptions, GC) may hold loops.
      for (const child of opaqueChildren(b, expr)) stack.push({ expr: child, prev: 0 });
      continue;
    }
    if (k.refs.length === 0 && k.lists.length === 0) continue;
    const info = b.getExpressionInfo(expr) as unknown as Record<string, unknown>;
    for (const key of k.refs) stack.push({ expr: (info[key] as number | undefined) ?? 0, prev: 0 });
    for (const key of k.lists) {
      const list = (info[key] as number[] | undefined) ?? [];
      list.forEach((child, i) => stack.push({ expr: child, prev: id === b.BlockId && i > 0 ? (list[i - 1] as number) : 0 }));
    }
  }
  return loops;
}

/** Children of the expressions the call graph treats as opaque, as far as they can hold loops. */
function opaqueChildren(b: typeof Binaryen, expr: Binaryen.ExpressionRef): number[] {
  const info = b.getExpressionInfo(expr) as unknown as Record<string, unknown>;
  const out: number[] = [];
  for (const value of Object.values(info)) {
    if (Array.isArray(value)) for (const v of value) if (typeof v === "number") out.push(v);
  }
  for (const key of ["target", "body", "ref", "value"]) {
    const v = info[key];
    if (typeof v === "number" && v !== 0) out.push(v);
  }
  return out;
}
