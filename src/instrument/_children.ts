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
