/**
 * The dashboard's migrations view while a move runs, in a real headless
 * Chromium (test/_browser.ts): the bar of the phase under way grows with the
 * bytes moved within it (`migration.progress`), rather than sitting at its
 * floor until the phase ends. A post-copy whose push is capped takes long
 * enough for the bar to be seen at several widths. The rest of the page:
 * test/dashboard.test.ts.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Page } from "playwright-core";
import { remotePagesAvailability } from "../src/memory/mod.js";
import { EXAMPLES, ferry, until } from "./_helpers.js";
import { json, request, runsOn, startCluster, upload, type NodeProc } from "./_cluster.js";
import { CHROMIUM, have_chromium, openBrowser } from "./_browser.js";

const remote = remotePagesAvailability();
const skip = !have_chromium ? `${CHROMIUM} not found` : !remote.available ? `post-copy needs userfaultfd here: ${remote.reason}` : false;
if (skip !== false) console.log(`# ${skip}: the dashboard's progress test is skipped`);

const MiB = 1048576;
/** The guest's memory, and the push's cap: about 8 s of push, dozens of samples of a growing bar. */
const MEMORY_MIB = 64;
const PUSH_BYTES_PER_S = 8 * MiB;

/** The width, in percent, of the bar of `phase` (its title) of the migration of `pid` while that phase is under way; null otherwise. */
async function barWidth(page: Page, pid: string, phase: string): Promise<number | null> {
  const fill = page.locator(`[data-testid=migration][data-pid="${pid}"][data-state=running][data-phase="${phase}"] .phase[title="${phase}"] .fill`);
  if ((await fill.count()) === 0) return null;
  // The page sets it as `width: N%`.
  const style = (await fill.getAttribute("style")) ?? "";
  const width = /width:\s*([\d.]+)%/.exec(style)?.[1];
  return width === undefined ? null : Number(width);
}

describe("web dashboard: a migration's progress", { skip }, () => {
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  let n1: NodeProc;
  let browser: Awaited<ReturnType<typeof openBrowser>> | undefined;

  before(async () => {
    cluster = await startCluster(["n1", "n2"]);
    [n1] = cluster.nodes as [NodeProc, NodeProc];
    browser = await openBrowser();
  });

  after(async () => {
    await browser?.close();
    await cluster?.stop();
  });

  it("grows the bar of the phase under way as its bytes move", async () => {
    const page = (browser as Awaited<ReturnType<typeof openBrowser>>).page;
    const sha = await upload(n1.address, path.join(EXAMPLES, "c", "memhog.wasm"));
    // Written once, then idle (held at its end: it cannot end under the test).
    const { pid } = await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "memhog.wasm", args: ["--hold", String(MEMORY_MIB), "0", "3600"], node: "n1" });
    const made = await ferry(["dashboard", "--json", "--cluster", n1.address]);
    assert.equal(made.status, 0, made.stderr.toString());
    await page.goto((JSON.parse(made.stdout.toString()) as { url: string }).url);
    await page.locator(`[data-testid=process-row][data-pid="${pid}"]`).waitFor();
    const moving = request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to: "n2", strategy: "post-copy", push_bytes_per_s: PUSH_BYTES_PER_S });
    try {
      // The push under way: its bar is drawn at some width short of full (its floor, or more)...
      const first = await until("the post-copy bar of the migration under way", async () => {
        const w = await barWidth(page, pid, "post-copy");
        return w !== null && w < 100 ? w : undefined;
      });
      // ...and grows while the migration still runs (without the samples it sits at its floor until the end).
      const later = await until(`the post-copy bar to grow past ${first}%`, async () => {
        const w = await barWidth(page, pid, "post-copy");
        return w !== null && w > first && w < 100 ? w : undefined;
      });
      assert.ok(later > first);
    } finally {
      const r = await moving;
      assert.equal(r.status, 200, r.body.toString());
    }
    await page.locator(`[data-testid=migration][data-pid="${pid}"][data-state=succeeded]`).waitFor({ timeout: 60_000 });
    assert.equal(await runsOn(cluster.nodes[1]!.address, pid), true);
    await json(n1.address, "DELETE", `/v1/processes/${pid}`);
  });
});
