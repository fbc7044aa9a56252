/**
 * Many processes (issue 13: "the dashboard must stay usable with 10,000
 * processes"): a `ferry up` cluster of three nodes (separate OS processes,
 * mutual TLS) runs N real idle guests, which hibernate (`--hibernate-after`)
 * once started: `pingpong pong 1`, each waiting for a message that never
 * comes (`--many-sleepers`: examples/c/sleeper.wasm, a minute asleep at a
 * time, instead). Idle guests, because a wake is a worker start and an
 * instantiation, some 250 ms of CPU on this shared 2-core machine: 10,000
 * one-minute sleepers wake 167 times a second, 40 cores' worth. Reported:
 * how long starting them takes, each node's resident memory and threads
 * before and after (per hibernated guest), the dashboard's list API with N
 * processes (first page, a page far down, a filter), the page itself in
 * headless Chromium (first rows, a scroll to the end) when /usr/bin/chromium
 * is there, and each node's CPU while nobody watches and while the page
 * does. N is 10,000 (`--many=N` to change; `--quick`: 300).
 *
 * Wall times are the shared machine's: its load average is printed beside
 * them. Counts, bytes and CPU seconds depend much less on it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Dialer, httpRequest } from "../src/node/mod.js";
import { ClusterTls, clientCredentialDir, localAuthorityDir, readCredential, readPem } from "../src/trust/mod.js";
import { freePort, ROOT, stopUp } from "./_nodes.js";
import { median } from "./_measure.js";

const FERRY = path.join(ROOT, "bin", "ferry.js");
const CHROMIUM = "/usr/bin/chromium";
const NODES = 3;
/** Requests to start processes in flight at once. */
const START_CONCURRENCY = 4;
/** Tries of a request whose connection a node did not accept (5 s each): a node's event loop can be slow for that long on a machine at load 30. */
const CALL_ATTEMPTS = 12;
/**
 * The nodes' membership lease: long, because a node starting thousands of
 * processes on a shared machine at load 40 missed the default 3 s and was
 * declared dead (its processes lost), which measures the machine, not this.
 */
const DEAD_AFTER_MS = 60_000;
/** Hibernation threshold of the nodes: short, so a started sleeper gives its worker back soon. */
const HIBERNATE_AFTER_MS = 1000;

/** Clock ticks of /proc/PID/stat's times: USER_HZ, 100 on Linux whatever the kernel's own rate. */
const USER_HZ = 100;

interface NodeInfo {
  name: string;
  address: string;
  os_pid: number;
}

interface Sample {
  rss_bytes: number;
  threads: number;
  cpu_s: number;
}

/** Resident memory, threads and CPU seconds of an OS process, from /proc (no request to the node, so nothing of it is measured). */
export function sample(os_pid: number): Sample {
  const status = fs.readFileSync(`/proc/${os_pid}/status`, "utf8");
  const rss_kb = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? NaN);
  const threads = Number(/^Threads:\s+(\d+)$/m.exec(status)?.[1] ?? NaN);
  // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th of them.
  const stat = fs.readFileSync(`/proc/${os_pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const cpu_s = (Number(fields[11]) + Number(fields[12])) / USER_HZ;
  return { rss_bytes: rss_kb * 1024, threads, cpu_s };
}

const mib = (b: number): string => (b / 1048576).toFixed(1);
const load = (): string => os.loadavg()[0]!.toFixed(1);

/** A port P with P+1 .. P+nodes-1 free too (ferry up takes consecutive ports). */
export async function freePorts(nodes = NODES): Promise<number> {
  for (;;) {
    const p = await freePort();
    if (p + nodes > 65535) continue;
    let ok = true;
    for (let i = 1; i < nodes; i += 1) {
      const net = await import("node:net");
      ok = await new Promise<boolean>((resolve) => {
        const s = net.createServer();
        s.once("error", () => resolve(false));
        s.listen(p + i, "127.0.0.1", () => s.close(() => resolve(true)));
      });
      if (!ok) break;
    }
    if (ok) return p;
  }
}

/** Resolves once `check` gives a value; throws after `limit_ms`. */
export async function until<T>(what: string, check: () => Promise<T | undefined>, limit_ms: number): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() - t0 > limit_ms) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Runs the part; `many` processes (default 10,000). */
export async function manyBench(quick: boolean, many?: number): Promise<void> {
  const count = many ?? (quick ? 300 : 10_000);
  console.log(`\n== many processes: ${count} idle guests on a ferry up cluster of ${NODES} nodes (--hibernate-after ${HIBERNATE_AFTER_MS}) ==`);
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-many-"));
  const data = path.join(home, "data");
  const env = { ...process.env, FERRY_HOME: home };
  const port = await freePorts();
  const per_node = Math.ceil(count / NODES);
  const up: ChildProcess = spawn(
    process.execPath,
    [FERRY, "up", "--nodes", String(NODES), "--port", String(port), "--data", data, "--balance", "off", "--max-processes", String(per_node + 64), "--hibernate-after", String(HIBERNATE_AFTER_MS), "--warm-workers", "2", "--dead-after", String(DEAD_AFTER_MS), "--log-level", "warn"],
    { env, stdio: ["ignore", "ignore", "pipe"] },
  );
  let up_err = "";
  /** Warnings of the nodes about their membership leases (a renewal that failed, a lease that may have run out): what a node too busy to renew says. */
  let lease_warnings = 0;
  up.stderr?.on("data", (c: Buffer) => {
    const text = c.toString();
    lease_warnings += (text.match(/lease/g) ?? []).length;
    up_err = (up_err + text).slice(-4000);
  });
  const exited = new Promise<void>((r) => up.once("exit", () => r()));
  try {
    const first = `127.0.0.1:${port}`;
    const dialer = await until("ferry up's client credential", async () => (fs.existsSync(path.join(clientCredentialDir(env), "key.pem")) ? new Dialer(new ClusterTls(readCredential(clientCredentialDir(env)))) : undefined), 120_000);
    // A node busy starting thousands of processes on a loaded machine may be slow to accept: a connection it never took is tried again (nothing was sent).
    const call = async (address: string, method: string, p: string, body?: Uint8Array | object): Promise<{ status: number; body: Buffer }> => {
      for (let attempt = 1; ; attempt += 1) {
        try {
          return await httpRequest(address, method, p, body, dialer);
        } catch (err: unknown) {
          if (attempt >= CALL_ATTEMPTS || (err as { code?: unknown }).code !== "ERR_PEER_UNREACHABLE") throw err;
        }
      }
    };
    const nodes = await until(
      `${NODES} nodes up`,
      async () => {
        const r = await call(first, "GET", "/v1/nodes");
        const list = JSON.parse(r.body.toString()) as { name: string; address: string; up: boolean; os_pid: number | null }[];
        const upn = list.filter((n) => n.up && n.os_pid !== null);
        return upn.length === NODES ? upn.map((n) => ({ name: n.name, address: n.address, os_pid: n.os_pid as number })) : undefined;
      },
      120_000,
    );
    const sleepers = process.argv.includes("--many-sleepers");
    const [module_name, args] = sleepers ? ["sleeper.wasm", ["60000", "1000000"]] : ["pingpong.wasm", ["pong", "1"]];
    console.log(`guests: ${module_name} ${args.join(" ")}`);
    const wasm = fs.readFileSync(path.join(ROOT, "examples", "c", module_name));
    const sha = createHash("sha256").update(wasm).digest("hex");
    for (const n of nodes) await call(n.address, "PUT", `/v1/modules/${sha}`, wasm);
    const before = new Map(nodes.map((n) => [n.name, sample(n.os_pid)]));

    // Start them: round robin over the nodes, a few requests in flight.
    const t0 = performance.now();
    let next = 0;
    let failed = 0;
    const starter = async (): Promise<void> => {
      for (;;) {
        const i = next;
        next += 1;
        if (i >= count) return;
        const n = nodes[i % NODES] as NodeInfo;
        const r = await call(n.address, "POST", "/v1/processes", { module_sha256: sha, module_name, args, node: n.name }).catch((err: unknown) => ({
          status: 0,
          body: Buffer.from(String(err)),
        }));
        if (r.status !== 201) {
          failed += 1;
          if (failed <= 3) console.log(`  start ${i} on ${n.name} failed: ${r.status} ${r.body.toString().slice(0, 200)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: START_CONCURRENCY }, starter));
    const start_s = (performance.now() - t0) / 1000;
    console.log(`started ${count - failed} of ${count} in ${start_s.toFixed(1)} s (${((count - failed) / start_s).toFixed(1)}/s; ${START_CONCURRENCY} requests in flight; load ${load()})`);
    const hibernated = async (n: NodeInfo): Promise<{ count: number; bytes: number }> => {
      const text = (await call(n.address, "GET", "/metrics")).body.toString();
      const c = Number(/^ferry_node_processes_hibernated\{[^}]*\} (\S+)$/m.exec(text)?.[1] ?? NaN);
      const b = Number(/^ferry_node_hibernated_bytes\{[^}]*\} (\S+)$/m.exec(text)?.[1] ?? NaN);
      return { count: c, bytes: b };
    };
    await until(
      "every sleeper to hibernate",
      async () => {
        let sum = 0;
        for (const n of nodes) sum += (await hibernated(n)).count;
        return sum >= count - failed ? sum : undefined;
      },
      600_000,
    );
    console.log(`all hibernated ${((performance.now() - t0) / 1000).toFixed(1)} s after the first start (load ${load()})`);
    console.log(`lease warnings in the nodes' logs so far: ${lease_warnings} (membership lease ${DEAD_AFTER_MS} ms)`);
    console.log("node | processes | hibernated | kept bytes | RSS before → after (MiB) | per hibernated guest | threads before → after | event loop delay max (s)");
    for (const n of nodes) {
      const b = before.get(n.name) as Sample;
      const a = sample(n.os_pid);
      const h = await hibernated(n);
      const text = (await call(n.address, "GET", "/metrics")).body.toString();
      const lag_max = /^nodejs_eventloop_lag_max_seconds(?:\{[^}]*\})? (\S+)$/m.exec(text)?.[1] ?? "?";
      console.log(
        `${n.name} | ${Math.round(count / NODES)} | ${h.count} | ${mib(h.bytes)} MiB | ${mib(b.rss_bytes)} → ${mib(a.rss_bytes)} | ${((a.rss_bytes - b.rss_bytes) / Math.max(1, h.count) / 1024).toFixed(0)} KiB | ${b.threads} → ${a.threads} | ${lag_max}`,
      );
    }

    // The dashboard's list API, as the page asks it.
    const api = async (query: string): Promise<number> => {
      const t = performance.now();
      const r = await call(first, "GET", `/dashboard/api/processes?${query}`);
      if (r.status !== 200) throw new Error(`list: ${r.status} ${r.body.toString().slice(0, 200)}`);
      const page = JSON.parse(r.body.toString()) as { all: number };
      if (page.all < count - failed) throw new Error(`the list counts ${page.all} processes, not ${count - failed}`);
      return performance.now() - t;
    };
    const times = async (query: string, n: number): Promise<string> => {
      const xs: number[] = [];
      for (let i = 0; i < n; i += 1) xs.push(await api(query));
      return `${median(xs).toFixed(0)} ms (median of ${n}, min ${Math.min(...xs).toFixed(0)})`;
    };
    console.log(`list API, first 100 rows: ${await times("offset=0&limit=100", 5)} (load ${load()})`);
    console.log(`list API, 100 rows at offset ${Math.floor(count / 2)}: ${await times(`offset=${Math.floor(count / 2)}&limit=100`, 5)}`);
    console.log(`list API, sorted by memory: ${await times("sort=memory&limit=100", 3)}`);
    console.log(`list API, filter "-77": ${await times("q=-77&limit=100", 3)}`);

    // What `ferry ps` asks: the whole list, merged from every node.
    const ps_ms: number[] = [];
    let ps_bytes = 0;
    for (let i = 0; i < 3; i += 1) {
      const t = performance.now();
      const r = await call(first, "GET", "/v1/processes");
      ps_ms.push(performance.now() - t);
      const list = JSON.parse(r.body.toString()) as unknown[];
      if (r.status !== 200 || list.length < count - failed) throw new Error(`GET /v1/processes: ${r.status}, ${list.length} processes, not ${count - failed}`);
      ps_bytes = r.body.length;
    }
    console.log(`GET /v1/processes (ferry ps): ${median(ps_ms).toFixed(0)} ms (median of 3, min ${Math.min(...ps_ms).toFixed(0)}), ${mib(ps_bytes)} MiB (load ${load()})`);
    const state_bytes = (dir: string): number => (fs.existsSync(dir) ? fs.readdirSync(dir).reduce((sum, f) => sum + fs.statSync(path.join(dir, f)).size, 0) : 0);
    console.log(`state on disk: ${nodes.map((n) => `${n.name} ${mib(state_bytes(path.join(data, n.name, "state")))} MiB`).join(", ")}`);

    const idle_s = quick ? 10 : 30;
    const cpu = async (label: string): Promise<void> => {
      const a = new Map(nodes.map((n) => [n.name, sample(n.os_pid).cpu_s]));
      await new Promise((r) => setTimeout(r, idle_s * 1000));
      const parts = nodes.map((n) => `${n.name} ${(((sample(n.os_pid).cpu_s - (a.get(n.name) as number)) / idle_s) * 100).toFixed(1)}%`);
      console.log(`node CPU ${label} over ${idle_s} s: ${parts.join(", ")} of one core (load ${load()})`);
    };
    await cpu("while nobody watches");
    if (fs.existsSync(CHROMIUM)) await browser(first, env, count - failed, cpu);
    else console.log(`${CHROMIUM} not found: the page was not measured`);
  } finally {
    await stopUp(up, exited, () => up_err);
    fs.rmSync(home, { recursive: true, force: true });
  }
}

/** The page in headless Chromium: log in, first rows, a scroll to the end; then the node CPU while it watches. */
async function browser(first: string, env: NodeJS.ProcessEnv, count: number, cpu: (label: string) => Promise<void>): Promise<void> {
  const { chromium } = await import("playwright-core");
  const made = await new Promise<string>((resolve, reject) => {
    const c = spawn(process.execPath, [FERRY, "dashboard", "--json", "--cluster", first], { env, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    c.stdout.on("data", (b: Buffer) => (out += b.toString()));
    c.once("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`ferry dashboard exited with ${code}`))));
  });
  const url = (JSON.parse(made) as { url: string }).url;
  const ca_pem = readPem(path.join(localAuthorityDir(env), "ca.pem"));
  const spki = createHash("sha256").update(new X509Certificate(ca_pem).publicKey.export({ type: "spki", format: "der" })).digest("base64");
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-many-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 1000 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", `--ignore-certificate-errors-spki-list=${spki}`],
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const t0 = performance.now();
    await page.goto(url);
    await page.locator("[data-testid=process-row]").first().waitFor({ timeout: 120_000 });
    const first_ms = performance.now() - t0;
    const shown = await page.getByTestId("process-count").textContent();
    const rendered = await page.locator("[data-testid=process-row], [data-testid=process-row-pending]").count();
    console.log(`page: login to first rows ${first_ms.toFixed(0)} ms; count shows "${shown}"; ${rendered} rows in the document (load ${load()})`);
    const box = page.getByTestId("process-rows");
    for (const [label, where] of [
      ["to the end", "end"],
      ["to the middle", "middle"],
      ["to the top", "top"],
    ] as const) {
      const t = performance.now();
      await box.evaluate((el, w) => (el.scrollTop = w === "end" ? el.scrollHeight : w === "middle" ? el.scrollHeight / 2 : 0), where);
      // Rows of the new place are pending until their page comes; the scroll is done when none is.
      // Polled from here: the page's Content-Security-Policy forbids the eval a string predicate in the page takes.
      await until(
        "the rows of the new place",
        async () => ((await page.locator("[data-testid=process-row-pending]").count()) === 0 && (await page.locator("[data-testid=process-row]").count()) > 0 ? true : undefined),
        60_000,
      );
      console.log(`page: scroll ${label} of ${count} and rows shown in ${(performance.now() - t).toFixed(0)} ms`);
    }
    await cpu("while the page is open");
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}
