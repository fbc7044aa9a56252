/**
 * The dashboard with 10,000 processes (issue 13: "it must stay usable with
 * 10,000 processes"), all of it real: two node processes over mutual TLS,
 * their own list API, the built page in headless Chromium. 10,000 running
 * guests are more than a test can start (each is a worker thread and an
 * instantiation, some 250 ms of CPU here), so most of the list is at the
 * nodes' data layer: each node starts on a data directory whose saved state
 * holds 5,000 processes that ended before it (re)started, as a node that ran
 * them would, and lists them from its own table as it lists any. A few real
 * guests run beside them; the test finds one of those among the 10,000.
 *
 * Also the regression of the page's first rows: a node slower to answer the
 * list than the page polls (each poll used to cancel the list's request, and
 * no row ever came).
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Page } from "playwright-core";
import { NODE_STATE_VERSION, NodeStateFile } from "../src/node/node_state.js";
import { savedHome } from "../src/node/_state_testing.js";
import { PAGE_ROWS_MAX, type ProcessPage } from "../src/node/dashboard_query.js";
import { EXAMPLES, ferry, tempDir, until } from "./_helpers.js";
import { freePorts, json, request, startNode, stopNode, upload, type NodeProc } from "./_cluster.js";
import { CHROMIUM, have_chromium, openBrowser } from "./_browser.js";

if (!have_chromium) console.log(`# ${CHROMIUM} not found (apt-get install chromium): the dashboard's browser tests are skipped`);
const SCREENSHOTS = process.env["FERRY_SCREENSHOTS"];
/** Ended processes each node's saved state holds. */
const ENDED_PER_NODE = 5_000;
/** Real guests running beside them, per node. */
const RUNNING_PER_NODE = 2;
const ALL = 2 * (ENDED_PER_NODE + RUNNING_PER_NODE);
/** Rows the page may hold in its document: a screenful (480 px of 30 px rows) and a margin, never the list. */
const ROWS_IN_DOCUMENT_MAX = 40;

/** The page's count of `n` shown rows, as it writes it (web/format.ts: "10 004 of ..."). */
function shown(n: number): RegExp {
  return new RegExp(`^${n.toLocaleString("en-US").replace(/,/g, " ")} of `);
}

/** A saved state of node `name` holding `count` processes that ended, with pids 1..count (the next pid follows them). */
function savedEnded(data: string, name: string, count: number): void {
  const homes = Array.from({ length: count }, (_, i) =>
    savedHome(`${name}-${i + 1}`, {
      home: name,
      node: name,
      state: i % 7 === 0 ? "killed" : "exited",
      exit: i % 7 === 0 ? { kind: "killed" } : { kind: "exit", code: i % 3 },
      started_unix_ms: Date.now() - (count - i) * 1000,
      module_name: "batch.wasm",
      args: ["job", String(i + 1)],
    }),
  );
  new NodeStateFile(data).save({ version: NODE_STATE_VERSION, node: name, next_pid: count + 1, homes, running: [] });
}

describe("web dashboard with 10,000 processes", { skip: have_chromium ? false : `${CHROMIUM} not found` }, () => {
  let dir = "";
  const nodes: NodeProc[] = [];
  let browser: Awaited<ReturnType<typeof openBrowser>> | undefined;
  let page: Page;
  const running: string[] = [];
  /** Every answer of the list API the page had, as counted from here. */
  const answers: { offset: number; rows: number; total: number; all: number }[] = [];

  before(async () => {
    dir = tempDir("dash-many");
    const ports = await freePorts(2);
    const names = ["n1", "n2"];
    const addresses = ports.map((p) => `127.0.0.1:${p}`);
    for (const name of names) savedEnded(path.join(dir, name), name, ENDED_PER_NODE);
    for (const [i, name] of names.entries()) {
      nodes.push(await startNode(name, ports[i] as number, addresses.filter((_, j) => j !== i), path.join(dir, name)));
    }
    for (const n of nodes) {
      const sha = await upload(n.address, path.join(EXAMPLES, "c", "sleeper.wasm"));
      for (let i = 0; i < RUNNING_PER_NODE; i += 1) {
        running.push((await json<{ pid: string }>(n.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "sleeper.wasm", args: ["200", "100000"], node: n.name })).pid);
      }
    }
    browser = await openBrowser();
    page = browser.page;
    page.on("response", (response) => {
      const url = new URL(response.url());
      if (url.pathname !== "/dashboard/api/processes" || url.searchParams.has("pids") || response.status() !== 200) return;
      response.json().then(
        (body: ProcessPage) => answers.push({ offset: body.offset, rows: body.rows.length, total: body.total, all: body.all }),
        () => undefined, // a response the page let go of has no body to read: nothing to count
      );
    });
  });

  after(async () => {
    await browser?.close();
    for (const pid of running) await request(nodes[0]!.address, "DELETE", `/v1/processes/${pid}`).catch(() => undefined); // the node may be gone: it is stopped next anyway
    for (const n of nodes) await stopNode(n);
    if (dir !== "") fs.rmSync(dir, { recursive: true, force: true });
  });

  const rowsInDocument = (): Promise<number> => page.locator("[data-testid=process-row], [data-testid=process-row-pending]").count();

  it(`lists the ${ALL} processes of two nodes from the first row on, with a screenful of rows in the page`, async () => {
    const made = await ferry(["dashboard", "--json", "--cluster", nodes[0]!.address]);
    assert.equal(made.status, 0, made.stderr.toString());
    await page.goto((JSON.parse(made.stdout.toString()) as { url: string }).url);
    await page.locator("[data-testid=process-row]").first().waitFor();
    await page.getByTestId("process-count").filter({ hasText: shown(ALL) }).waitFor();
    assert.ok((await rowsInDocument()) < ROWS_IN_DOCUMENT_MAX, `rows in the page: ${await rowsInDocument()}`);
    // The node answered windows of the list, never the list.
    await until("an answer counting every process", () => answers.some((a) => a.all === ALL));
    for (const a of answers) assert.ok(a.rows <= PAGE_ROWS_MAX && a.rows < 200, `an answer of ${a.rows} rows`);
  });

  it("scrolls to the end of the list and shows its last rows", async () => {
    const box = page.getByTestId("process-rows");
    await box.evaluate((el) => (el.scrollTop = el.scrollHeight));
    // By pid, n2's processes come last, its running ones (started after the 5,000 ended) at the very end.
    const last = running[running.length - 1]!;
    await page.locator(`[data-testid=process-row][data-pid="${last}"]`).waitFor();
    assert.equal(await page.locator(`[data-testid=process-row][data-pid="${last}"]`).getByTestId("process-state").textContent(), "running");
    assert.ok((await rowsInDocument()) < ROWS_IN_DOCUMENT_MAX);
    await box.evaluate((el) => (el.scrollTop = 0));
    await page.locator(`[data-testid=process-row][data-pid="n1-1"]`).waitFor();
  });

  it("finds one running process among them by its pid, and by state", async () => {
    const wanted = running[0]!;
    await page.getByLabel("Filter processes").fill(wanted);
    await page.getByTestId("process-count").filter({ hasText: shown(1) }).waitFor();
    const row = page.locator(`[data-testid=process-row][data-pid="${wanted}"]`);
    await row.waitFor();
    assert.equal((await row.getByTestId("process-node").textContent())?.trim(), "n1");
    await page.getByLabel("Filter processes").fill("");
    await page.getByLabel("State").selectOption("running");
    await page.getByTestId("process-count").filter({ hasText: shown(running.length) }).waitFor();
    const pids = await page.locator("[data-testid=process-row]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-pid")));
    assert.deepEqual([...pids].sort(), [...running].sort());
    // A job of the saved state, by an argument.
    await page.getByLabel("State").selectOption("");
    await page.getByLabel("Filter processes").fill("job 4321");
    await page.locator(`[data-testid=process-row][data-pid="n1-4321"]`).waitFor();
    await page.getByLabel("Filter processes").fill("");
    await page.getByTestId("process-count").filter({ hasText: shown(ALL) }).waitFor();
    if (SCREENSHOTS !== undefined && SCREENSHOTS !== "") {
      fs.mkdirSync(SCREENSHOTS, { recursive: true });
      await page.getByTestId("process-rows").evaluate((el) => (el.scrollTop = el.scrollHeight));
      await page.locator(`[data-testid=process-row][data-pid="${running[running.length - 1]!}"]`).waitFor();
      await page.screenshot({ path: path.join(SCREENSHOTS, "dashboard-10000.png") });
    }
  });

  it("shows the first rows even when the node answers the list more slowly than the page polls (each poll cancelled the list's request)", async () => {
    const slow = await browser!.context.newPage();
    let polls = 0;
    let closing = false;
    slow.on("request", (r) => {
      if (new URL(r.url()).pathname === "/dashboard/api/overview") polls += 1;
    });
    // Each request of the list reaches the node (and is answered by it) only after the page has polled twice
    // more: one whole poll lies between the page's request and its answer, however fast this machine is.
    await slow.route(/\/dashboard\/api\/processes\?/, async (route) => {
      if (new URL(route.request().url()).searchParams.has("pids")) return route.continue();
      const asked_at = polls;
      await until("two more polls of the page", () => closing || polls >= asked_at + 2);
      // A request the page gave up meanwhile cannot go on: that is the failure this test looks for, seen as no row.
      await route.continue().catch(() => undefined);
    });
    try {
      await slow.goto(`https://${nodes[0]!.address}/`);
      await slow.locator("[data-testid=process-row]").first().waitFor({ timeout: 60_000 });
      await slow.getByTestId("process-count").filter({ hasText: shown(ALL) }).waitFor();
    } finally {
      // A request still held lets go (it fails with the page) rather than wait for polls that no longer come.
      closing = true;
      await slow.close();
    }
  });
});
