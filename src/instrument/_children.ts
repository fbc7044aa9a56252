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
