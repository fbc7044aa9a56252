/**
 * Loops that need no poll: ones that provably run at most {@link LOOP_SLICE}
 * iterations each time they are entered, and call nothing.
 *
 * Such a loop is no longer than one slice of a polled loop (`_polls.ts`): at
 * most `LOOP_SLICE` runs of a body that holds no call and no other loop, so a
 * bounded stretch of code, like straight-line code. Whatever repeats it
 * without end (an enclosing loop, a caller's loop, a recursion) is polled
 * itself. Leaving its poll out matters beyond the poll's own cost: a
 * function whose only loops are such loops holds no safe point, so Asyncify
 * leaves it and every call to it alone (a recursion's `fill` and `fold` in
 * `examples/c/recurse.c`, with a fixed 24-iteration loop each).
 *
 * Recognised shape (what compilers emit for `for (i = a; i != K; i += c)`
 * and its `<`, `>` variants), with nothing else in the body able to change
 * `i` or branch back to the loop:
 *
 *     (local.set $i (CONST a))            ;; right before the loop, same block
 *     (loop $L
 *       ...                               ;; no call, no loop, no other br to $L
 *       (br_if $L (CMP (local.tee $i (ADD|SUB (local.get $i) (CONST c))) (CONST K))))
 *
 * The trip count is then found by running the induction on its own, with the
 * comparison's exact wrap-around semantics, for at most `LOOP_SLICE` steps:
 * no algebra to get wrong.
 */
import type Binaryen from "binaryen";
import { childKeys } from "./_children.js";

/** Parts of binaryen.js its typings leave out (present in the build we depend on). */
interface Raw {
  Loop: { getName(loop: Binaryen.ExpressionRef): string | null; getBody(loop: Binaryen.ExpressionRef): Binaryen.ExpressionRef };
}

type Info = Record<string, unknown>;

const u = (v: bigint, bits: number): bigint => BigInt.asUintN(bits, v);
const signed = (v: bigint, bits: number): bigint => BigInt.asIntN(bits, v);

/**
 * The integer comparisons `test(left, right, bits)` in the order of their
 * opcodes (`i32.eq` 0x46 to `i32.ge_u` 0x4f, and `i64.eq` 0x51 on): eq, ne,
 * lt_s, lt_u, gt_s, gt_u, le_s, le_u, ge_s, ge_u.
 */
export const INTEGER_COMPARISONS: readonly ((x: bigint, k: bigint, bits: number) => boolean)[] = [
  (x, k, n) => u(x, n) === u(k, n),
  (x, k, n) => u(x, n) !== u(k, n),
  (x, k, n) => signed(x, n) < signed(k, n),
  (x, k, n) => u(x, n) < u(k, n),
  (x, k, n) => signed(x, n) > signed(k, n),
  (x, k, n) => u(x, n) > u(k, n),
  (x, k, n) => signed(x, n) <= signed(k, n),
  (x, k, n) => u(x, n) <= u(k, n),
  (x, k, n) => signed(x, n) >= signed(k, n),
  (x, k, n) => u(x, n) >= u(k, n),
];

/** A comparison `op(x, K)` with `x` the induction value, as a predicate on `bits`-wide values. */
function comparison(b: typeof Binaryen, op: number, flipped: boolean): ((x: bigint, k: bigint, bits: number) => boolean) | undefined {
  // Binaryen's ops, in the order of INTEGER_COMPARISONS.
  const ops = [
    [b.EqInt32, b.EqInt64],
    [b.NeInt32, b.NeInt64],
    [b.LtSInt32, b.LtSInt64],
    [b.LtUInt32, b.LtUInt64],
    [b.GtSInt32, b.GtSInt64],
    [b.GtUInt32, b.GtUInt64],
    [b.LeSInt32, b.LeSInt64],
    [b.LeUInt32, b.LeUInt64],
    [b.GeSInt32, b.GeSInt64],
    [b.GeUInt32, b.GeUInt64],
  ];
  const at = ops.findIndex((pair) => pair.includes(op));
  const found = INTEGER_COMPARISONS[at];
  if (found === undefined) return undefined;
  return flipped ? (x, k, n) => found(k, x, n) : found;
}

/** The integer value of a `Const` expression of type i32 or i64, else undefined. */
function constValue(b: typeof Binaryen, expr: Binaryen.ExpressionRef): bigint | undefined {
  if (expr === 0 || b.getExpressionId(expr) !== b.ConstId) return undefined;
  const info = b.getExpressionInfo(expr) as unknown as Info;
  const value = info["value"];
  if (typeof value === "number" && b.getExpressionType(expr) === b.i32) return BigInt(value);
  // binaryen.js gives an i64 constant as a BigInt.
  if (typeof value === "bigint" && b.getExpressionType(expr) === b.i64) return BigInt.asUintN(64, value);
  return undefined;
}

/** `(local.tee $i (ADD|SUB (local.get $i) (CONST c)))` → `{ index: i, step: ±c }`. */
function stepOf(b: typeof Binaryen, expr: Binaryen.ExpressionRef): { index: number; step: bigint; tee: Binaryen.ExpressionRef } | undefined {
  if (b.getExpressionId(expr) !== b.LocalSetId) return undefined;
  const set = b.getExpressionInfo(expr) as unknown as Info;
  if (set["isTee"] !== true) return undefined;
  const index = set["index"] as number;
  const value = set["value"] as number;
  if (b.getExpressionId(value) !== b.BinaryId) return undefined;
  const bin = b.getExpressionInfo(value) as unknown as Info;
  const op = bin["op"] as number;
  const left = bin["left"] as number;
  const right = bin["right"] as number;
  const add = op === b.AddInt32 || op === b.AddInt64;
  const sub = op === b.SubInt32 || op === b.SubInt64;
  if (!add && !sub) return undefined;
  const isOwnGet = (e: number): boolean => b.getExpressionId(e) === b.LocalGetId && (b.getExpressionInfo(e) as unknown as Info)["index"] === index;
  let c: bigint | undefined;
  if (isOwnGet(left)) c = constValue(b, right);
  else if (add && isOwnGet(right)) c = constValue(b, left);
  if (c === undefined) return undefined;
  return { index, step: sub ? -c : c, tee: expr };
}

/**
 * Whether `loop` (a child of a block, right after `prev`; `prev` 0 when it
 * is not) runs at most `limit` iterations per entry and holds no call and no
 * other loop, so it needs no poll.
 */
export function isBoundedLoop(b: typeof Binaryen, loop: Binaryen.ExpressionRef, prev: Binaryen.ExpressionRef, limit: number): boolean {
  if (prev === 0) return false;
  const raw = b as unknown as Raw;
  const name = raw.Loop.getName(loop);
  if (name === null || name === "") return false;
  const body = raw.Loop.getBody(loop);
  let last = body;
  if (b.getExpressionId(body) === b.BlockId) {
    const children = (b.getExpressionInfo(body) as unknown as Info)["children"] as number[];
    last = children[children.length - 1] ?? 0;
  }
  // The back-edge: the body's last expression, a conditional branch to the loop.
  if (last === 0 || b.getExpressionId(last) !== b.BreakId) return false;
  const br = b.getExpressionInfo(last) as unknown as Info;
  if (br["name"] !== name || (br["value"] as number) !== 0 || (br["condition"] as number) === 0) return false;
  const cond = br["condition"] as number;
  if (b.getExpressionId(cond) !== b.BinaryId) return false;
  const cmp = b.getExpressionInfo(cond) as unknown as Info;
  const left = cmp["left"] as number;
  const right = cmp["right"] as number;
  let induction = stepOf(b, left);
  let bound = constValue(b, right);
  let flipped = false;
  if (induction === undefined || bound === undefined) {
    induction = stepOf(b, right);
    bound = constValue(b, left);
    flipped = true;
  }
  if (induction === undefined || bound === undefined) return false;
  const test = comparison(b, cmp["op"] as number, flipped);
  if (test === undefined) return false;
  // The induction starts from a constant set right before the loop.
  if (b.getExpressionId(prev) !== b.LocalSetId) return false;
  const init = b.getExpressionInfo(prev) as unknown as Info;
  if (init["isTee"] === true || init["index"] !== induction.index) return false;
  const start = constValue(b, init["value"] as number);
  if (start === undefined) return false;
  if (!plainBody(b, body, name, induction.index, induction.tee)) return false;
  const bits = b.getExpressionType(induction.tee) === b.i64 ? 64 : 32;
  let x = start;
  for (let iterations = 1; iterations <= limit; iterations += 1) {
    x = BigInt.asUintN(bits, x + induction.step);
    if (!test(x, bound, bits)) return true;
  }
  return false;
}

/**
 * True when `body` holds no call, no loop, no expression the walker does not
 * know, no branch to `name` but the final back-edge, and no write to local
 * `index` but `tee`.
 */
function plainBody(b: typeof Binaryen, body: Binaryen.ExpressionRef, name: string, index: number, tee: Binaryen.ExpressionRef): boolean {
  const keys = childKeys(b);
  let branches = 0;
  const stack = [body];
  while (stack.length > 0) {
    const expr = stack.pop() as number;
    if (expr === 0) continue;
    const id = b.getExpressionId(expr);
    const k = keys.get(id);
    if (k === undefined || id === b.CallId || id === b.LoopId) return false;
    if (k.refs.length === 0 && k.lists.length === 0) continue;
    const info = b.getExpressionInfo(expr) as unknown as Info;
    if (id === b.BreakId && info["name"] === name) branches += 1;
    if (id === b.SwitchId && (info["defaultName"] === name || (info["names"] as string[]).includes(name))) return false;
    if (id === b.LocalSetId && info["index"] === index && expr !== tee) return false;
    for (const key of k.refs) stack.push((info[key] as number | undefined) ?? 0);
    for (const key of k.lists) for (const child of (info[key] as number[] | undefined) ?? []) stack.push(child);
  }
  return branches === 1;
}
