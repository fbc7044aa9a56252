/**
 * Small innermost loops run {@link UNROLL_COPIES} copies of their body per
 * count of the slice counter (`_polls.ts`).
 *
 * Why: in a tight loop (a sieve's marking loop is a store and an add) the
 * counter's increment, compare and branch on every back-edge cost as much as
 * the body, and V8 adds its own interrupt check and (in Liftoff) tier-up
 * charge at every loop header. With the body copied, a back-edge of the
 * program becomes a forward branch to the next copy; only every
 * `UNROLL_COPIES`-th goes back to the loop header, where the counter and
 * V8's checks run once for all the copies:
 *
 *     (loop $head
 *       (br_if $slice (i32.eq (n = n + 1) (LOOP_SLICE / UNROLL_COPIES)))
 *       (block $exit
 *         (block $next0 BODY0 (br $exit))   ;; `br $L` in BODY0 is `br $next0`
 *         (block $next1 BODY1 (br $exit))   ;; falling off a copy leaves the loop
 *         ...
 *         (br $head)))
 *
 * Only a loop whose body calls nothing that can reach a safe point (so
 * Asyncify has nothing to guard in it and nothing can unwind from a copy; a
 * function that reaches none has no loop and no recursion below it, so it
 * returns in bounded time), holds no other loop, is small
 * (`UNROLL_BODY_MAX` expressions) and falls off its end with no value is
 * unrolled, and only when every expression in it is one the walker knows:
 * every label a copy declares is renamed in it (Binaryen wants each name
 * once in a function) and every branch to one of those, or to the loop,
 * follows. Anything else keeps the plain slice.
 */
import type Binaryen from "binaryen";
import { childKeys, rawExpressions, retarget } from "./_children.js";

/** Copies of an unrolled body per count: the counter, and V8's loop checks, run once per this many iterations. */
export const UNROLL_COPIES = 8;

/**
 * Largest body, in expressions, that is copied: the copies grow the code
 * (and V8's compile time) by `UNROLL_COPIES - 1` times this, and a larger
 * body hides the counter's cost anyway.
 */
export const UNROLL_BODY_MAX = 64;

/**
 * Every expression of `body`, parents before children; undefined when one is
 * of a kind the walker does not know, when there are more than `max`, or as
 * soon as `keep` refuses one (so a caller looking for a reason to give up
 * walks no further than the first).
 */
export function expressions(b: typeof Binaryen, body: Binaryen.ExpressionRef, max: number, keep?: (expr: number, id: number) => boolean): number[] | undefined {
  const keys = childKeys(b);
  const out: number[] = [];
  const stack = [body];
  while (stack.length > 0) {
    const expr = stack.pop() as number;
    if (expr === 0) continue;
    if (out.length === max) return undefined;
    const id = b.getExpressionId(expr);
    if (keep !== undefined && !keep(expr, id)) return undefined;
    out.push(expr);
    const k = keys.get(id);
    if (k === undefined) return undefined;
    if (k.refs.length === 0 && k.lists.length === 0) continue;
    const info = b.getExpressionInfo(expr) as unknown as Record<string, unknown>;
    for (const key of k.refs) stack.push((info[key] as number | undefined) ?? 0);
    for (const key of k.lists) for (const child of (info[key] as number[] | undefined) ?? []) stack.push(child);
  }
  return out;
}

/**
 * Whether an expression of a loop's body lets the loop be rewritten as a
 * piece of code no unwind can leave from (unrolled here, or outlined in
 * `_outline.ts`): for `expressions`' `keep`. A call that can reach a safe
 * point could unwind from inside it (Asyncify would then guard it), and so
 * could an indirect one; another loop has a slice of its own; a tuple's or an
 * exception's labels are not worth the cases. `reaches` tells whether a call
 * to a function of that name can reach a safe point.
 */
export function staysInSlice(b: typeof Binaryen, reaches: (callee: string) => boolean): (expr: number, id: number) => boolean {
  const refused = new Set([b.CallIndirectId, b.LoopId, b.TupleMakeId, b.TupleExtractId]);
  return (expr, id) => {
    if (id !== b.CallId) return !refused.has(id);
    const call = b.getExpressionInfo(expr) as Binaryen.CallInfo;
    return !call.isReturn && !reaches(call.target);
  };
}

/**
 * Whether the loop whose body is `body` is one {@link unrolledLoop} copies.
 * `reaches` is as for {@link staysInSlice}; without it, no call is accepted.
 */
export function isUnrollable(b: typeof Binaryen, body: Binaryen.ExpressionRef, reaches: (callee: string) => boolean = () => true): boolean {
  const type = b.getExpressionType(body);
  if (type !== b.none && type !== b.unreachable) return false;
  return expressions(b, body, UNROLL_BODY_MAX, staysInSlice(b, reaches)) !== undefined;
}

/**
 * Renames in `copy` every label it declares (`suffix` appended) and every
 * branch to one of them, and turns every branch to `loop` into one to `next`.
 */
function relabel(b: typeof Binaryen, copy: Binaryen.ExpressionRef, loop: string, next: string, suffix: string): void {
  const r = rawExpressions(b);
  const all = expressions(b, copy, Number.MAX_SAFE_INTEGER) ?? [];
  const renamed = new Map<string, string>([[loop, next]]);
  for (const e of all) {
    if (b.getExpressionId(e) !== b.BlockId) continue;
    const name = r.Block.getName(e);
    if (name === null || name === "") continue;
    renamed.set(name, `${name}${suffix}`);
    r.Block.setName(e, `${name}${suffix}`);
  }
  retarget(b, all, renamed);
}

/**
 * The unrolled inner loop for a loop named `loop` with body `body` (checked
 * with {@link isUnrollable}), headed by `step`, the slice counter's exit test.
 * `label` makes the new labels unique in the function.
 */
export function unrolledLoop(b: typeof Binaryen, m: Binaryen.Module, loop: string, body: Binaryen.ExpressionRef, step: Binaryen.ExpressionRef, label: string): Binaryen.ExpressionRef {
  const head = `${label}_head`;
  const exit = `${label}_exit`;
  // Copied before any is relabelled: each copy starts from the original.
  const bodies = [body];
  for (let i = 1; i < UNROLL_COPIES; i += 1) bodies.push(m.copyExpression(body));
  const copies = bodies.map((copy, i) => {
    const next = `${label}_next${i}`;
    relabel(b, copy, loop, next, `${label}_${i}`);
    return m.block(next, [copy, m.br(exit)], b.none);
  });
  return m.loop(head, m.block(null, [step, m.block(exit, [...copies, m.br(head)], b.none)], b.none));
}
