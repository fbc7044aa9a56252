/**
 * Turns whatever Binaryen throws into an {@link InstrumentError}.
 *
 * binaryen.js is C++ compiled with Emscripten: a C++ exception (Binaryen's
 * `Fatal()`, a parse error) reaches JavaScript as an object that is not an
 * `Error` and prints as `[object Object]`; running out of its memory is an
 * `abort`, a `RuntimeError("Aborted(...)")`. Neither says what went wrong
 * unless asked the right way, so every Binaryen call of the instrumenter
 * goes through {@link instrumentFailure}.
 */
import { inspect } from "node:util";
import { FerryError, InstrumentError } from "../errors.js";

/** The part of binaryen.js this file needs: it decodes a thrown C++ exception. */
export interface ExceptionDecoder {
  getExceptionMessage?: (thrown: unknown) => unknown;
}

/** What to call the module in a message: its name, else the start of its hash. */
export function moduleLabel(name: string | undefined, sha256: string): string {
  return name !== undefined && name !== "" ? `${name} (sha256 ${sha256.slice(0, 12)})` : `module sha256 ${sha256.slice(0, 12)}`;
}

/** Binaryen's own words for a thrown value, never `[object Object]`. */
export function thrownText(thrown: unknown, decoder?: ExceptionDecoder): string {
  if (thrown instanceof Error) return thrown.message === "" ? thrown.name : thrown.message;
  if (typeof thrown === "string") return thrown;
  if (decoder?.getExceptionMessage !== undefined && typeof thrown === "object" && thrown !== null) {
    try {
      // [type, message], e.g. ["std::runtime_error", "Fatal: ..."].
      const decoded = decoder.getExceptionMessage(thrown);
      if (Array.isArray(decoded)) {
        const [type, message] = decoded as unknown[];
        if (typeof message === "string" && message !== "") return message.trim();
        if (typeof type === "string" && type !== "") return `C++ exception ${type}`;
      }
    } catch (err: unknown) {
      // Not a C++ exception after all: described generically below.
      return `${inspect(thrown, { depth: 1, breakLength: Infinity })} (undecodable: ${err instanceof Error ? err.message : String(err)})`;
    }
  }
  return inspect(thrown, { depth: 1, breakLength: Infinity });
}

/** Whether a thrown value says Binaryen ran out of memory. */
function outOfMemory(thrown: unknown, text: string): boolean {
  return thrown instanceof RangeError || /\bOOM\b|out of memory|Cannot enlarge memory|bad_alloc/i.test(text);
}

/**
 * The error to raise for `thrown`, caught while instrumenting the module
 * `label` during `stage`: a FerryError passes unchanged (it already says
 * what happened); anything else becomes ERR_INSTRUMENT_FAILED, or
 * ERR_INSTRUMENT_LIMIT when Binaryen ran out of memory.
 */
export function instrumentFailure(thrown: unknown, context: { label: string; stage: string; decoder?: ExceptionDecoder }): FerryError {
  if (thrown instanceof FerryError) return thrown;
  const text = thrownText(thrown, context.decoder);
  if (outOfMemory(thrown, text)) {
    return new InstrumentError(
      "ERR_INSTRUMENT_LIMIT",
      `cannot instrument ${context.label}: Binaryen ran out of memory while ${context.stage} (${text}); the module is too large to instrument on this machine`,
      { cause: thrown },
    );
  }
  return new InstrumentError("ERR_INSTRUMENT_FAILED", `cannot instrument ${context.label}: Binaryen failed while ${context.stage}: ${text}`, { cause: thrown });
}
