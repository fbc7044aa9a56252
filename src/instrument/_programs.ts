/**
 * Test helper: the programs the unwinding pass (`_unwind_test.ts`) and the
 * safe points (`_safepoints_test.ts`) are run against. Each imports
 * `env.block` (a blocking call, answered by {@link answer}) and `env.other`.
 */
import assert from "node:assert/strict";
import type { Prng } from "../_prng.js";

/** Where a test's unwind buffer lies in the guest's memory, and where it ends. */
export const BUFFER = 1024;
export const BUFFER_END = 65536;

/** The exports that unwind and rewind (Asyncify's contract), and the memory. */
export interface Api {
  asyncify_start_unwind(ptr: number): void;
  asyncify_stop_unwind(): void;
  asyncify_start_rewind(ptr: number): void;
  asyncify_stop_rewind(): void;
  asyncify_get_state(): number;
  memory: WebAssembly.Memory;
}

/** Runs a program's `main` as written: what it returned and the argument of each blocking call, in order. */
export function plainRun(bytes: Uint8Array, args: unknown[]): { result: unknown; calls: number[] } {
  const calls: number[] = [];
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {
    env: {
      block: (x: number) => {
        calls.push(x);
        return answer(x);
      },
      other: (x: number) => x + 1,
    },
  });
  return { result: (instance.exports["main"] as (...a: unknown[]) => unknown)(...args), calls };
}

/** What {@link unwoundRun} saw. */
export interface Unwound {
  result: unknown;
  /** The argument of each blocking call, in order (not counting a call made again after a rewind). */
  calls: number[];
  /** Unwinds from a poll. */
  polls: number;
  /** Times a fast copy was told to leave. */
  left: number;
  /** Unwinds in all. */
  unwinds: number;
  instance: WebAssembly.Instance;
}

/**
 * Runs the instrumented `main`, unwinding at every poll and every blocking
 * call and rewinding at once; the host gives a budget of `budget` after
 * each poll, and tells every other fast copy that asks to leave. With
 * `migrate`, each rewind runs in a new instance given only the memory and
 * the exported mutable globals, as a restore on another node does.
 */
export function unwoundRun(bytes: Uint8Array, args: unknown[], budget = 3, migrate = false): Unwound {
  const calls: number[] = [];
  let api!: Api;
  let rewinding = false;
  let polls = 0;
  let left = 0;
  let unwinds = 0;
  let asked = 0;
  const unwind = (): void => {
    const words = new Int32Array(api.memory.buffer, BUFFER, 2);
    words[0] = BUFFER + 8;
    words[1] = BUFFER_END;
    api.asyncify_start_unwind(BUFFER);
  };
  const module = new WebAssembly.Module(bytes);
  const imports = {
    env: {
      block: (x: number) => {
        if (rewinding) {
          api.asyncify_stop_rewind();
          rewinding = false;
          assert.equal(x, calls[calls.length - 1], "a call made again after a rewind gets its arguments back");
          return answer(x);
        }
        calls.push(x);
        unwind();
        return 0;
      },
      other: (x: number) => x + 1,
    },
    ferry: {
      poll: () => {
        if (rewinding) {
          api.asyncify_stop_rewind();
          rewinding = false;
          return budget;
        }
        polls += 1;
        unwind();
        return 0;
      },
      poll_restartable: () => {
        asked += 1;
        if (asked % 2 === 0) return budget;
        left += 1;
        return 0;
      },
    },
  };
  let instance = new WebAssembly.Instance(module, imports);
  api = instance.exports as unknown as Api;
  let main = instance.exports["main"] as (...a: unknown[]) => unknown;
  let result = main(...args);
  while (api.asyncify_get_state() === 1) {
    unwinds += 1;
    api.asyncify_stop_unwind();
    // The frames are read back from where the unwind left `current`.
    const current = new Int32Array(api.memory.buffer, BUFFER, 1)[0] as number;
    assert.ok(current > BUFFER + 8, "an unwind writes frames");
    if (migrate) {
      // As a restore does: a new instance, given the memory and every exported mutable global, and nothing else.
      const next = new WebAssembly.Instance(module, imports);
      const from = api.memory;
      const to = (next.exports as unknown as Api).memory;
      to.grow((from.buffer.byteLength - to.buffer.byteLength) / 65536);
      new Uint8Array(to.buffer).set(new Uint8Array(from.buffer));
      for (const [name, value] of Object.entries(instance.exports)) {
        if (!(value instanceof WebAssembly.Global)) continue;
        try {
          (next.exports[name] as WebAssembly.Global).value = value.value;
        } catch (err: unknown) {
          // An immutable global: the new instance has it already.
          if (!(err instanceof TypeError)) throw err;
        }
      }
      instance = next;
      api = instance.exports as unknown as Api;
      main = instance.exports["main"] as (...a: unknown[]) => unknown;
    }
    rewinding = true;
    api.asyncify_start_rewind(BUFFER);
    // Arguments are taken from the frame: these are not used.
    result = main(...args.map((a) => (typeof a === "bigint" ? 0n : 0)));
    assert.equal(rewinding, false, "the rewind reached the call it left from");
  }
  return { result, calls, polls, left, unwinds, instance };
}

/** What the host answers a blocking call with argument `x`. */
export const answer = (x: number): number => (Math.imul(x, 2654435761) ^ (x >>> 3)) | 0;

/** The imports and memory every program starts with. */
export const HEADER = `
  (import "env" "block" (func $block (param i32) (result i32)))
  (import "env" "other" (func $other (param i32) (result i32)))
  (memory (export "memory") 1)`;

/** A random program: nested expressions of i32, with blocking calls, ifs, blocks left early, loops and helper calls. */
export function generate(rng: Prng): string {
  const helpers: string[] = [];
  let counters = 0;
  const expr = (depth: number, locals: number, helper = false): string => {
    const leaf = depth <= 0 || rng.chance(0.25);
    if (leaf) return rng.chance(0.5) ? `(i32.const ${rng.int(50)})` : `(local.get ${rng.int(locals)})`;
    const e = (): string => expr(depth - 1, locals, helper);
    switch (rng.int(11)) {
      case 0:
      case 1:
        return `(call $block ${e()})`;
      case 2:
        return `(${rng.pick(["i32.add", "i32.sub", "i32.xor", "i32.mul"])} ${e()} ${e()})`;
      case 3:
        return `(if (result i32) (i32.and ${e()} (i32.const 1)) (then ${e()}) (else ${e()}))`;
      case 4:
        return `(block $b${depth} (result i32) (drop (br_if $b${depth} ${e()} (i32.and ${e()} (i32.const 2)))) (drop ${e()}) ${e()})`;
      case 5:
        return `(local.tee ${rng.int(locals)} ${e()})`;
      case 6: {
        // A bounded loop: counts down a local of its own, adding a value each time.
        const inner = expr(depth - 1, 1, true);
        const name = `$h${helpers.length}`;
        helpers.push(`(func ${name} (param $p i32) (result i32) (local $k i32) (local $s i32)
          (local.set $k (i32.and (local.get $p) (i32.const 3)))
          (block $x (loop $l
            (br_if $x (i32.eqz (local.get $k)))
            (local.set $s (i32.add (local.get $s) ${inner}))
            (local.set $k (i32.sub (local.get $k) (i32.const 1)))
            (br $l)))
          (local.get $s))`);
        return `(call ${name} ${e()})`;
      }
      case 7:
        return `(call $other ${e()})`;
      case 8: {
        if (helper || counters >= 8) return `(call $other ${e()})`;
        // A loop of three rounds on a counter of its own, left by a value.
        const c = `$c${counters}`;
        counters += 1;
        return `(block (result i32) (local.set ${c} (i32.const 0)) (loop $l${c} (result i32)
          (local.set ${c} (i32.add (local.get ${c}) (i32.const 1)))
          (drop ${e()})
          (br_if $l${c} (i32.lt_u (local.get ${c}) (i32.const 3)))
          ${e()}))`;
      }
      case 9:
        return `(block $t${depth} (result i32) (i32.add (block $u${depth} (result i32) (br_table $u${depth} $t${depth} ${e()} (i32.and ${e()} (i32.const 1)))) (i32.const 5)))`;
      default:
        return `(select ${e()} ${e()} (i32.and ${e()} (i32.const 1)))`;
    }
  };
  const body = expr(5, 3);
  return `(module ${HEADER}
    ${helpers.join("\n")}
    (func (export "main") (param i32) (result i32) (local i32 i32)
      (local $c0 i32) (local $c1 i32) (local $c2 i32) (local $c3 i32) (local $c4 i32) (local $c5 i32) (local $c6 i32) (local $c7 i32)
      ${body}))`;
}
