/**
 * Which functions can recurse. A function that is on no cycle of the call
 * graph and has no loop finishes in bounded time, so it needs no poll at its
 * entry; leaving it unpolled also keeps Asyncify away from it and from every
 * call to it, which is most of the instrumentation's cost in code built from
 * many small functions.
 *
 * Linear in the size of the module, also for one of hundreds of thousands of
 * functions: the calls are read from the binary (`_calls.ts`), and "an
 * indirect call may call anything" is one node of the graph (every function
 * that calls indirectly calls it, and it calls every function) instead of an
 * edge to every function from each such caller.
 */
import type Binaryen from "binaryen";
import { scanCalls, type ModuleCalls } from "./_calls.js";

/**
 * Names of the defined functions that are on a cycle of the call graph (or
 * may be, through an indirect call): those need a poll at their entry.
 * `wasm` is the binary `m` was read from, unchanged; without it, `m` is
 * written out to be scanned.
 */
export function recursiveFunctions(b: typeof Binaryen, m: Binaryen.Module, wasm?: Uint8Array): Set<string> {
  return readCallGraph(b, m, wasm).recursive;
}

/** What {@link readCallGraph} finds. */
export interface CallGraph {
  /** The defined functions on a cycle of the call graph (or that may be, through an indirect call). */
  recursive: Set<string>;
  /** The defined functions whose bodies may hold a loop; the others need no walk for polls. */
  looping: Set<string>;
}

/** The call graph's cycles and the functions with loops, read from the binary in one scan. */
export function readCallGraph(b: typeof Binaryen, m: Binaryen.Module, wasm?: Uint8Array): CallGraph {
  const scanned = scanCalls(wasm ?? m.emitBinary());
  const count = m.getNumFunctions();
  if (count !== scanned.imported + scanned.bodies.length) {
    throw new Error(`call graph: Binaryen has ${count} functions, the binary ${scanned.imported} imported and ${scanned.bodies.length} defined`);
  }
  // binaryen.js has these helpers at the top level; its types declare them elsewhere.
  const fn = (b as unknown as { Function: { getName(func: Binaryen.FunctionRef): string } }).Function;
  const name = (i: number): string => fn.getName(m.getFunctionByIndex(scanned.imported + i));
  const recursive = new Set<string>();
  // Binaryen keeps a read module's functions in index order, imports first.
  for (const i of onCycles(scanned)) recursive.add(name(i));
  const looping = new Set<string>();
  scanned.bodies.forEach((body, i) => {
    if (body.loops) looping.add(name(i));
  });
  return { recursive, looping };
}

/**
 * Tarjan's strongly connected components, iteratively (call graphs can be
 * deep), over defined functions 0..n-1 plus node n, "anything an indirect
 * call may reach". Returns the defined functions on a cycle.
 */
function onCycles(calls: ModuleCalls): number[] {
  const n = calls.bodies.length;
  const any = n;
  const nodes = n + 1;
  const index = new Int32Array(nodes).fill(-1);
  const low = new Int32Array(nodes);
  const onStack = new Uint8Array(nodes);
  const selfLoop = new Uint8Array(nodes);
  const stack = new Int32Array(nodes);
  let sp = 0;
  // The walk: a node and how far through its edges it is.
  const workNode = new Int32Array(nodes);
  const workEdge = new Int32Array(nodes);
  let wp = 0;
  let next = 0;
  const result: number[] = [];

  /** Edge `k` of `v` (a defined function or `any`), or -1 past the last. Callees that are imports are -2 (skipped). */
  const edge = (v: number, k: number): number => {
    if (v === any) return k < n ? k : -1;
    const body = calls.bodies[v] as { calls: number[]; opaque: boolean };
    if (k < body.calls.length) {
      const callee = (body.calls[k] as number) - calls.imported;
      return callee >= 0 && callee < n ? callee : -2;
    }
    return k === body.calls.length && body.opaque ? any : -1;
  };
  const open = (v: number): void => {
    index[v] = next;
    low[v] = next;
    next += 1;
    stack[sp] = v;
    sp += 1;
    onStack[v] = 1;
    workNode[wp] = v;
    workEdge[wp] = 0;
    wp += 1;
  };

  for (let root = 0; root < nodes; root += 1) {
    if ((index[root] as number) >= 0) continue;
    open(root);
    while (wp > 0) {
      const v = workNode[wp - 1] as number;
      const k = workEdge[wp - 1] as number;
      const w = edge(v, k);
      if (w !== -1) {
        workEdge[wp - 1] = k + 1;
        if (w === -2) continue;
        if (w === v) selfLoop[v] = 1;
        if ((index[w] as number) < 0) open(w);
        else if (onStack[w] === 1) low[v] = Math.min(low[v] as number, index[w] as number);
        continue;
      }
      wp -= 1;
      if (wp > 0) {
        const parent = workNode[wp - 1] as number;
        low[parent] = Math.min(low[parent] as number, low[v] as number);
      }
      if (low[v] === index[v]) {
        let size = 0;
        let top = sp;
        do {
          top -= 1;
          size += 1;
        } while (stack[top] !== v);
        for (let i = top; i < sp; i += 1) {
          const w = stack[i] as number;
          onStack[w] = 0;
          if (w !== any && (size > 1 || selfLoop[w] === 1)) result.push(w);
        }
        sp = top;
      }
    }
  }
  return result;
}
