/**
 * The web dashboard (issue 13, item 5) in a real headless Chromium (Debian's
 * `chromium`, driven by playwright-core; nothing is downloaded), over the
 * node's real mutual-TLS port: log in through `ferry dashboard`'s URL, see
 * the nodes and a running process, move it from the page, see the link graph
 * of a ping-pong pair, and a list of real processes paged by the nodes.
 * Also the session's rules (a token works once, actions need the CSRF token
 * and the page's origin). 10,000 processes: test/dashboard_many.test.ts.
 * How Chromium is set up to trust the cluster's CA: test/_browser.ts.
 *
 * With FERRY_SCREENSHOTS=DIR set, the test saves the screenshots in
 * docs/ (`npm run screenshots`) into DIR.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { BrowserContext, Page } from "playwright-core";
import type { ProcessPage } from "../src/node/dashboard_query.js";
import { EXAMPLES, ferry, until } from "./_helpers.js";
import { json, request, runsOn, startCluster, upload, type NodeProc } from "./_cluster.js";
import { CHROMIUM, have_chromium, openBrowser } from "./_browser.js";

if (!have_chromium) console.log(`# ${CHROMIUM} not found (apt-get install chromium): the dashboard's browser tests are skipped`);
const SCREENSHOTS = process.env["FERRY_SCREENSHOTS"];
/**
 * Real processes of the paged-list test: more than one page of the list
 * (the rows in view and a margin of 30 each way, 77 at the page's height),
 * and few enough to start in a test on a loaded machine.
 */
const REAL_ROWS = 100;
/** Argument that marks the paged-list test's processes (`pong N` waits for N messages; none comes). */
const REAL_MARK = "424242";

async function shot(page: Page, name: string): Promise<void> {
  if (SCREENSHOTS === undefined || SCREENSHOTS === "") return;
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`) });
}

describe("web dashboard", { skip: have_chromium ? false : `${CHROMIUM} not found` }, () => {
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  let n1: NodeProc;
  let n2: NodeProc;
  let context: BrowserContext;
  let page: Page;
  let browser: Awaited<ReturnType<typeof openBrowser>> | undefined;
  let login_url = "";
  const sha: Record<string, string> = {};

  before(async () => {
    cluster = await startCluster(["n1", "n2"]);
    [n1, n2] = cluster.nodes as [NodeProc, NodeProc];
    for (const [name, dir] of [["sleeper", "c"], ["pingpong", "c"], ["memhog", "c"]] as const) {
      for (const n of cluster.nodes) sha[name] = await upload(n.address, path.join(EXAMPLES, dir, `${name}.wasm`));
    }
    browser = await openBrowser();
    ({ context, page } = browser);
  });

  after(async () => {
    await browser?.close();
    await cluster?.stop();
  });

  async function start(program: string, args: string[], node: string): Promise<string> {
    return (await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha[program], module_name: `${program}.wasm`, args, node })).pid;
  }

  it("logs in through the URL of ferry dashboard, and shows the nodes and a running process", async () => {
    const pid = await start("sleeper", ["200", "100000"], "n1");
    const made = await ferry(["dashboard", "--json", "--cluster", n1.address]);
    assert.equal(made.status, 0, made.stderr.toString());
    const answer = JSON.parse(made.stdout.toString()) as { url: string; node: string; expires_unix_ms: number };
    login_url = answer.url;
    assert.match(login_url, new RegExp(`^https://${n1.address.replace(/\./g, "\\.")}/login#fdl1\\.[A-Za-z0-9_-]{43}$`));
    await page.goto(login_url);
    await page.getByTestId("session-node").filter({ hasText: "n1" }).waitFor();
    // The token left the address bar (and the history) once used.
    assert.equal(new URL(page.url()).hash, "");
    const cookies = await context.cookies(`https://${n1.address}`);
    const session = cookies.find((c) => c.name === "__Host-ferry_session");
    assert.ok(session !== undefined, `cookies: ${JSON.stringify(cookies.map((c) => c.name))}`);
    assert.equal(session.httpOnly, true);
    assert.equal(session.secure, true);
    assert.equal(session.sameSite, "Strict");
    for (const name of ["n1", "n2"]) await page.locator(`[data-testid=node-card][data-node=${name}]`).waitFor();
    const row = page.locator(`[data-testid=process-row][data-pid="${pid}"]`);
    await row.waitFor();
    assert.equal(await row.getByTestId("process-state").textContent(), "running");
    assert.equal((await row.getByTestId("process-node").textContent())?.trim(), "n1");
  });

  it("refuses a spent login token, actions without the CSRF token, and requests a session may not make", async () => {
    const probe = await context.newPage();
    try {
      await probe.goto(`https://${n1.address}/`);
      const spent = new URL(login_url).hash.slice(1);
      const answers = await probe.evaluate(async (token) => {
        const statusOf = async (r: Promise<Response>): Promise<string> => {
          const res = await r;
          const body = (await res.json()) as { error?: { code?: string } };
          return `${res.status} ${body.error?.code ?? "ok"}`;
        };
        return {
          reuse: await statusOf(fetch("/dashboard/session", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token }) })),
          no_csrf: await statusOf(fetch("/dashboard/api/v1/processes/n1-1", { method: "DELETE" })),
          bad_csrf: await statusOf(fetch("/dashboard/api/v1/processes/n1-1", { method: "DELETE", headers: { "x-ferry-csrf": "A".repeat(43) } })),
          mint: await statusOf(fetch("/dashboard/logins", { method: "POST" })),
          // With the session's own CSRF token: what is refused is the request itself.
          run: await statusOf(
            fetch("/dashboard/api/session").then(async (r) => {
              const { csrf } = (await r.json()) as { csrf: string };
              return fetch("/dashboard/api/v1/processes", { method: "POST", headers: { "content-type": "application/json", "x-ferry-csrf": csrf }, body: "{}" });
            }),
          ),
        };
      }, spent);
      assert.equal(answers.reuse, "401 ERR_SESSION");
      assert.equal(answers.no_csrf, "403 ERR_CSRF");
      assert.equal(answers.bad_csrf, "403 ERR_CSRF");
      // A session cannot mint logins (that takes a client certificate) nor run programs.
      assert.equal(answers.mint, "403 ERR_FORBIDDEN");
      assert.equal(answers.run, "403 ERR_FORBIDDEN");
      // The very URL ferry dashboard printed, opened again without the cookie: the token is spent.
      await context.clearCookies();
      await probe.goto(login_url);
      await probe.getByTestId("logged-out").waitFor();
      assert.match((await probe.getByTestId("logged-out").textContent()) ?? "", /unknown, used or expired/);
      // And the API says so to a browser without a session.
      const status = await probe.evaluate(async () => (await fetch("/dashboard/api/overview")).status);
      assert.equal(status, 401);
    } finally {
      await probe.close();
    }
    // Logged in again for the next tests.
    const made = await ferry(["dashboard", "--json", "--cluster", n1.address]);
    await page.goto((JSON.parse(made.stdout.toString()) as { url: string }).url);
    await page.getByTestId("session-node").waitFor();
  });

  it("moves a process dragged onto a node's card, once the dialog is confirmed", async () => {
    const pid = await start("sleeper", ["200", "100000"], "n1");
    const row = page.locator(`[data-testid=process-row][data-pid="${pid}"]`);
    await row.waitFor();
    const dialog = page.getByTestId("migrate-dialog");
    // Dragged onto a node's card, a process opens the dialog with that node chosen; Cancel moves nothing.
    await row.locator(".pid").dragTo(page.locator("[data-testid=node-card][data-node=n2]"));
    await dialog.waitFor();
    assert.equal(await dialog.getByTestId("migrate-to").inputValue(), "n2");
    await dialog.getByRole("button", { name: "Cancel" }).click();
    await dialog.waitFor({ state: "detached" });
    assert.equal(await runsOn(n1.address, pid), true, "a cancelled drag moves nothing");
    // Dragged again and confirmed: the move runs, and the page follows it to its end.
    await row.locator(".pid").dragTo(page.locator("[data-testid=node-card][data-node=n2]"));
    await dialog.waitFor();
    assert.equal(await dialog.getByTestId("migrate-to").inputValue(), "n2");
    await dialog.getByTestId("strategy-pre-copy").check();
    await dialog.getByTestId("migrate-submit").click();
    await dialog.waitFor({ state: "detached" });
    await page.locator(`[data-testid=migration][data-pid="${pid}"][data-state=succeeded]`).waitFor({ timeout: 60_000 });
    await until(`the row of ${pid} to say n2`, async () => (await row.getByTestId("process-node").textContent())?.trim() === "n2");
    assert.equal(await runsOn(n2.address, pid), true);
    assert.equal(await runsOn(n1.address, pid), false);
    await request(n1.address, "DELETE", `/v1/processes/${pid}`);
  });

  it("starts a migration from the page and sees it complete", async () => {
    const pid = await start("memhog", ["32", "4", "86400"], "n1");
    const row = page.locator(`[data-testid=process-row][data-pid="${pid}"]`);
    await row.waitFor();
    const dialog = page.getByTestId("migrate-dialog");
    await row.getByTestId("migrate-button").click();
    await dialog.waitFor();
    await dialog.getByTestId("migrate-to").selectOption("n2");
    await dialog.getByTestId("strategy-pre-copy").check();
    await shot(page, "dashboard-migrate");
    await dialog.getByTestId("migrate-submit").click();
    const migration = page.locator(`[data-testid=migration][data-pid="${pid}"]`);
    await migration.waitFor();
    await page.locator(`[data-testid=migration][data-pid="${pid}"][data-state=succeeded]`).waitFor({ timeout: 60_000 });
    await until(`the row of ${pid} to say n2`, async () => (await row.getByTestId("process-node").textContent())?.trim() === "n2");
    assert.equal(await runsOn(n2.address, pid), true);
    assert.equal(await runsOn(n1.address, pid), false);
  });

  it("draws the link graph of a ping-pong pair, with its traffic", async () => {
    const pong = await start("pingpong", ["pong", "100000000"], "n1");
    const ping = await start("pingpong", ["ping", pong, "100000000", "4"], "n2");
    const edge = page.locator(`[data-testid=link-edge]`).filter({ has: page.locator("line") });
    await until("an edge between the ping-pong pair", async () => {
      for (const e of await edge.all()) {
        const ends = [await e.getAttribute("data-from"), await e.getAttribute("data-to")].sort();
        if (ends[0] === [ping, pong].sort()[0] && ends[1] === [ping, pong].sort()[1] && Number(await e.getAttribute("data-messages")) > 0) return true;
      }
      return false;
    });
    for (const pid of [ping, pong]) await page.locator(`[data-testid=link-process][data-pid="${pid}"]`).waitFor();
    // Let the plots gather a few samples before the picture.
    await until("a few samples in the plots", async () => (await page.locator(".plot polyline").count()) >= 4);
    await shot(page, "dashboard");
  });

  it("kills a process from the page, after asking once more", async () => {
    const pid = await start("sleeper", ["200", "100000"], "n2");
    const row = page.locator(`[data-testid=process-row][data-pid="${pid}"]`);
    await row.waitFor();
    await row.getByTestId("kill-button").click();
    assert.equal((await json<{ state: string }>(n1.address, "GET", `/v1/processes/${pid}`)).state, "running", "one click only asks");
    await row.getByTestId("kill-confirm").click();
    await until(`the row of ${pid} to say killed`, async () => (await row.getByTestId("process-state").textContent()) === "killed");
    assert.equal((await json<{ state: string }>(n1.address, "GET", `/v1/processes/${pid}`)).state, "killed");
  });

  it("drains a node from the page, after asking once more: its process moves off, and undrain lets processes land again", async () => {
    const pid = await start("sleeper", ["200", "100000"], "n2");
    const row = page.locator(`[data-testid=process-row][data-pid="${pid}"]`);
    await row.waitFor();
    const card = page.locator("[data-testid=node-card][data-node=n2]");
    await card.getByTestId("node-drain").click();
    const drained = async (): Promise<boolean> => (await json<{ name: string; load: { draining: boolean } | null }[]>(n2.address, "GET", "/v1/nodes")).find((n) => n.name === "n2")?.load?.draining ?? false;
    assert.equal(await drained(), false, "one click only asks");
    await card.getByTestId("node-drain-confirm").click();
    await card.getByTestId("node-draining").waitFor();
    assert.equal(await drained(), true);
    // The drained node's own rounds move what it runs (the balancer is off on these nodes: a drain moves all the same).
    await until(`${pid} to leave the drained n2`, async () => (await json<{ node: string }>(n1.address, "GET", `/v1/processes/${pid}`)).node === "n1");
    await until(`the row of ${pid} to show n1`, async () => (await row.getByTestId("process-node").textContent())?.trim() === "n1");
    await card.getByTestId("node-undrain").click();
    await card.getByTestId("node-draining").waitFor({ state: "detached" });
    const later = await start("sleeper", ["200", "100000"], "n2");
    assert.equal((await json<{ node: string }>(n1.address, "GET", `/v1/processes/${later}`)).node, "n2", "an undrained node takes processes again");
    for (const p of [pid, later]) await request(n1.address, "DELETE", `/v1/processes/${p}`);
  });

  it(`pages ${REAL_ROWS} real processes on two nodes through the nodes' own list API, with only a screenful of rows in the page`, async () => {
    const pids: string[] = [];
    // A few starts in flight: each is a worker and an instantiation.
    let next = 0;
    const starter = async (): Promise<void> => {
      for (let i = next++; i < REAL_ROWS; i = next++) pids.push(await start("pingpong", ["pong", REAL_MARK], i % 2 === 0 ? "n1" : "n2"));
    };
    await Promise.all([starter(), starter(), starter()]);
    const answers: { total: number; offset: number; rows: number }[] = [];
    const list = await context.newPage();
    list.on("response", (response) => {
      const url = new URL(response.url());
      if (url.pathname !== "/dashboard/api/processes" || url.searchParams.get("q") !== `pong ${REAL_MARK}` || response.status() !== 200) return;
      response.json().then(
        (body: ProcessPage) => answers.push({ total: body.total, offset: body.offset, rows: body.rows.length }),
        () => undefined, // a response the page let go of (a newer window replaced it) has no body to read: nothing to count
      );
    });
    try {
      await list.goto(`https://${n1.address}/`);
      await list.getByLabel("Filter processes").fill(`pong ${REAL_MARK}`);
      await list.getByTestId("process-count").filter({ hasText: new RegExp(`^${REAL_ROWS} of `) }).waitFor();
      await list.locator("[data-testid=process-row]").first().waitFor();
      const rendered = await list.locator("[data-testid=process-row], [data-testid=process-row-pending]").count();
      // A screenful (480 px of 30 px rows), not all of them.
      assert.ok(rendered > 5 && rendered < 40, `rows in the page: ${rendered}`);
      // The node answered a window of the list, not the whole of it: the two nodes' processes merged and cut.
      await until("a page of the filtered list", () => answers.some((a) => a.total === REAL_ROWS));
      const first = answers.find((a) => a.total === REAL_ROWS);
      assert.ok(first !== undefined && first.rows < REAL_ROWS, `answers: ${JSON.stringify(answers)}`);
      await list.getByTestId("process-rows").evaluate((el) => (el.scrollTop = el.scrollHeight));
      // The last rows come in a later window: asked from an offset past the first answer's rows.
      await until("the window at the end of the list", () => answers.some((a) => a.total === REAL_ROWS && a.offset > 0 && a.offset + a.rows === REAL_ROWS));
      // Counted from here, not by a predicate run in the page: its Content-Security-Policy forbids the eval that a string predicate takes.
      await until("the rows at the end to come", async () => (await list.locator("[data-testid=process-row-pending]").count()) === 0);
      assert.ok((await list.locator("[data-testid=process-row]").count()) < 40);
      const shown = await list.locator("[data-testid=process-row]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-pid")));
      for (const pid of shown) assert.ok(pid !== null && pids.includes(pid), `a row of another process: ${pid}`);
    } finally {
      await list.close();
      for (const pid of pids) await request(n1.address, "DELETE", `/v1/processes/${pid}`);
    }
  });
});
