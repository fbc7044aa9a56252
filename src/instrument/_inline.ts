/**
 * Tiny leaf functions written in place of their calls, in the bodies the
 * safe-point pass rewrites (`_safepoints.ts`, `BodyWriter`).
 *
 * Why: V8 keeps no value in a register across a call, and the pass copies a
 * small loop's body `UNROLL_COPIES` times (`_unroll.ts`). A loop that calls
 * a small function (the sieve's counting loop and its hash, AssemblyScript's
 * `mix64`) then holds a call in every copy, and V8 keeps the loop's index on
 * the stack for all of them: a store and a load an iteration on the index's
 * own chain, where the original keeps it in a register and stores it only
 * on the way to its one call (docs/runtime.md, "Where the sieve's 10% goes").
 * With the callee written in place the copies hold no call at all: the
 * sieve's instrumented module went from 1.11–1.13 times the original's time
 * to 1.01–1.04 (with Binaryen's inlining as a scratch check first).
 *
 * A leaf, here: a defined function of numeric parameters, locals and at
 * most one result, whose body holds no call of any kind, no loop, no
 * exception handling and no `ref.func` (so it reaches no safe point and has
 * nothing to renumber), in at most {@link LEAF_INSTRUCTIONS_MAX}
 * instructions. A call to it becomes:
 *
 *     local.set $pN ... local.set $p0       ;; the arguments, from the stack
 *     (zero) local.set $l0 ...              ;; its locals start at zero, as in a call
 *     block (result T)                      ;; its function label
 *       BODY                                ;; locals renumbered, `return` a `br` here
 *     end
 *
 * The locals are the caller's, added once per callee per caller: the
 * written body is straight-line code with no call, so one use of them ends
 * before the next begins. A trap in it shows the caller in a stack trace,
 * not the leaf.
 */
import { skipImmediates } from "./_calls.js";
import { Reader } from "./_reader.js";
import { zero, type FuncType, type Writer } from "./_unwind.js";

/** Most instructions a leaf written in place may have (its last `end` counted): a hash's or an accessor's, not a routine's. */
export const LEAF_INSTRUCTIONS_MAX = 32;

/** Most parameters and locals a leaf written in place may have: each is a local of every caller it is written into. */
export const LEAF_LOCALS_MAX = 8;

const NUMERIC = new Set([0x7f, 0x7e, 0x7d, 0x7c]);

const OP = {
  block: 0x02,
  if: 0x04,
  end: 0x0b,
  br: 0x0c,
  return: 0x0f,
  local_get: 0x20,
  local_set: 0x21,
  local_tee: 0x22,
} as const;

/**
 * What a leaf's body is made of: bytes copied as they are, a local's access
 * (its index renumbered), or a `return` (a branch out of `depth` blocks).
 */
type Piece = Uint8Array | { op: number; local: number } | { depth: number };

/** A function that can be written in place of its calls (see the module's comment). */
export interface Leaf {
  params: readonly number[];
  /** Its declared locals' types, after the parameters. */
  locals: readonly number[];
  results: readonly number[];
  pieces: readonly Piece[];
}

/** Opcodes that keep a body from being written in place: calls, loops, exceptions, and `ref.func` (its index would need renumbering). */
const REFUSED = new Set([0x03, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x18, 0x19, 0x1f, 0xd2]);

/** Bodies longer than this, in bytes, are not read at all (most of a large module's): no leaf is this long. */
const LEAF_BYTES_MAX = LEAF_INSTRUCTIONS_MAX * 12 + 32;

/** `body` (a code entry: locals, then instructions) of a function of type `type`, as a {@link Leaf}; undefined when it is not one. */
export function leafOf(body: Uint8Array, type: FuncType): Leaf | undefined {
  if (body.length > LEAF_BYTES_MAX || type.results.length > 1) return undefined;
  if (![...type.params, ...type.results].every((t) => NUMERIC.has(t))) return undefined;
  const r = new Reader(body, 0);
  const locals: number[] = [];
  try {
    for (let groups = r.u32(); groups > 0; groups -= 1) {
      const count = r.u32();
      const t = r.byte();
      if (!NUMERIC.has(t) || type.params.length + locals.length + count > LEAF_LOCALS_MAX) return undefined;
      for (let k = 0; k < count; k += 1) locals.push(t);
    }
    if (type.params.length + locals.length > LEAF_LOCALS_MAX) return undefined;
    const pieces: Piece[] = [];
    let copied = r.pos;
    let depth = 0;
    let instructions = 0;
    while (r.pos < body.length) {
      const at = r.pos;
      const op = r.byte();
      instructions += 1;
      if (instructions > LEAF_INSTRUCTIONS_MAX || REFUSED.has(op)) return undefined;
      if (op === OP.local_get || op === OP.local_set || op === OP.local_tee || op === OP.return) {
        if (at > copied) pieces.push(body.subarray(copied, at));
        pieces.push(op === OP.return ? { depth } : { op, local: r.u32() });
        copied = r.pos;
        continue;
      }
      if (!skipImmediates(r, op)) return undefined;
      if (op === OP.block || op === OP.if) depth += 1;
      else if (op === OP.end) {
        depth -= 1;
        // The function's own end: the last byte of the body.
        if (depth < 0 && r.pos !== body.length) return undefined;
      }
    }
    if (depth !== -1) return undefined;
    if (body.length > copied) pieces.push(body.subarray(copied));
    return { params: type.params, locals, results: type.results, pieces };
  } catch (err: unknown) {
    // A body this pass cannot read is simply not written in place (the rest of the pass reads it, and says so).
    if (err instanceof RangeError) return undefined;
    throw err;
  }
}

/**
 * Writes `leaf` in place of a call to it, its arguments on the stack: into
 * `w`, with its parameters and locals at the caller's locals from `base`
 * on, in order.
 */
export function writeLeaf(w: Writer, leaf: Leaf, base: number): void {
  for (let k = leaf.params.length - 1; k >= 0; k -= 1) {
    w.byte(OP.local_set);
    w.u32(base + k);
  }
  leaf.locals.forEach((t, k) => {
    zero(w, t);
    w.byte(OP.local_set);
    w.u32(base + leaf.params.length + k);
  });
  w.byte(OP.block);
  w.byte(leaf.results.length === 0 ? 0x40 : (leaf.results[0] as number));
  for (const piece of leaf.pieces) {
    if (piece instanceof Uint8Array) w.bytes(piece);
    else if ("op" in piece) {
      w.byte(piece.op);
      w.u32(base + piece.local);
    } else {
      w.byte(OP.br);
      w.u32(piece.depth);
    }
  }
}
