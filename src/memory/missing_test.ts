import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { kernelTrackerAvailability } from "./mod.js";

const availability = kernelTrackerAvailability();

describe("missing pages (post-copy groundwork)", () => {
  it("a thread reading dropped memory gets every byte back, each page served once on its first touch", { skip: !availability.available && availability.reason }, () => {
    const probe = path.join(path.dirname(fileURLToPath(import.meta.url)), "_missing_probe.js");
    // Its own process, killed if it hangs: a thread waiting on an unserved page never returns.
    const r = spawnSync(process.execPath, [probe], { encoding: "utf8", timeout: 30_000 });
    assert.equal(r.status, 0, `probe failed or hung: ${r.stderr}`);
    const out = JSON.parse(r.stdout) as { sum: number; expected: number; faults: number; leftover: number };
    assert.equal(out.sum, out.expected, "bytes differ after being served");
    assert.equal(out.faults, 512, "each page should fault exactly once");
    assert.equal(out.leftover, 0, "a page was still missing after the reader finished");
  });
});
