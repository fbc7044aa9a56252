/**
 * The call graph, read from the binary: which functions can recurse (they
 * need a poll at their entry and a depth counter), and which can reach no
 * safe point at all (Asyncify need not instrument them).
 *
 * Linear in the size of the module, also for one of hundreds of thousands of
 * functions: the calls are read from the binary (`_calls.ts`). An indirect
 * call of a type goes to one node per signature, whose edges go to the
 * functions of that signature a table may hold (`_tables.ts`); a call the
 * scanner cannot follow (a `call_ref`, an unknown instruction) goes to one
 * node "anything", whose edges go to every function. No indirect caller has
 * an edge to each of its possible callees (quadratic).
 */
import type Binaryen from "binaryen";
import { scanCalls, type ModuleCalls } from "./_calls.js";
import { readTables, type IndirectTargets } from "./_tables.js";

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
  /** Those of `recursive` that count themselves on entry in the binary pass ({@link cycles}). */
  entry_counted: string[];
  /** The defined functions whose bodies may hold a loop; the others need no walk for polls. */
  looping: Set<string>;
  /**
   * Defined functions that can reach no safe point (no blocking import, and
   * no poll: no loop, no recursion, directly or through any call) but hold an
   * indirect call: Asyncify, which assumes an indirect call may reach
   * anything, would instrument them and every caller. Empty when `blocking`
   * was not given.
   */
  unreaching_indirect: string[];
  /** How many defined functions can reach a safe point (are on the stack at one, so instrumented). */
  reaching: number;
  /**
   * Whether a call to the function named `callee` can reach a safe point:
   * false only for an import that does not block and a defined function
   * that can reach none (so it runs in bounded time: no loop, no recursion,
   * no blocking import below it). True for any name it does not know, and
   * for everything when `blocking` was not given. Its first call reads the
   * names from the module: make it while the module lives.
   */
  reaches(callee: string): boolean;
  /** Why indirect calls could not be narrowed by signature; undefined when they were. */
  unnarrowed: string | undefined;
  /**
   * Defined functions that can reach a safe point but can be run again from
   * their start with the same result (`_restart.ts`): they write nothing
   * outside their frame, call no import and make no indirect call, are on
   * no cycle, take and return numbers only, and call only functions of
   * which all that holds too. Callees come before their callers. Empty
   * when `blocking` was not given.
   */
  restartable: string[];
  /** The defined functions that call one of `restartable` directly and are not among them. */
  restartable_callers: string[];
}

/** Adjacency lists of the graph's nodes, packed. */
export interface Graph {
  /** Defined functions are nodes 0..n-1; node n is "anything"; n+1+s is signature s. */
  n: number;
  start: Int32Array;
  edges: Int32Array;
}

/** The call graph by function index, as {@link analyzeCalls} reads it. */
export interface CallAnalysis {
  scanned: ModuleCalls;
  tables: IndirectTargets;
  /** Defined functions (indices among them) on a cycle of the call graph. */
  cyclic: number[];
  /**
   * One entry per defined function: 1 for the functions on a cycle that
   * count themselves on entry ({@link cycles}), enough that
   * every cycle holds one.
   */
  entry_counted: Uint8Array;
  /** One entry per defined function: 1 when it can reach a safe point. All 1 when `blocking` was not given. */
  reached: Uint8Array;
  /** Defined functions that can reach a safe point and can be run again from their start (see {@link CallGraph}), callees first. */
  restartable: number[];
  /** Whether a call to function `index` (imports first) can reach a safe point. */
  reaches(index: number): boolean;
  /**
   * Once the polls are written, with `polled` (one entry per defined
   * function) saying which hold one: which defined functions can unwind (a
   * blocking import, a poll, or a call to what can), and which types of
   * indirect call reach one. The same graph as before the polls, read
   * again for nothing.
   */
  unwinding(polled: Uint8Array): { defined(f: number): boolean; type(t: number): boolean };
}

/**
 * The call graph of `wasm` by index: its cycles and (given the imports that
 * may block, "module.name" with `*` as a wildcard) which functions can
 * reach a safe point and which can be run again. `numeric(index)` says
 * whether function `index` (imports first) takes and returns numbers only,
 * with at most one result.
 */
export function analyzeCalls(wasm: Uint8Array, blocking: readonly string[] | undefined, numeric: (f: number) => boolean): CallAnalysis {
  const scanned = scanCalls(wasm);
  const tables = readTables(wasm, scanned.bodies.flatMap((body) => body.refs));
  // A body the scanner could not read to its end may take references it did not see.
  const opaque = scanned.bodies.findIndex((body) => body.opaque);
  if (opaque >= 0 && tables.unnarrowed === undefined) tables.unnarrowed = `function ${opaque} holds a call_ref or an instruction the scanner does not know`;
  const graph = buildGraph(scanned, tables);
  const { cyclic, entry_counted } = cycles(graph);
  const n = scanned.bodies.length;
  const unwinding = (polled: Uint8Array): { defined(f: number): boolean; type(t: number): boolean } => {
    const can = reachers(graph, scanned, tables, [], blocking ?? [], false, polled);
    const narrow = tables.unnarrowed === undefined;
    return {
      defined: (f) => can[f] === 1,
      type: (t) => {
        const s = tables.type_sig[t] ?? -1;
        return !narrow || s < 0 || can[n + 1 + s] === 1;
      },
    };
  };
  if (blocking === undefined) return { scanned, tables, cyclic, entry_counted, reached: new Uint8Array(n).fill(1), restartable: [], reaches: () => true, unwinding };
  const reached = reachers(graph, scanned, tables, cyclic, blocking);
  const restartable = rerunnable(scanned, cyclic, numeric).filter((i) => reached[i] === 1);
  const patterns = blocking.map(wildcard);
  const blocks = tables.imports.map((name) => patterns.some((p) => p.test(name)));
  const reaches = (index: number): boolean => {
    if (index < scanned.imported) return blocks[index] === true || tables.imports[index] === undefined;
    const f = index - scanned.imported;
    return f >= n || reached[f] === 1;
  };
  return { scanned, tables, cyclic, entry_counted, reached: reached.subarray(0, n), restartable, reaches, unwinding };
}

/**
 * The call graph's cycles, the functions with loops, and (given the imports
 * that may block, "module.name" with `*` as a wildcard) the functions that
 * can reach no safe point, read from the binary in one scan.
 */
export function readCallGraph(b: typeof Binaryen, m: Binaryen.Module, wasm?: Uint8Array, blocking?: readonly string[]): CallGraph {
  const bytes = wasm ?? m.emitBinary();
  const count = m.getNumFunctions();
  const numeric = new Set<number>([b.none, b.i32, b.i64, b.f32, b.f64]);
  const numbers = (t: number): boolean => numeric.has(t) || b.expandType(t).every((x) => x === b.i32 || x === b.i64 || x === b.f32 || x === b.f64);
  const analysis = analyzeCalls(bytes, blocking, (index) => {
    const info = b.getFunctionInfo(m.getFunctionByIndex(index));
    return b.expandType(info.results).length <= 1 && numbers(info.params) && numbers(info.results);
  });
  const { scanned, tables, cyclic, reached } = analysis;
  if (count !== scanned.imported + scanned.bodies.length) {
    throw new Error(`call graph: Binaryen has ${count} functions, the binary ${scanned.imported} imported and ${scanned.bodies.length} defined`);
  }
  // binaryen.js has these helpers at the top level; its types declare them elsewhere.
  const fn = (b as unknown as { Function: { getName(func: Binaryen.FunctionRef): string } }).Function;
  const name = (i: number): string => fn.getName(m.getFunctionByIndex(scanned.imported + i));
  const recursive = new Set<string>();
  // Binaryen keeps a read module's functions in index order, imports first.
  for (const i of cyclic) recursive.add(name(i));
  const looping = new Set<string>();
  scanned.bodies.forEach((body, i) => {
    if (body.loops) looping.add(name(i));
  });
  const unreaching_indirect: string[] = [];
  let reaching = scanned.bodies.length;
  let reaches = (_callee: string): boolean => true;
  let restartable: string[] = [];
  const restartable_callers: string[] = [];
  if (blocking !== undefined) {
    const chosen = analysis.restartable;
    restartable = chosen.map(name);
    const is_chosen = new Uint8Array(scanned.bodies.length);
    for (const i of chosen) is_chosen[i] = 1;
    scanned.bodies.forEach((body, i) => {
      if (is_chosen[i] === 0 && body.calls.some((c) => is_chosen[c - scanned.imported] === 1)) restartable_callers.push(name(i));
    });
    reaching = 0;
    scanned.bodies.forEach((body, i) => {
      if (reached[i] === 1) reaching += 1;
      else if (body.indirect.length > 0) unreaching_indirect.push(name(i));
    });
    // Names are read from Binaryen (a call each) only if somebody asks.
    let bounded: Set<string> | undefined;
    reaches = (callee) => {
      bounded ??= boundedCallees(m, fn, scanned.imported, reached, tables.imports, blocking);
      return !bounded.has(callee);
    };
  }
  const entry_counted = cyclic.filter((i) => analysis.entry_counted[i] === 1).map(name);
  return { recursive, entry_counted, looping, unreaching_indirect, reaching, reaches, unnarrowed: tables.unnarrowed, restartable, restartable_callers };
}

/**
 * The defined functions (indices among them) that a call can run again from
 * its start with the same result: a body that writes nothing outside its
 * frame, makes no indirect call, is on no cycle, takes and returns numbers
 * only (`numeric`), and calls only defined functions of which all that
 * holds. In an order where callees come first.
 */
function rerunnable(scanned: ModuleCalls, cyclic: readonly number[], numeric: (f: number) => boolean): number[] {
  const n = scanned.bodies.length;
  const on_cycle = new Uint8Array(n);
  for (const f of cyclic) on_cycle[f] = 1;
  // 0 unknown, 1 yes, 2 no; callees settled first (no cycles among candidates), iteratively.
  const state = new Uint8Array(n);
  const order: number[] = [];
  const candidate = (f: number): boolean => {
    const body = scanned.bodies[f] as ModuleCalls["bodies"][number];
    if (body.writes || body.opaque || body.indirect.length > 0 || on_cycle[f] === 1) return false;
    return numeric(scanned.imported + f);
  };
  for (let root = 0; root < n; root += 1) {
    if (state[root] !== 0) continue;
    const stack = [root];
    while (stack.length > 0) {
      const f = stack[stack.length - 1] as number;
      if (state[f] !== 0) {
        stack.pop();
        continue;
      }
      if (!candidate(f)) {
        state[f] = 2;
        stack.pop();
        continue;
      }
      const callees = (scanned.bodies[f] as ModuleCalls["bodies"][number]).calls.map((c) => c - scanned.imported);
      const open = callees.find((c) => c >= 0 && c < n && state[c] === 0);
      if (open !== undefined) {
        stack.push(open);
        continue;
      }
      state[f] = callees.every((c) => c >= 0 && c < n && state[c] === 1) ? 1 : 2;
      if (state[f] === 1) order.push(f);
      stack.pop();
    }
  }
  return order;
}

/** Names of the imports that do not block and of the defined functions `reached` (one entry each) leaves unmarked. */
function boundedCallees(m: Binaryen.Module, fn: { getName(func: Binaryen.FunctionRef): string }, imported: number, reached: Uint8Array, imports: readonly string[], blocking: readonly string[]): Set<string> {
  const patterns = blocking.map(wildcard);
  const out = new Set<string>();
  for (let i = 0; i < imported; i += 1) {
    const full = imports[i];
    if (full !== undefined && !patterns.some((p) => p.test(full))) out.add(fn.getName(m.getFunctionByIndex(i)));
  }
  reached.forEach((r, i) => {
    if (r === 0) out.add(fn.getName(m.getFunctionByIndex(imported + i)));
  });
  return out;
}

function buildGraph(calls: ModuleCalls, tables: IndirectTargets): Graph {
  const n = calls.bodies.length;
  const any = n;
  const narrow = tables.unnarrowed === undefined;
  let sigs = 0;
  for (const s of tables.type_sig) sigs = Math.max(sigs, s + 1);
  const nodes = n + 1 + sigs;
  /** Where an indirect call of type index `t` goes. */
  const target = (t: number): number => {
    const s = tables.type_sig[t] ?? -1;
    return narrow && s >= 0 ? n + 1 + s : any;
  };
  const start = new Int32Array(nodes + 1);
  // Count, then fill.
  const members: number[] = [];
  for (let f = 0; f < n; f += 1) {
    const body = calls.bodies[f] as ModuleCalls["bodies"][number];
    start[f + 1] = body.calls.length + body.indirect.length + (body.opaque ? 1 : 0);
    const index = calls.imported + f;
    const s = tables.function_sig[index] ?? -1;
    if (narrow && s >= 0 && tables.addressable[index] === 1) {
      members.push(f);
      start[n + 2 + s] = (start[n + 2 + s] as number) + 1;
    }
  }
  start[any + 1] = n;
  for (let v = 0; v < nodes; v += 1) start[v + 1] = (start[v + 1] as number) + (start[v] as number);
  const edges = new Int32Array(start[nodes] as number);
  const fill = start.slice(0, nodes);
  const add = (from: number, to: number): void => {
    edges[fill[from] as number] = to;
    fill[from] = (fill[from] as number) + 1;
  };
  for (let f = 0; f < n; f += 1) {
    const body = calls.bodies[f] as ModuleCalls["bodies"][number];
    for (const callee of body.calls) {
      const c = callee - calls.imported;
      add(f, c >= 0 && c < n ? c : -2); // an import: no node
    }
    for (const t of body.indirect) add(f, target(t));
    if (body.opaque) add(f, any);
  }
  for (let f = 0; f < n; f += 1) add(any, f);
  for (const f of members) add(n + 1 + (tables.function_sig[calls.imported + f] as number), f);
  return { n, start, edges };
}

/**
 * The defined functions on a cycle of the call graph (`cyclic`), and those
 * of them that count themselves on entry (`entry_counted`): enough that every cycle of the call graph holds one (a feedback
 * vertex set), so a recursion of any shape crosses a countdown on each turn,
 * while a function on a cycle only through a path rarely taken does not pay
 * one on every call. (In flite, every function that can print an error is
 * on a cycle: `vfprintf` calls a stream's writer through a pointer of a type
 * that many functions share, some of which call back into them.) Chosen
 * greedily, one strongly connected component at a time: every function
 * calling itself, and the functions with the most edges in times out inside
 * the component (one in 32 of them, at least one); they are taken out, and
 * what is left split again. Past a budget of work (some components of tens
 * of thousands), every function of the components left is taken, as for
 * all of them before.
 */
export function cycles(graph: Graph): { cyclic: number[]; entry_counted: Uint8Array } {
  const { n, start, edges } = graph;
  const nodes = start.length - 1;
  const chosen = new Uint8Array(n);
  const walker = new ComponentWalker(graph);
  walker.budget = 16 * (edges.length + nodes) + 1_000_000;
  // The components with a cycle, of the whole graph (every cycle holds a function).
  walker.live.fill(1);
  const work = walker.components();
  walker.live.fill(0);
  const cyclic: number[] = [];
  for (const comp of work) for (const v of comp) if (v < n) cyclic.push(v);
  const inDegree = new Int32Array(nodes);
  const outDegree = new Int32Array(nodes);
  while (work.length > 0) {
    const comp = work.pop() as Int32Array;
    if (walker.budget < 0) {
      for (const v of comp) if (v < n) chosen[v] = 1;
      continue;
    }
    for (const v of comp) walker.live[v] = 1;
    for (const v of comp) {
      walker.budget -= (start[v + 1] as number) - (start[v] as number) + 1;
      for (let k = start[v] as number; k < (start[v + 1] as number); k += 1) {
        const w = edges[k] as number;
        if (w < 0 || walker.live[w] !== 1) continue;
        inDegree[w] = (inDegree[w] as number) + 1;
        outDegree[v] = (outDegree[v] as number) + 1;
        // A function calling itself is taken whatever else is.
        if (w === v && v < n) chosen[v] = 1;
      }
    }
    const candidates: number[] = [];
    for (const v of comp) if (v < n && chosen[v] === 0) candidates.push(v);
    const score = (v: number): number => (inDegree[v] as number) * (outDegree[v] as number);
    candidates.sort((x, y) => score(y) - score(x));
    const take = Math.max(1, Math.ceil(candidates.length / 32));
    for (let j = 0; j < take && j < candidates.length; j += 1) chosen[candidates[j] as number] = 1;
    for (const v of comp) {
      inDegree[v] = 0;
      outDegree[v] = 0;
      if (v < n && chosen[v] === 1) walker.live[v] = 0;
    }
    work.push(...walker.components(comp));
    for (const v of comp) walker.live[v] = 0;
  }
  return { cyclic, entry_counted: chosen };
}

/**
 * Tarjan's strongly connected components over the nodes marked in `live`,
 * iteratively (call graphs can be deep), in arrays kept from one call to
 * the next (a call walks only the nodes it reaches); `budget` is charged
 * the edges walked.
 */
class ComponentWalker {
  readonly live: Uint8Array;
  budget = 0;
  readonly #graph: Graph;
  readonly #index: Int32Array;
  readonly #low: Int32Array;
  readonly #onStack: Uint8Array;
  readonly #self: Uint8Array;
  readonly #stack: Int32Array;
  readonly #frameNode: Int32Array;
  readonly #frameEdge: Int32Array;

  constructor(graph: Graph) {
    const nodes = graph.start.length - 1;
    this.#graph = graph;
    this.live = new Uint8Array(nodes);
    this.#index = new Int32Array(nodes).fill(-1);
    this.#low = new Int32Array(nodes);
    this.#onStack = new Uint8Array(nodes);
    this.#self = new Uint8Array(nodes);
    this.#stack = new Int32Array(nodes);
    this.#frameNode = new Int32Array(nodes);
    this.#frameEdge = new Int32Array(nodes);
  }

  /** The components with a cycle (more than one node, or a node calling itself) among the live nodes reached from `roots` (every node when not given). */
  components(roots?: Iterable<number>): Int32Array[] {
    const { start, edges } = this.#graph;
    const index = this.#index;
    const low = this.#low;
    const found: Int32Array[] = [];
    const visited: number[] = [];
    let sp = 0;
    let fp = 0;
    let next = 0;
    const open = (v: number): void => {
      index[v] = next;
      low[v] = next;
      next += 1;
      visited.push(v);
      this.#stack[sp] = v;
      sp += 1;
      this.#onStack[v] = 1;
      this.#frameNode[fp] = v;
      this.#frameEdge[fp] = start[v] as number;
      fp += 1;
    };
    const walkFrom = (root: number): void => {
      if (this.live[root] !== 1 || (index[root] as number) >= 0) return;
      open(root);
      while (fp > 0) {
        const v = this.#frameNode[fp - 1] as number;
        const k = this.#frameEdge[fp - 1] as number;
        if (k < (start[v + 1] as number)) {
          this.#frameEdge[fp - 1] = k + 1;
          this.budget -= 1;
          const w = edges[k] as number;
          if (w < 0 || this.live[w] !== 1) continue;
          if (w === v) this.#self[v] = 1;
          if ((index[w] as number) < 0) open(w);
          else if (this.#onStack[w] === 1) low[v] = Math.min(low[v] as number, index[w] as number);
          continue;
        }
        fp -= 1;
        if (fp > 0) {
          const parent = this.#frameNode[fp - 1] as number;
          low[parent] = Math.min(low[parent] as number, low[v] as number);
        }
        if (low[v] === index[v]) {
          let top = sp;
          do top -= 1;
          while (this.#stack[top] !== v);
          for (let j = top; j < sp; j += 1) this.#onStack[this.#stack[j] as number] = 0;
          // Most components are one node on no cycle: copied out only when it holds one.
          if (sp - top > 1 || this.#self[v] === 1) found.push(this.#stack.slice(top, sp));
          sp = top;
        }
      }
    };
    if (roots === undefined) for (let v = 0; v < start.length - 1; v += 1) walkFrom(v);
    else for (const root of roots) walkFrom(root);
    for (const v of visited) {
      index[v] = -1;
      this.#self[v] = 0;
    }
    return found;
  }
}

/** `*` matches any run of characters, as in Asyncify's lists. */
function wildcard(pattern: string): RegExp {
  return new RegExp(`^${pattern.split("*").map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`, "s");
}

/**
 * Marks (1) every node from which a safe point can be reached: a function
 * that calls a blocking import, or will hold a poll (a loop, or on a cycle),
 * or calls what the scanner cannot follow; and everything that can call one
 * of those, directly or through a signature node whose table functions
 * (or imports) can.
 */
function reachers(graph: Graph, calls: ModuleCalls, tables: IndirectTargets, cyclic: number[], blocking: readonly string[], polls = true, polled?: Uint8Array): Uint8Array {
  const { n, start, edges } = graph;
  const nodes = start.length - 1;
  const patterns = blocking.map(wildcard);
  const blocks = tables.imports.map((name) => patterns.some((p) => p.test(name)));
  const reached = new Uint8Array(nodes);
  const queue = new Int32Array(nodes);
  let tail = 0;
  const mark = (v: number): void => {
    if (reached[v] === 1) return;
    reached[v] = 1;
    queue[tail] = v;
    tail += 1;
  };
  calls.bodies.forEach((body, f) => {
    if ((polls && body.loops) || body.opaque || body.calls.some((c) => c < calls.imported && blocks[c] === true)) mark(f);
  });
  if (polls) for (const f of cyclic) mark(f);
  polled?.forEach((x, f) => {
    if (x === 1) mark(f);
  });
  if (tables.unnarrowed === undefined) {
    blocks.forEach((blocked, i) => {
      const s = tables.function_sig[i] ?? -1;
      if (blocked && s >= 0 && tables.addressable[i] === 1) mark(n + 1 + s);
    });
  }
  // The reverse graph, packed the same way.
  const rstart = new Int32Array(nodes + 1);
  for (const w of edges) if (w >= 0) rstart[w + 1] = (rstart[w + 1] as number) + 1;
  for (let v = 0; v < nodes; v += 1) rstart[v + 1] = (rstart[v + 1] as number) + (rstart[v] as number);
  const redges = new Int32Array(rstart[nodes] as number);
  const fill = rstart.slice(0, nodes);
  for (let v = 0; v < nodes; v += 1) {
    for (let k = start[v] as number; k < (start[v + 1] as number); k += 1) {
      const w = edges[k] as number;
      if (w < 0) continue;
      redges[fill[w] as number] = v;
      fill[w] = (fill[w] as number) + 1;
    }
  }
  for (let head = 0; head < tail; head += 1) {
    const w = queue[head] as number;
    for (let k = rstart[w] as number; k < (rstart[w + 1] as number); k += 1) mark(redges[k] as number);
  }
  return reached;
}

/** What {@link unwindReachers} finds. */
export interface UnwindReach {
  /** Whether a call to function `index` (imports first) can unwind: a blocking import, or a function that can reach one. */
  function(index: number): boolean;
  /** Whether a `call_indirect` of type index `type` can reach a function that can unwind. */
  type(type: number): boolean;
}

/**
 * Which calls of a module whose polls are already written (every safe point
 * is a call to one of `blocking`) can unwind: those to a blocking import and
 * to a function that can reach one, directly or through a table. An indirect
 * call that cannot be narrowed by signature is taken to reach anything.
 */
export function unwindReachers(scanned: ModuleCalls, tables: IndirectTargets, blocking: readonly string[]): UnwindReach {
  const graph = buildGraph(scanned, tables);
  const reached = reachers(graph, scanned, tables, [], blocking, false);
  const patterns = blocking.map(wildcard);
  const blocks = tables.imports.map((name) => patterns.some((p) => p.test(name)));
  const n = scanned.bodies.length;
  const narrow = tables.unnarrowed === undefined;
  return {
    function: (index) => (index < scanned.imported ? blocks[index] === true : reached[index - scanned.imported] === 1),
    type: (type) => {
      const s = tables.type_sig[type] ?? -1;
      return !narrow || s < 0 || reached[n + 1 + s] === 1;
    },
  };
}
