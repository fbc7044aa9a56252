/** Test helper: a module from WebAssembly text, through Binaryen. */
import binaryen from "binaryen";

/** Binary of the module written in `text`. */
export function wat(text: string): Uint8Array {
  const m = binaryen.parseText(text);
  try {
    return m.emitBinary();
  } finally {
    m.dispose();
  }
}
