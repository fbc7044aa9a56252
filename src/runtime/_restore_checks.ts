/**
 * Checks of an image's globals against the module that will take them, made
 * on the controlling thread before the worker writes any of them: the
 * worker's `global.value =` would throw (or silently convert) on a value of
 * the wrong type, and a global the image lacks would keep its initial value.
 */
import type { GlobalValue } from "../image/mod.js";

const BITS_MAX: Record<GlobalValue["type"], bigint> = {
  i32: 0xffff_ffffn,
  f32: 0xffff_ffffn,
  i64: 0xffff_ffff_ffff_ffffn,
  f64: 0xffff_ffff_ffff_ffffn,
};

/**
 * Null if `globals` are exactly the module's exported mutable globals (each
 * once, with its type, its bits in range); else what is wrong, for a message.
 */
export function checkGlobals(
  globals: readonly GlobalValue[],
  module_globals: readonly { export_name: string; type: GlobalValue["type"] }[],
): string | null {
  const wanted = new Map(module_globals.map((g) => [g.export_name, g.type]));
  const seen = new Set<string>();
  for (const g of globals) {
    const type = wanted.get(g.name);
    if (type === undefined) return `it has a global ${JSON.stringify(g.name)} the module lacks`;
    if (seen.has(g.name)) return `it has global ${JSON.stringify(g.name)} twice`;
    seen.add(g.name);
    if (g.type !== type) return `its global ${JSON.stringify(g.name)} is ${g.type}; the module's is ${type}`;
    if (typeof g.bits !== "bigint" || g.bits < 0n || g.bits > BITS_MAX[type]) {
      return `its global ${JSON.stringify(g.name)} has bits ${String(g.bits)}, not a ${type} value`;
    }
  }
  if (seen.size !== wanted.size) {
    const absent = [...wanted.keys()].filter((name) => !seen.has(name));
    return `it lacks the module's global${absent.length === 1 ? "" : "s"} ${absent.map((n) => JSON.stringify(n)).join(", ")}`;
  }
  return null;
}
