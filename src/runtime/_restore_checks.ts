/**
 * What the module decides about an image, checked on the controlling thread
 * before the worker sees any of it. An image is data (signed, but perhaps by
 * a buggy writer): a global of the wrong type would make the worker's
 * `global.value =` throw (or silently convert), a global the image lacks
 * would keep its initial value, and a stack made by another instrumenter
 * would rewind into the wrong code.
 */
import type { GlobalValue, ProcessImage } from "../image/mod.js";
import type { InstrumentInfo } from "../instrument/mod.js";
import { ASYNCIFY_HEADER_BYTES } from "./_stack.js";

const BITS_MAX: Record<GlobalValue["type"], bigint> = {
  i32: 0xffff_ffffn,
  f32: 0xffff_ffffn,
  i64: 0xffff_ffff_ffff_ffffn,
  f64: 0xffff_ffff_ffff_ffffn,
};

/**
 * Null if the image fits the instrumented module `info` started through
 * `entry`; else what does not, for a message: the instrumenter that made its
 * stack, its entry, a stack that fits its memory, and its globals.
 */
export function imageMisfit(image: Pick<ProcessImage, "instrumenter" | "globals" | "stack" | "memory">, info: InstrumentInfo, entry: string): string | null {
  if (image.instrumenter !== info.instrumenter) {
    return `it was captured under instrumenter ${JSON.stringify(image.instrumenter)}, this build runs ${JSON.stringify(info.instrumenter)}; resume it with the Ferry release that wrote it`;
  }
  if (image.stack.entry !== entry) return `it was started through ${JSON.stringify(image.stack.entry)}, not ${entry}`;
  if (image.stack.asyncify.length + ASYNCIFY_HEADER_BYTES > image.memory.size_bytes) {
    return `its stack of ${image.stack.asyncify.length} bytes is larger than its memory`;
  }
  return checkGlobals(image.globals, info.globals);
}

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
