/**
 * Where each kind of Binaryen expression keeps its children, for the walkers
 * that rewrite function bodies (_polls.ts).
 */
import type Binaryen from "binaryen";

/** Where an expression keeps its children, by field name: single ones and lists. */
export type Keys = { refs: readonly string[]; lists: readonly string[] };

/** The child fields of every expression kind the walkers know; any other kind is opaque to them. */
export function childKeys(b: typeof Binaryen): Map<number, Keys> {
  const k = (refs: string[], lists: string[] = []): Keys => ({ refs, lists });
  return new Map<number, Keys>([
    [b.NopId, k([])],
    [b.BlockId, k([], ["children"])],
    [b.IfId, k(["condition", "ifTrue", "ifFalse"])],
    [b.LoopId, k(["body"])],
    [b.BreakId, k(["condition", "value"])],
    [b.SwitchId, k(["condition", "value"])],
    [b.CallId, k([], ["operands"])],
    [b.LocalGetId, k([])],
    [b.LocalSetId, k(["value"])],
    [b.GlobalGetId, k([])],
    [b.GlobalSetId, k(["value"])],
    [b.LoadId, k(["ptr"])],
    [b.StoreId, k(["ptr", "value"])],
    [b.AtomicRMWId, k(["ptr", "value"])],
    [b.AtomicCmpxchgId, k(["ptr", "expected", "replacement"])],
    [b.AtomicWaitId, k(["ptr", "expected", "timeout"])],
    [b.AtomicNotifyId, k(["ptr", "notifyCount"])],
    [b.AtomicFenceId, k([])],
    [b.SIMDExtractId, k(["vec"])],
    [b.SIMDReplaceId, k(["vec", "value"])],
    [b.SIMDShuffleId, k(["left", "right"])],
    [b.SIMDTernaryId, k(["a", "b", "c"])],
    [b.SIMDShiftId, k(["vec", "shift"])],
    [b.SIMDLoadId, k(["ptr"])],
    [b.SIMDLoadStoreLaneId, k(["ptr", "vec"])],
    [b.MemoryInitId, k(["dest", "offset", "size"])],
    [b.DataDropId, k([])],
    [b.MemoryCopyId, k(["dest", "source", "size"])],
    [b.MemoryFillId, k(["dest", "value", "size"])],
    [b.ConstId, k([])],
    [b.UnaryId, k(["value"])],
    [b.BinaryId, k(["left", "right"])],
    [b.SelectId, k(["ifTrue", "ifFalse", "condition"])],
    [b.DropId, k(["value"])],
    [b.ReturnId, k(["value"])],
    [b.MemorySizeId, k([])],
    [b.MemoryGrowId, k(["delta"])],
    [b.UnreachableId, k([])],
    [b.RefNullId, k([])],
    [b.RefFuncId, k([])],
    [b.RefEqId, k(["left", "right"])],
    [b.TableGetId, k(["index"])],
    [b.TableSetId, k(["index", "value"])],
    [b.TableSizeId, k([])],
    [b.TableGrowId, k(["value", "delta"])],
    [b.TupleMakeId, k([], ["operands"])],
    [b.TupleExtractId, k(["tuple"])],
  ]);
}

/** Accessors of expressions that binaryen.js's typings leave out (present in the build we depend on). */
export interface RawExpressions {
  Block: { getName(e: number): string | null; setName(e: number, name: string): void };
  Loop: { getName(e: number): string | null; setName(e: number, name: string): void };
  Break: { getName(e: number): string; setName(e: number, name: string): void; getValue(e: number): number };
  Switch: {
    getNumNames(e: number): number;
    getNameAt(e: number, i: number): string;
    setNameAt(e: number, i: number, name: string): void;
    getDefaultName(e: number): string;
    setDefaultName(e: number, name: string): void;
    getValue(e: number): number;
  };
  LocalGet: { getIndex(e: number): number; setIndex(e: number, i: number): void };
  LocalSet: { getIndex(e: number): number; setIndex(e: number, i: number): void };
}
export const rawExpressions = (b: typeof Binaryen): RawExpressions => b as unknown as RawExpressions;

/** Points every branch among `all` whose target `renamed` has a new name for at that name. */
export function retarget(b: typeof Binaryen, all: readonly number[], renamed: ReadonlyMap<string, string>): void {
  const r = rawExpressions(b);
  const target = (name: string): string => renamed.get(name) ?? name;
  for (const e of all) {
    const id = b.getExpressionId(e);
    if (id === b.BreakId) r.Break.setName(e, target(r.Break.getName(e)));
    if (id !== b.SwitchId) continue;
    for (let i = 0; i < r.Switch.getNumNames(e); i += 1) r.Switch.setNameAt(e, i, target(r.Switch.getNameAt(e, i)));
    r.Switch.setDefaultName(e, target(r.Switch.getDefaultName(e)));
  }
}

/** Binaryen's per-kind expression classes, as far as the rewrites use them. */
type ExpressionClass = Record<string, ((expr: number, ...args: number[]) => unknown) | undefined>;

let classCache: { b: typeof Binaryen; byId: Map<number, ExpressionClass> } | undefined;
function expressionClasses(b: typeof Binaryen): Map<number, ExpressionClass> {
  if (classCache?.b === b) return classCache.byId;
  const classes = b as unknown as Record<string, ExpressionClass | undefined>;
  const byId = new Map<number, ExpressionClass>();
  for (const [key, value] of Object.entries(b)) {
    const cls = classes[key.slice(0, -2)];
    if (key.endsWith("Id") && typeof value === "number" && cls !== undefined) byId.set(value, cls);
  }
  classCache = { b, byId };
  return byId;
}

/**
 * What {@link replaceWhere} does with an expression: nothing (undefined),
 * put what the function makes in its place, or give the whole rewrite up.
 */
export type Pick = (() => Binaryen.ExpressionRef) | "give-up" | undefined;

/**
 * Puts in place of every expression of `body` that `pick` (given its id,
 * and its fields unless it has no children) answers with a maker, what the
 * maker returns; innermost first, so a maker sees its expression's children
 * as already rewritten. Returns the new root; or undefined, with nothing
 * changed, when `pick` gives up or the body holds an expression whose
 * children the walker does not know.
 */
export function replaceWhere(b: typeof Binaryen, body: Binaryen.ExpressionRef, pick: (expr: number, id: number, info: Record<string, unknown> | undefined) => Pick): Binaryen.ExpressionRef | undefined {
  const keys = childKeys(b);
  const byId = expressionClasses(b);
  // First find every site and where it sits, changing nothing, so a body
  // that cannot be rewritten is left as it was.
  const sites: { parent: number; setter: string; index: number; make: () => number }[] = [];
  let root: (() => number) | undefined;
  const stack: { expr: number; parent: number; setter: string; index: number }[] = [{ expr: body, parent: 0, setter: "", index: -1 }];
  while (stack.length > 0) {
    const { expr, parent, setter, index } = stack.pop() as (typeof stack)[number];
    if (expr === 0) continue;
    const id = b.getExpressionId(expr);
    const k = keys.get(id);
    if (k === undefined) return undefined;
    // Leaves are not asked for their fields: binaryen.js has no description of some of them.
    const leaf = k.refs.length === 0 && k.lists.length === 0;
    const info = leaf ? undefined : (b.getExpressionInfo(expr) as unknown as Record<string, unknown>);
    const picked = pick(expr, id, info);
    if (picked === "give-up") return undefined;
    if (picked !== undefined) {
      if (parent === 0) root = picked;
      else sites.push({ parent, setter, index, make: picked });
    }
    if (info === undefined) continue;
    const cls = byId.get(id);
    for (const key of k.refs) {
      const child = (info[key] as number | undefined) ?? 0;
      if (child === 0) continue;
      const name = `set${key[0]?.toUpperCase() ?? ""}${key.slice(1)}`;
      if (typeof cls?.[name] !== "function") return undefined;
      stack.push({ expr: child, parent: expr, setter: name, index: -1 });
    }
    for (const key of k.lists) {
      const list = (info[key] as number[] | undefined) ?? [];
      const name = key === "children" ? "setChildAt" : "setOperandAt";
      if (list.length > 0 && typeof cls?.[name] !== "function") return undefined;
      list.forEach((child, i) => stack.push({ expr: child, parent: expr, setter: name, index: i }));
    }
  }
  // Children were found after their parents: replaced first.
  for (const site of sites.reverse()) {
    const setter = byId.get(b.getExpressionId(site.parent))?.[site.setter] as (expr: number, ...args: number[]) => unknown;
    if (site.index < 0) setter(site.parent, site.make());
    else setter(site.parent, site.index, site.make());
  }
  return root === undefined ? body : root();
}
