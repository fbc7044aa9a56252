/** V8 flags set at run time are recorded where a worker thread sees them, and not handed to a child process. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { Worker } from "node:worker_threads";
import { childEnv, setV8Flags, v8FlagsSet } from "./v8_flags.js";

test("flags set are recorded in order, seen by a worker made after, and left out of a child's environment", async () => {
  const before = v8FlagsSet();
  // Harmless for the rest of this test process: functions compile to baseline code at their first call.
  setV8Flags("--always-sparkplug");
  assert.deepEqual(v8FlagsSet(), [...before, "--always-sparkplug"]);

  const url = new URL("./v8_flags.js", import.meta.url).href;
  const worker = new Worker(`import(${JSON.stringify(url)}).then((m) => require("node:worker_threads").parentPort.postMessage(m.v8FlagsSet()));`, { eval: true });
  const seen = await new Promise<unknown>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  await worker.terminate();
  assert.deepEqual(seen, [...before, "--always-sparkplug"]);

  const child = spawnSync(process.execPath, ["--input-type=module", "-e", `import(${JSON.stringify(url)}).then((m) => process.stdout.write(JSON.stringify(m.v8FlagsSet())))`], { env: childEnv(), encoding: "utf8" });
  assert.equal(child.status, 0, child.stderr);
  assert.deepEqual(JSON.parse(child.stdout), []);
});

test("anything but one flag is refused before any is set", () => {
  const before = v8FlagsSet();
  assert.throws(() => setV8Flags("--always-sparkplug --no-lazy"), RangeError);
  assert.throws(() => setV8Flags("--always-sparkplug", "always-sparkplug"), RangeError);
  assert.deepEqual(v8FlagsSet(), before);
});
