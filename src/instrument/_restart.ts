/**
 * Functions that can run again from their start: a fast copy with no safe
 * point, and the instrumented one for when a safe point is wanted.
 *
 * Why: Asyncify guards every piece of code around a call that may unwind.
 * A function that searches a list comparing strings (flite's `feat_val`
 * calling `strcmp`) has a loop in its callee, so the callee holds a poll,
 * can unwind, and the search loop around each call is cut into guarded
 * pieces: 2.4 times the original's time for `feat_val`, 1.5 for `strcmp`.
 *
 * A function that writes nothing outside its frame (no store, no global, no
 * table, no memory growth, no import, only calls to functions like it;
 * `rerunnable` in `_callgraph.ts`) gives the same result when run again
 * from its start with the same arguments: the guest's memory and globals
 * are as they were, since nothing else runs in the guest meanwhile. Each
 * such function `f` that can reach a safe point becomes three:
 *
 *     f(args)                  ;; the original name: exports, tables, and calls the rewrite below left
 *       r = f$ferry_fast(args)
 *       if (restart) { restart = 0; r = f$ferry_slow(args) }
 *       r
 *
 * and each direct call of `f` from another function runs the same in place
 * (its arguments kept in locals for the run again), a call fewer.
 *
 * - `f$ferry_fast`: the body, calling the fast copies of its callees. Its
 *   loops count down the same budget as every polled loop, but where the
 *   budget runs out they call `ferry.poll_restartable`, which never unwinds:
 *   it answers the next budget, or 0 when the host wants a safe point (a
 *   suspend is asked for). Then the copy sets `restart` and returns at once
 *   (a zero of its result type, never used), and so does every fast caller
 *   up to the wrapper, right after the call. Nothing it did is seen: it
 *   wrote nothing.
 * - `f$ferry_slow`: the body as instrumented anywhere else (polls,
 *   Asyncify), calling the slow copies: the run again, from the start,
 *   which reaches its first poll at once (the budget is spent) and can
 *   unwind there and anywhere after.
 *
 * So the fast copies hold no call that may unwind, and Asyncify leaves them
 * alone; a suspend costs, at most, running again what the abandoned call
 * had done (once: the run again is the slow copy, which a suspend does not
 * abandon, so no call is abandoned for ever). The host is still crossed
 * about every `budget` iterations, and a loop still reaches a safe point
 * within one slice of its iterations once one is asked for.
 *
 * `restart` is 0 at every safe point (only a fast copy sets it, and the
 * wrapper clears it before anything can unwind), so it is not captured.
 */
import type Binaryen from "binaryen";
import { replaceWhere } from "./_children.js";

/** The import a fast copy's countdown calls: the next budget, or 0 to leave. */
export const RESTART_POLL_IMPORT = { module: "ferry", name: "poll_restartable" } as const;

/** Suffixes of the two copies. */
const FAST = "$ferry_fast";
const SLOW = "$ferry_slow";

/** The name of `name`'s fast copy. */
export function fastCopy(name: string): string {
  return name + FAST;
}

/** What {@link makeRestartable} made. */
export interface Restartable {
  /** The fast copies: polled with {@link abandon}, never outlined. */
  fast: Set<string>;
  /** The slow copies, each from its original's name: polled and instrumented as usual. */
  slow: Map<string, string>;
  /**
   * The countdown of a fast copy whose result type is `results`: takes
   * `weight` off the budget, and where it runs out asks the host for the
   * next, leaving the function when the host answers 0.
   */
  abandon(results: Binaryen.Type, weight: Binaryen.ExpressionRef): Binaryen.ExpressionRef;
}

/** Binaryen's setters its typings leave out. */
interface Raw {
  _BinaryenFunctionAddVar(func: Binaryen.FunctionRef, type: Binaryen.Type): number;
  Function: { setBody(func: Binaryen.FunctionRef, body: Binaryen.ExpressionRef): void };
  Call: { getTarget(e: Binaryen.ExpressionRef): string; setTarget(e: Binaryen.ExpressionRef, name: string): void };
}
const raw = (b: typeof Binaryen): Raw => b as unknown as Raw;

/**
 * Splits each function of `names` (callees before callers, as the call
 * graph lists them) into a wrapper, a fast copy and a slow copy (see the
 * module's comment). `budget` is the countdown's global (made by the
 * caller). A function whose body the walker cannot rewrite is left as it
 * is, and so is every caller of it in `names`.
 */
export function makeRestartable(b: typeof Binaryen, m: Binaryen.Module, names: readonly string[], callers: readonly string[], budget: string): Restartable {
  const flag = "__ferry_restart";
  const poll = "__ferry_poll_restartable";
  const fast = new Set<string>();
  const slow = new Map<string, string>();
  const zero = (t: Binaryen.Type): Binaryen.ExpressionRef | undefined => {
    if (t === b.i32) return m.i32.const(0);
    if (t === b.i64) return m.i64.const(BigInt(0));
    if (t === b.f32) return m.f32.const(0);
    if (t === b.f64) return m.f64.const(0);
    return undefined;
  };
  const leave = (results: Binaryen.Type): Binaryen.ExpressionRef => (results === b.none ? m.return() : m.return(zero(results)));
  const restartable: Restartable = {
    fast,
    slow,
    abandon(results, weight) {
      return m.block(null, [
        m.global.set(budget, m.i32.sub(m.global.get(budget, b.i32), weight)),
        m.if(
          m.i32.le_s(m.global.get(budget, b.i32), m.i32.const(0)),
          m.block(null, [
            m.global.set(budget, m.call(poll, [], b.i32)),
            m.if(m.i32.le_s(m.global.get(budget, b.i32), m.i32.const(0)), m.block(null, [m.global.set(flag, m.i32.const(1)), leave(results)])),
          ]),
        ),
      ]);
    },
  };
  if (names.length === 0) return restartable;
  const listed = new Set(names);
  const chosen = new Set<string>();
  for (const name of names) {
    const info = b.getFunctionInfo(m.getFunction(name));
    if (info.results !== b.none && zero(info.results) === undefined) continue;
    // Every restartable callee must have been split too; else this one stays as it is.
    const copy = (suffix: string): Binaryen.ExpressionRef | undefined => {
      const body = m.copyExpression(info.body);
      return replaceWhere(b, body, (expr, id, fields) => {
        if (id !== b.CallId) return undefined;
        if (fields?.["isReturn"] === true) return "give-up";
        const target = raw(b).Call.getTarget(expr);
        if (!listed.has(target)) return undefined;
        if (!chosen.has(target)) return "give-up";
        raw(b).Call.setTarget(expr, target + suffix);
        if (suffix === SLOW) return undefined;
        // A fast callee that left: leave too, at once, before its result is used.
        const type = b.getExpressionType(expr);
        return () => {
          const func = m.getFunction(name + FAST);
          if (type === b.none) return m.block(null, [expr, m.if(m.global.get(flag, b.i32), leave(info.results))]);
          const tmp = raw(b)._BinaryenFunctionAddVar(func, type);
          return m.block(null, [m.local.set(tmp, expr), m.if(m.global.get(flag, b.i32), leave(info.results)), m.local.get(tmp, type)], type);
        };
      });
    };
    // The fast copy is added before its body is rewritten: the rewrite adds its temporaries to it.
    const fast_func = m.addFunction(name + FAST, info.params, info.results, info.vars, m.nop());
    const fast_body = copy(FAST);
    const slow_body = fast_body === undefined ? undefined : copy(SLOW);
    if (fast_body === undefined || slow_body === undefined) {
      m.removeFunction(name + FAST);
      continue;
    }
    if (chosen.size === 0) {
      // Declared with the first split (the copies name them already; nothing is checked before the module is validated).
      m.addGlobal(flag, b.i32, true, m.i32.const(0));
      m.addFunctionImport(poll, RESTART_POLL_IMPORT.module, RESTART_POLL_IMPORT.name, b.none, b.i32);
    }
    raw(b).Function.setBody(fast_func, fast_body);
    m.addFunction(name + SLOW, info.params, info.results, info.vars, slow_body);
    chosen.add(name);
    fast.add(name + FAST);
    slow.set(name, name + SLOW);
    // The original becomes the wrapper, its parameters the arguments.
    const func = m.getFunction(name);
    const params = b.expandType(info.params).map((type, local) => ({ local, type }));
    raw(b).Function.setBody(func, runAgain(b, m, func, name, params, [], flag));
  }
  for (const caller of callers) inlineWrappers(b, m, caller, chosen, flag);
  return restartable;
}

/**
 * The wrapper's logic, in `func`: the fast copy of `target` with the
 * arguments in `args` (locals of `func`), then, if it left, the slow copy
 * with the same; after `before` (what sets those locals). Its value is the
 * call's.
 */
function runAgain(b: typeof Binaryen, m: Binaryen.Module, func: Binaryen.FunctionRef, target: string, args: readonly { local: number; type: Binaryen.Type }[], before: Binaryen.ExpressionRef[], flag: string): Binaryen.ExpressionRef {
  const results = b.getFunctionInfo(m.getFunction(target)).results;
  const call = (copy: string): Binaryen.ExpressionRef => m.call(target + copy, args.map(({ local, type }) => m.local.get(local, type)), results);
  const again = (then: Binaryen.ExpressionRef): Binaryen.ExpressionRef => m.if(m.global.get(flag, b.i32), m.block(null, [m.global.set(flag, m.i32.const(0)), then]));
  if (results === b.none) return m.block(null, [...before, call(FAST), again(call(SLOW))]);
  const r = raw(b)._BinaryenFunctionAddVar(func, results);
  return m.block(null, [...before, m.local.set(r, call(FAST)), again(m.local.set(r, call(SLOW))), m.local.get(r, results)], results);
}

/**
 * Runs the wrapper's logic in place at each direct call from `caller` of a
 * function of `chosen`: the arguments go to locals of the caller, for the
 * run again. A call the walker cannot rewrite (a tail call, a body with
 * expressions it does not know) keeps calling the wrapper.
 */
function inlineWrappers(b: typeof Binaryen, m: Binaryen.Module, caller: string, chosen: ReadonlySet<string>, flag: string): void {
  const func = m.getFunction(caller);
  const body = b.getFunctionInfo(func).body;
  const rewritten = replaceWhere(b, body, (expr, id, fields) => {
    if (id !== b.CallId || fields?.["isReturn"] === true) return undefined;
    const target = raw(b).Call.getTarget(expr);
    if (!chosen.has(target)) return undefined;
    return () => {
      const operands = (b.getExpressionInfo(expr) as unknown as { operands: number[] }).operands;
      const args = b.expandType(b.getFunctionInfo(m.getFunction(target)).params).map((type) => ({ local: raw(b)._BinaryenFunctionAddVar(func, type), type }));
      const sets = operands.map((op, i) => m.local.set((args[i] as (typeof args)[number]).local, op));
      return runAgain(b, m, func, target, args, sets, flag);
    };
  });
  if (rewritten !== undefined && rewritten !== body) raw(b).Function.setBody(func, rewritten);
}
