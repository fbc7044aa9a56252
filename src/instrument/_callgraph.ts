/**
 * Which functions can recurse. A function that is on no cycle of the call
 * graph and has no loop finishes in bounded time, so it needs no poll at its
 * entry; leaving it unpolled also keeps Asyncify away from it and from every
 * call to it, which is most of the instrumentation's cost in code built from
 * many small functions.
 */
import type Binaryen from "binaryen";

/** What a walk of one function body found. */
interface Facts {
  calls: Set<string>;
  /** Calls through a table or a reference, or an expression the walker does not know. */
  opaque: boolean;
}

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

function walk(b: typeof Binaryen, keys: Map<number, Keys>, body: number): Facts {
  const facts: Facts = { calls: new Set(), opaque: false };
  const stack = [body];
  while (stack.length > 0) {
    const expr = stack.pop() as number;
    if (expr === 0) continue;
    const id = b.getExpressionId(expr);
    const k = keys.get(id);
    if (k === undefined) {
      // call_indirect, call_ref, exceptions, GC: assume it may call anything.
      facts.opaque = true;
      continue;
    }
    // Leaves are not asked for their info: binaryen.js has none for some (unreachable).
    if (id !== b.CallId && k.refs.length === 0 && k.lists.length === 0) continue;
    const info = b.getExpressionInfo(expr) as unknown as Record<string, unknown> & { id: number };
    if (info.id === b.CallId) {
      const call = info as unknown as Binaryen.CallInfo;
      // A return_call is still a call for the graph.
      facts.calls.add(call.target);
    }
    for (const key of k.refs) stack.push((info[key] as number | undefined) ?? 0);
    for (const key of k.lists) for (const child of (info[key] as number[] | undefined) ?? []) stack.push(child);
  }
  return facts;
}

/**
 * Names of the defined functions that are on a cycle of the call graph (or
 * may be, through an indirect call): those need a poll at their entry.
 */
export function recursiveFunctions(b: typeof Binaryen, m: Binaryen.Module): Set<string> {
  const keys = childKeys(b);
  const graph = new Map<string, Facts>();
  const count = m.getNumFunctions();
  for (let i = 0; i < count; i += 1) {
    const info = b.getFunctionInfo(m.getFunctionByIndex(i));
    if (info.module) continue;
    graph.set(info.name, walk(b, keys, info.body));
  }
  const everything = [...graph.keys()];
  const edges = (name: string): Iterable<string> => {
    const facts = graph.get(name) as Facts;
    return facts.opaque ? everything : facts.calls;
  };
  return onCycles(everything, edges, (name) => graph.has(name));
}

/** Tarjan's strongly connected components, iteratively (call graphs can be deep). */
function onCycles(nodes: string[], edges: (n: string) => Iterable<string>, known: (n: string) => boolean): Set<string> {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const result = new Set<string>();
  let next = 0;
  for (const root of nodes) {
    if (index.has(root)) continue;
    const work: { node: string; it: Iterator<string> }[] = [];
    const open = (n: string): void => {
      index.set(n, next);
      low.set(n, next);
      next += 1;
      stack.push(n);
      onStack.add(n);
      work.push({ node: n, it: edges(n)[Symbol.iterator]() });
    };
    open(root);
    while (work.length > 0) {
      const top = work[work.length - 1] as { node: string; it: Iterator<string> };
      const step = top.it.next();
      if (!step.done) {
        const w = step.value;
        if (!known(w)) continue;
        if (w === top.node) result.add(w); // direct self-recursion
        if (!index.has(w)) open(w);
        else if (onStack.has(w)) low.set(top.node, Math.min(low.get(top.node) as number, index.get(w) as number));
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent !== undefined) low.set(parent.node, Math.min(low.get(parent.node) as number, low.get(top.node) as number));
      if (low.get(top.node) === index.get(top.node)) {
        const component: string[] = [];
        for (;;) {
          const w = stack.pop() as string;
          onStack.delete(w);
          component.push(w);
          if (w === top.node) break;
        }
        if (component.length > 1) for (const w of component) result.add(w);
      }
    }
  }
  return result;
}
