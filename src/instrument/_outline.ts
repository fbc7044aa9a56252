/**
 * A polled loop's inner loop (`_polls.ts`) in a function of its own, when
 * nothing in it can reach a safe point.
 *
 * Why: Asyncify rewrites every function that can reach a safe point, and the
 * function holding a polled loop is one. It flattens the code into
 * temporaries, coalesces them, and saves at an unwind every local live where
 * the unwind happens. A temporary a hot loop writes on every iteration (the
 * value of each condition) can share its local with one that is live at the
 * slice's poll, so the save reads it, and the engine must keep every one of
 * those values in a register or on the stack: in a sieve's loops, a flag
 * materialized at each compare and a bound spilled to the stack, 12% of
 * its run under TurboFan with the loops otherwise unchanged.
 *
 * Outlined, the inner loop is a function Asyncify does not touch (it calls
 * nothing that can unwind), called once per slice:
 *
 *     (loop $slice
 *       countdown; n = 0
 *       code = (call $__ferry_loop_K (local.get a) (local.get b) ...)
 *       w1 = (global.get $__ferry_out_i32_0) ...   ;; locals the loop wrote
 *       (br_if $T1 (code == 1)) ...)                ;; where the loop left to
 *
 * The function takes every local the loop uses as a parameter, runs the loop
 * unchanged (renumbered), and on leaving writes the locals it may have
 * written to globals (read back at once by the caller, so never live at a
 * safe point and never captured) and returns which way it left: 0 when it
 * fell off its end, j when it branched to the j-th label outside it (the
 * slice's step is one of those).
 *
 * Only a loop of a function with at least {@link OUTLINE_FUNCTION_LOCALS_MIN}
 * locals, whose every expression the walker knows, that calls nothing
 * that can reach a safe point, holds no other loop, no return and no branch
 * carrying a value out of it, and uses at most {@link OUTLINE_LOCALS_MAX}
 * locals of number or vector types is outlined.
 */
import type Binaryen from "binaryen";
import { rawExpressions, retarget } from "./_children.js";
import { expressions, staysInSlice } from "./_unroll.js";

/** Most locals an outlined loop may use (each is a parameter). */
export const OUTLINE_LOCALS_MAX = 32;

/**
 * Fewest locals (parameters included) the function holding a loop must have
 * for the loop to move out. With fewer, the values Asyncify keeps alive fit
 * in the engine's registers anyway, and a call per entry would only cost a
 * loop that runs a few iterations each time (a `strcmp`).
 */
export const OUTLINE_FUNCTION_LOCALS_MIN = 8;

/** Largest loop, in expressions, that is walked for outlining (each costs a few calls into binaryen.js). */
export const OUTLINE_EXPRESSIONS_MAX = 1024;

/** binaryen.js's way to add a local, which its typings leave out. */
const addVar = (b: typeof Binaryen, func: Binaryen.FunctionRef, type: Binaryen.Type): number =>
  (b as unknown as { _BinaryenFunctionAddVar(f: Binaryen.FunctionRef, t: Binaryen.Type): number })._BinaryenFunctionAddVar(func, type);

/** State kept across the loops of one module: the exit globals made so far, and the functions' exit-code locals. */
export class Outliner {
  readonly #slots = new Map<Binaryen.Type, number>();
  readonly #codes = new Map<Binaryen.FunctionRef, number>();
  #count = 0;

  constructor(private readonly b: typeof Binaryen, private readonly m: Binaryen.Module, private readonly reaches: (callee: string) => boolean) {}

  /**
   * The code that replaces `inner` (a loop of `func`, about to be placed
   * where it was) once outlined, or undefined when it is kept in place.
   */
  outline(func: Binaryen.FunctionRef, inner: Binaryen.ExpressionRef): Binaryen.ExpressionRef | undefined {
    const { b, m } = this;
    const r = rawExpressions(b);
    const type = b.getExpressionType(inner);
    if (type !== b.none && type !== b.unreachable) return undefined;
    const localType = localTypes(b, func);
    if (localType.length < OUTLINE_FUNCTION_LOCALS_MIN) return undefined;
    // As an unrolled body, plus no return (the function would return instead
    // of its caller). Most loops that stay are refused for a call: the walk
    // stops there.
    const stays = staysInSlice(b, this.reaches);
    const all = expressions(b, inner, OUTLINE_EXPRESSIONS_MAX, (e, id) => (e === inner ? true : id !== b.ReturnId && stays(e, id)));
    if (all === undefined) return undefined;
    const declared = new Set<string>();
    for (const e of all) {
      const id = b.getExpressionId(e);
      if (id === b.BlockId || id === b.LoopId) {
        const name = id === b.BlockId ? r.Block.getName(e) : r.Loop.getName(e);
        if (name !== null && name !== "") declared.add(name);
      }
    }
    const used = new Map<number, Binaryen.Type>();
    const written = new Set<number>();
    const targets: string[] = [];
    const outside = (name: string): void => {
      if (!declared.has(name) && !targets.includes(name)) targets.push(name);
    };
    for (const e of all) {
      const id = b.getExpressionId(e);
      if (id === b.LocalGetId || id === b.LocalSetId) {
        const index = id === b.LocalGetId ? r.LocalGet.getIndex(e) : r.LocalSet.getIndex(e);
        const t = localType[index];
        if (t === undefined || ![b.i32, b.i64, b.f32, b.f64, b.v128].includes(t)) return undefined;
        used.set(index, t);
        if (id === b.LocalSetId) written.add(index);
      } else if (id === b.BreakId) {
        const name = r.Break.getName(e);
        if (!declared.has(name) && r.Break.getValue(e) !== 0) return undefined;
        outside(name);
      } else if (id === b.SwitchId) {
        const names = [r.Switch.getDefaultName(e)];
        for (let i = 0; i < r.Switch.getNumNames(e); i += 1) names.push(r.Switch.getNameAt(e, i));
        if (r.Switch.getValue(e) !== 0 && names.some((n) => !declared.has(n))) return undefined;
        names.forEach(outside);
      }
    }
    if (used.size > OUTLINE_LOCALS_MAX) return undefined;

    const params = [...used.keys()].sort((x, y) => x - y);
    const position = new Map(params.map((index, i) => [index, i]));
    for (const e of all) {
      const id = b.getExpressionId(e);
      if (id === b.LocalGetId) r.LocalGet.setIndex(e, position.get(r.LocalGet.getIndex(e)) as number);
      else if (id === b.LocalSetId) r.LocalSet.setIndex(e, position.get(r.LocalSet.getIndex(e)) as number);
    }
    const name = `__ferry_loop_${this.#count}`;
    this.#count += 1;
    const exitLabel = (j: number): string => `${name}_out${j}`;
    retarget(b, all, new Map(targets.map((t, j) => [t, exitLabel(j + 1)])));

    // Each written local goes out through a global of its type: the k-th
    // written local of a type uses that type's k-th global.
    const outs = new Map<number, string>();
    const perType = new Map<Binaryen.Type, number>();
    for (const index of params) {
      if (!written.has(index)) continue;
      const t = used.get(index) as Binaryen.Type;
      const k = perType.get(t) ?? 0;
      perType.set(t, k + 1);
      outs.set(index, this.#slot(t, k));
    }
    const leave = (code: number): Binaryen.ExpressionRef[] => [
      ...[...outs].map(([index, global]) => m.global.set(global, m.local.get(position.get(index) as number, used.get(index) as Binaryen.Type))),
      m.return(m.i32.const(code)),
    ];
    let body = m.block(null, [inner, ...leave(0)], b.auto);
    targets.forEach((_, j) => {
      body = m.block(null, [m.block(exitLabel(j + 1), [body], b.none), ...leave(j + 1)], b.auto);
    });
    m.addFunction(name, b.createType(params.map((index) => used.get(index) as Binaryen.Type)), b.i32, [], body);

    let code = this.#codes.get(func);
    if (code === undefined) {
      code = addVar(b, func, b.i32);
      this.#codes.set(func, code);
    }
    const call = m.local.set(code, m.call(name, params.map((index) => m.local.get(index, used.get(index) as Binaryen.Type)), b.i32));
    const back = [...outs].map(([index, global]) => m.local.set(index, m.global.get(global, used.get(index) as Binaryen.Type)));
    const branches = targets.map((target, j) => m.br(target, m.i32.eq(m.local.get(code, b.i32), m.i32.const(j + 1))));
    // A loop that never falls off its end left by one of the branches: say so to the code around it, as the loop did.
    const tail = type === b.unreachable ? [m.unreachable()] : [];
    return m.block(null, [call, ...back, ...branches, ...tail], type);
  }

  /** The `k`-th exit global of type `t`, made when first needed. */
  #slot(t: Binaryen.Type, k: number): string {
    const { b, m } = this;
    const named = (i: number): string => `__ferry_out_${typeName(b, t)}_${i}`;
    const made = this.#slots.get(t) ?? 0;
    if (k >= made) {
      for (let i = made; i <= k; i += 1) m.addGlobal(named(i), t, true, zero(b, m, t));
      this.#slots.set(t, k + 1);
    }
    return named(k);
  }
}

/** The type of each local of `func`, parameters first. */
function localTypes(b: typeof Binaryen, func: Binaryen.FunctionRef): Binaryen.Type[] {
  const info = b.getFunctionInfo(func);
  return [...b.expandType(info.params), ...info.vars];
}

function typeName(b: typeof Binaryen, t: Binaryen.Type): string {
  return new Map([[b.i32, "i32"], [b.i64, "i64"], [b.f32, "f32"], [b.f64, "f64"], [b.v128, "v128"]]).get(t) ?? String(t);
}

function zero(b: typeof Binaryen, m: Binaryen.Module, t: Binaryen.Type): Binaryen.ExpressionRef {
  // This build's i64.const takes one bigint; its typings still say two halves.
  if (t === b.i64) return (m.i64.const as unknown as (value: bigint) => Binaryen.ExpressionRef)(0n);
  if (t === b.f32) return m.f32.const(0);
  if (t === b.f64) return m.f64.const(0);
  if (t === b.v128) return m.v128.const([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  return m.i32.const(0);
}
