import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { startProgress } from "./_progress.js";

function stream(isTTY: boolean): { isTTY: boolean; text: string[]; write(t: string): boolean } {
  return {
    isTTY,
    text: [],
    write(t: string): boolean {
      this.text.push(t);
      return true;
    },
  };
}

describe("progress line", () => {
  it("stays quiet for the first second, then shows the step and the time, and erases itself", () => {
    let now = 0;
    const out = stream(true);
    const p = startProgress(out, "instrumenting big.wasm (58.6 MB)", { now: () => now });
    p.step("reading the module");
    now = 900;
    p.step("walking the call graph");
    assert.deepEqual(out.text, []);
    now = 2500;
    p.step("running Asyncify");
    assert.deepEqual(out.text, ["\r\x1b[2Kferry: instrumenting big.wasm (58.6 MB): running Asyncify... 2.5 s"]);
    p.end();
    assert.equal(out.text.at(-1), "\r\x1b[2K");
    p.step("optimizing");
    assert.equal(out.text.length, 2, "nothing after the end");
  });

  it("erases nothing when nothing was drawn", () => {
    const out = stream(true);
    const p = startProgress(out, "x", { now: () => 0 });
    p.step("reading the module");
    p.end();
    assert.deepEqual(out.text, []);
  });

  it("writes nothing at all when the stream is not a terminal", () => {
    let now = 0;
    const out = stream(false);
    const p = startProgress(out, "x", { now: () => now });
    now = 60_000;
    p.step("optimizing");
    p.end();
    assert.deepEqual(out.text, []);
  });
});
