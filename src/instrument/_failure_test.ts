/**
 * Regression (issue 14): Binaryen throws values that are not Errors, and
 * `ferry exec` printed "[object Object]". Every such value becomes a typed
 * error that names the module, the step and Binaryen's own words.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import binaryen from "binaryen";
import { InstrumentError } from "../errors.js";
import { instrumentFailure, moduleLabel, thrownText, type ExceptionDecoder } from "./_failure.js";

const decoder = binaryen as unknown as ExceptionDecoder;

/**
 * What binaryen.js throws for a C++ exception: here Asyncify's Fatal() on a
 * call to a function that was removed (how the modules failed).
 */
function cppException(): unknown {
  const m = binaryen.parseText(`(module (memory 1) (func $gone) (func $f (call $gone)))`);
  try {
    m.removeFunction("gone");
    m.runPasses(["asyncify"]);
  } catch (thrown: unknown) {
    return thrown;
  } finally {
    m.dispose();
  }
  assert.fail("binaryen.js did not throw");
}

describe("instrument failures", () => {
  it("decodes Binaryen's C++ exceptions", () => {
    const thrown = cppException();
    assert.ok(!(thrown instanceof Error), "binaryen.js throws a non-Error (the bug this pins)");
    assert.equal(String(thrown), "[object Object]");
    assert.match(thrownText(thrown, decoder), /gone/);
    const err = instrumentFailure(thrown, { label: moduleLabel("tool.wasm", "ab".repeat(32)), stage: "running Asyncify", decoder });
    assert.ok(err instanceof InstrumentError);
    assert.equal(err.code, "ERR_INSTRUMENT_FAILED");
    assert.match(err.message, /^cannot instrument tool\.wasm \(sha256 abababababab\): Binaryen failed while running Asyncify: .*gone/);
    assert.equal(err.cause, thrown);
  });

  it("never prints [object Object], whatever is thrown", () => {
    for (const thrown of [{ weird: 1 }, 42, null, undefined, Symbol("s"), "text", new Error("plain")]) {
      const text = thrownText(thrown, decoder);
      assert.ok(!text.includes("[object Object]"), text);
      assert.ok(text.length > 0);
    }
  });

  it("calls running out of memory a limit", () => {
    for (const thrown of [new RangeError("WebAssembly.Memory.grow(): Maximum memory size exceeded"), new Error("Aborted(OOM)"), "std::bad_alloc"]) {
      const err = instrumentFailure(thrown, { label: "big.wasm", stage: "optimizing" });
      assert.equal(err.code, "ERR_INSTRUMENT_LIMIT", String(thrown));
      assert.match(err.message, /big\.wasm.*out of memory while optimizing/);
    }
  });

  it("passes Ferry's own errors through", () => {
    const own = new InstrumentError("ERR_INSTRUMENT_UNSUPPORTED", "memory64 is not supported");
    assert.equal(instrumentFailure(own, { label: "x", stage: "reading the module" }), own);
  });

  it("names a module by its hash when it has no name", () => {
    assert.equal(moduleLabel(undefined, "0123456789abcdef".repeat(4)), "module sha256 0123456789ab");
  });
});
