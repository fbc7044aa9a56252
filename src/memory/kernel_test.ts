import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { describe, it } from "node:test";
import { KernelTracker, ShadowTracker, TRACK_PAGE_BYTES, kernelTrackerAvailability, resolveTracker } from "./mod.js";
import { backStandby } from "../runtime/_backing.js";

const availability = kernelTrackerAvailability();
if (!availability.available) process.stdout.write(`# userfaultfd tracker tests skipped: ${availability.reason}\n`);

function memory(pages: number): WebAssembly.Memory {
  return new WebAssembly.Memory({ initial: pages, maximum: 65536, shared: true });
}

const indexes = (it: Iterable<{ index: number }>): number[] => [...it].map((p) => p.index);

describe("page trackers", () => {
  it("auto picks userfaultfd exactly when it works, and says why not otherwise", () => {
    const r = resolveTracker("auto");
    assert.equal(r.name, availability.available ? "userfaultfd" : "portable");
    if (!availability.available) assert.match(r.note, /unavailable/);
  });

  it("the userfaultfd tracker reports what was written since its last look, grown pages included", { skip: !availability.available && availability.reason }, () => {
    const m = memory(4);
    let view = new Uint8Array(m.buffer);
    view[3 * TRACK_PAGE_BYTES] = 1;
    const t = new KernelTracker();
    try {
      assert.deepEqual(indexes(t.changed(view)), [3], "first look: the non-zero pages");
      assert.deepEqual(indexes(t.changed(view)), []);
      view[10 * TRACK_PAGE_BYTES + 7] = 2;
      view[11 * TRACK_PAGE_BYTES] = 3;
      view[63 * TRACK_PAGE_BYTES + 4095] = 4;
      assert.deepEqual(indexes(t.changed(view)), [10, 11, 63]);
      view[11 * TRACK_PAGE_BYTES] = 0; // cleared pages are changes too
      assert.deepEqual(indexes(t.changed(view)), [11]);
      m.grow(1);
      view = new Uint8Array(m.buffer);
      view[64 * TRACK_PAGE_BYTES + 1] = 5;
      const grown = indexes(t.changed(view));
      assert.ok(grown.includes(64), "a write to a grown page was missed");
      assert.deepEqual(indexes(t.changed(view)), []);
    } finally {
      t.close();
    }
  });

  it("a tracker armed over memory whose last tracker was just closed (its close runs on a thread of its own) waits for that close, then tracks as usual", { skip: !availability.available && availability.reason }, () => {
    // 128 MiB written once over: its close takes long enough to still be under way when the next tracker comes.
    const m = memory(2048);
    const view = new Uint8Array(m.buffer);
    for (let at = 0; at < view.length; at += TRACK_PAGE_BYTES) view[at] = 1;
    let t = new KernelTracker();
    t.arm(view);
    for (let round = 0; round < 4; round += 1) {
      t.close();
      // The kernel lets one userfaultfd at a time register a range: without the wait this fails ("userfaultfd register").
      t = new KernelTracker();
      t.arm(view);
      const pages = [round, 1000 + round, 32767 - round];
      for (const p of pages) view[p * TRACK_PAGE_BYTES + 5] = round + 2;
      assert.deepEqual([...t.changedRuns(view)], pages.flatMap((p) => [p, p + 1]));
    }
    t.close();
  });

  it("a tracker closed in a worker that ends at once (its memory and the worker's hold on the addon go) leaves the process running", { skip: !availability.available && availability.reason, timeout: 60_000 }, () => {
    // In a child process: a fault in the closing thread would end the whole process, this runner with it.
    const kernel = new URL("./kernel.js", import.meta.url).href;
    const worker = [
      `import { KernelTracker } from ${JSON.stringify(kernel)};`,
      "const m = new WebAssembly.Memory({ initial: 1024, maximum: 65536, shared: true });",
      "const v = new Uint8Array(m.buffer);",
      "for (let at = 0; at < v.length; at += 4096) v[at] = 1;",
      "const t = new KernelTracker();",
      "t.arm(v);",
      "t.close();",
    ].join("\n");
    const main = [
      'import { Worker } from "node:worker_threads";',
      `const code = ${JSON.stringify(worker)};`,
      "for (let i = 0; i < 4; i += 1) {",
      '  const w = new Worker(new URL("data:text/javascript," + encodeURIComponent(code)));',
      '  await new Promise((resolve, reject) => { w.on("exit", resolve); w.on("error", reject); });',
      "}",
      'process.stdout.write("done");',
    ].join("\n");
    const run = spawnSync(process.execPath, ["--input-type=module", "-e", main], { encoding: "utf8", timeout: 50_000 });
    assert.equal(run.signal, null, `the child ended on ${run.signal}: ${run.stderr}`);
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stdout, "done");
  });

  it("the userfaultfd tracker's last look reads what was written and re-arms nothing", { skip: !availability.available && availability.reason }, () => {
    const m = memory(4);
    const view = new Uint8Array(m.buffer);
    const t = new KernelTracker();
    try {
      assert.deepEqual(indexes(t.changed(view)), []);
      view[2 * TRACK_PAGE_BYTES] = 1;
      view[40 * TRACK_PAGE_BYTES + 9] = 2;
      assert.deepEqual([...t.changedRuns(view, { last: true })], [2, 3, 40, 41]);
      // Left written: a look after the last one still sees them (a re-armed page would not show).
      assert.deepEqual(indexes(t.changed(view, { last: true })), [2, 40]);
      assert.deepEqual(indexes(t.changed(view)), [2, 40], "an ordinary look re-arms");
      assert.deepEqual(indexes(t.changed(view)), []);
    } finally {
      t.close();
    }
  });

  it("both trackers agree on the same writes", { skip: !availability.available && availability.reason }, () => {
    const m = memory(16);
    const view = new Uint8Array(m.buffer);
    const kernel = new KernelTracker();
    const shadow = new ShadowTracker();
    try {
      view[5] = 1;
      assert.deepEqual(indexes(kernel.changed(view)), indexes(shadow.changed(view)));
      let seed = 12345;
      for (let round = 0; round < 20; round += 1) {
        for (let w = 0; w < 50; w += 1) {
          seed = (seed * 1103515245 + 12345) >>> 0;
          view[seed % view.length] = (seed >>> 8) | 1;
        }
        // The kernel reports every page written; the shadow only those whose bytes differ.
        const k = new Set(indexes(kernel.changed(view)));
        for (const page of indexes(shadow.changed(view))) assert.ok(k.has(page), `round ${round}: page ${page} missed`);
      }
    } finally {
      kernel.close();
      shadow.close();
    }
  });
});

describe("page trackers over a standby's backing", () => {
  it("the userfaultfd tracker keeps its 4 KiB grain over memory backed as huge pages", { skip: !availability.available && availability.reason }, (ctx) => {
    const m = memory(1024); // 64 MiB: 32 huge pages where the kernel has them
    const view = new Uint8Array(m.buffer);
    const huge = (): number => Number(/AnonHugePages:\s+(\d+)/.exec(fs.readFileSync("/proc/self/smaps_rollup", "utf8"))?.[1] ?? 0);
    const before = huge();
    backStandby(view);
    ctx.diagnostic(`huge pages backing the standby: ${Math.max(0, huge() - before)} KiB`);
    const t = new KernelTracker();
    try {
      assert.deepEqual(indexes(t.changed(view)), [], "backing wrote zeros only");
      view[1000 * TRACK_PAGE_BYTES + 5] = 1;
      view[5000 * TRACK_PAGE_BYTES] = 2;
      view[16383 * TRACK_PAGE_BYTES + 4095] = 3;
      assert.deepEqual(indexes(t.changed(view)), [1000, 5000, 16383]);
      view[1001 * TRACK_PAGE_BYTES] = 4;
      assert.deepEqual(indexes(t.changed(view)), [1001]);
      assert.deepEqual(indexes(t.changed(view)), []);
    } finally {
      t.close();
    }
  });
});
