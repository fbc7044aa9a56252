/**
 * What idle processes cost a node, and the dashboard's first rows (issue
 * 13: "it costs nothing when nobody watches", "usable with 10,000
 * processes"). A `ferry up` cluster of two nodes (separate OS processes,
 * mutual TLS); n1 runs N idle guests (`pingpong pong 1`, waiting for a
 * message that never comes, hibernated after 1 s), n2 none. For N = 0, 100
 * and 1,000 (`--quick`: 0, 100, 300; `--many=N` adds N): each node's
 * `process_cpu_seconds_total` rate over a window while nobody watches, then
 * the page in headless Chromium (when /usr/bin/chromium is there): from
 * opening it to its first process row, and from typing a pid in its filter
 * to that process's row.
 *
 * CPU seconds depend little on the machine's load; wall times do: the load
 * average is printed beside them.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { BrowserContext } from "playwright-core";
import { Dialer, httpRequest } from "../src/node/mod.js";
import { ClusterTls, clientCredentialDir, localAuthorityDir, readCredential, readPem } from "../src/trust/mod.js";
import { ROOT, stopUp } from "./_nodes.js";
import { freePorts, until } from "./many.js";

const FERRY = path.join(ROOT, "bin", "ferry.js");
const CHROMIUM = "/usr/bin/chromium";
/** Requests to start processes in flight at once. */
const START_CONCURRENCY = 4;
/** Hibernation threshold of the nodes: short, so a started guest gives its worker back soon. */
const HIBERNATE_AFTER_MS = 1000;
/** Pause after the last guest hibernated before the window opens: the starts' own after-work (GC, refilled warm workers) is not counted. */
const SETTLE_MS = 5000;

const load = (): string => os.loadavg()[0]!.toFixed(1);

/** Runs the part; `extra` adds one more N. */
export async function idleBench(quick: boolean, extra?: number): Promise<void> {
  const counts = [...new Set([0, 100, quick ? 300 : 1000, ...(extra === undefined ? [] : [extra])])].sort((a, b) => a - b);
  const window_s = quick ? 10 : 30;
  console.log(`\n== idle processes: a node's CPU with N idle guests (hibernated after ${HIBERNATE_AFTER_MS} ms), nobody watching; the dashboard's first row ==`);
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-idle-"));
  const env = { ...process.env, FERRY_HOME: home };
  const port = await freePorts(2);
  const max = counts[counts.length - 1]! + 64;
  const up: ChildProcess = spawn(
    process.execPath,
    [FERRY, "up", "--nodes", "2", "--port", String(port), "--data", path.join(home, "data"), "--balance", "off", "--max-processes", String(max), "--hibernate-after", String(HIBERNATE_AFTER_MS), "--dead-after", "60000", "--log-level", "warn"],
    { env, stdio: ["ignore", "ignore", "pipe"] },
  );
  let up_err = "";
  up.stderr?.on("data", (c: Buffer) => (up_err = (up_err + c.toString()).slice(-4000)));
  const exited = new Promise<void>((r) => up.once("exit", () => r()));
  let context: BrowserContext | null = null;
  let profile = "";
  try {
    const first = `127.0.0.1:${port}`;
    const dialer = await until("ferry up's client credential", async () => (fs.existsSync(path.join(clientCredentialDir(env), "key.pem")) ? new Dialer(new ClusterTls(readCredential(clientCredentialDir(env)))) : undefined), 120_000);
    const call = (address: string, method: string, p: string, body?: Uint8Array | object): Promise<{ status: number; body: Buffer }> => httpRequest(address, method, p, body, dialer);
    const nodes = await until(
      "2 nodes up",
      async () => {
        const list = JSON.parse((await call(first, "GET", "/v1/nodes")).body.toString()) as { name: string; address: string; up: boolean }[];
        const upn = list.filter((n) => n.up).sort((a, b) => a.name.localeCompare(b.name));
        return upn.length === 2 ? upn : undefined;
      },
      120_000,
    );
    const n1 = nodes[0]!;
    const wasm = fs.readFileSync(path.join(ROOT, "examples", "c", "pingpong.wasm"));
    const sha = createHash("sha256").update(wasm).digest("hex");
    await call(n1.address, "PUT", `/v1/modules/${sha}`, wasm);
    const metric = async (address: string, name: string): Promise<number> => {
      const text = (await call(address, "GET", "/metrics")).body.toString();
      return Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
    };
    const have_chromium = fs.existsSync(CHROMIUM);
    if (have_chromium) {
      const { chromium } = await import("playwright-core");
      const ca_pem = readPem(path.join(localAuthorityDir(env), "ca.pem"));
      const spki = createHash("sha256").update(new X509Certificate(ca_pem).publicKey.export({ type: "spki", format: "der" })).digest("base64");
      profile = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-idle-chromium-"));
      context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        viewport: { width: 1400, height: 1000 },
        args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", `--ignore-certificate-errors-spki-list=${spki}`],
      });
      // The browser's first page stays blank: the node has nobody watching until a measured page opens.
      const made = await new Promise<string>((resolve, reject) => {
        const c = spawn(process.execPath, [FERRY, "dashboard", "--json", "--cluster", first], { env, stdio: ["ignore", "pipe", "inherit"] });
        let out = "";
        c.stdout.on("data", (b: Buffer) => (out += b.toString()));
        c.once("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`ferry dashboard exited with ${code}`))));
      });
      const login = await context.newPage();
      await login.goto((JSON.parse(made) as { url: string }).url);
      await login.getByTestId("session-node").waitFor({ timeout: 120_000 });
      await login.close();
    } else {
      console.log(`${CHROMIUM} not found: the page is not measured`);
    }

    console.log(`command: node dist/bench/run.js --only=idle${quick ? " --quick" : ""}${extra === undefined ? "" : ` --many=${extra}`}`);
    console.log(`N on n1 | n1 CPU, nobody watching | n2 CPU (no processes) | start N (s) | page: open to first row (ms) | page: type a pid to its row (ms) | load`);
    let started = 0;
    const pids: string[] = [];
    for (const n of counts) {
      const t0 = performance.now();
      const starter = async (): Promise<void> => {
        while (started < n) {
          started += 1;
          const r = await call(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "pingpong.wasm", args: ["pong", "1"], node: n1.name });
          if (r.status !== 201) throw new Error(`start: ${r.status} ${r.body.toString().slice(0, 200)}`);
          pids.push((JSON.parse(r.body.toString()) as { pid: string }).pid);
        }
      };
      await Promise.all(Array.from({ length: START_CONCURRENCY }, starter));
      const start_s = (performance.now() - t0) / 1000;
      await until(`${n} guests hibernated`, async () => ((await metric(n1.address, "ferry_node_processes_hibernated")) >= n ? true : undefined), 1_800_000);
      await new Promise((r) => setTimeout(r, SETTLE_MS));
      const a = await Promise.all(nodes.map((x) => metric(x.address, "process_cpu_seconds_total")));
      await new Promise((r) => setTimeout(r, window_s * 1000));
      const b = await Promise.all(nodes.map((x) => metric(x.address, "process_cpu_seconds_total")));
      const pct = (i: number): string => `${(((b[i]! - a[i]!) / window_s) * 100).toFixed(2)} %`;
      let first_row = "—";
      let find = "—";
      if (context !== null && n > 0) {
        const page = await context.newPage();
        try {
          const t = performance.now();
          await page.goto(`https://${first}/`);
          await page.locator("[data-testid=process-row]").first().waitFor({ timeout: 120_000 });
          first_row = (performance.now() - t).toFixed(0);
          // The middle one: neither the list's first rows nor its last.
          const target = pids[Math.floor(pids.length / 2)]!;
          const f = performance.now();
          await page.getByLabel("Filter processes").fill(target);
          await page.locator(`[data-testid=process-row][data-pid="${target}"]`).waitFor({ timeout: 120_000 });
          find = (performance.now() - f).toFixed(0);
        } finally {
          await page.close();
        }
      }
      console.log(`${n} | ${pct(0)} | ${pct(1)} | ${start_s.toFixed(1)} | ${first_row} | ${find} | ${load()}`);
    }
    console.log(`CPU: rate of each node's process_cpu_seconds_total over ${window_s} s (two scrapes of /metrics included), % of one core. Measured with no page open; the page is opened after.`);
  } finally {
    await context?.close();
    if (profile !== "") fs.rmSync(profile, { recursive: true, force: true });
    await stopUp(up, exited, () => up_err);
    fs.rmSync(home, { recursive: true, force: true });
  }
}
