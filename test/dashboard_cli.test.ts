/**
 * The dashboard without a browser (issue 13, items 5-6), against a real
 * cluster: its login and session rules over the node's TLS port as a
 * browser meets them (no client certificate), and `ferry top`: one frame
 * with `--once`, and the live view on a terminal (a pseudo-terminal made by
 * util-linux's `script`) that draws on the alternate screen, redraws, and
 * gives the terminal back when `q` is pressed. test/dashboard.test.ts drives
 * the page itself in Chromium.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import https from "node:https";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { EXAMPLES, FERRY, ferry, testHome, until } from "./_helpers.js";
import { json, nodeDialer, request, startCluster, testAuthority, upload, type NodeProc } from "./_cluster.js";

/** util-linux's `script`, which runs a command on a pseudo-terminal. */
const have_script = spawnSync("script", ["--version"], { stdio: "ignore" }).status === 0;
if (!have_script) console.log("# `script` (util-linux) not found: ferry top's live view is not tested on a terminal");

/** A request as a browser makes it: TLS checked against the cluster CA and the node's address, but no client certificate. */
async function browserRequest(
  address: string,
  method: string,
  path: string,
  options: { headers?: Record<string, string>; body?: object } = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; json: Record<string, unknown> }> {
  const ca = (await testAuthority()).cert_pem;
  const [host, port] = address.split(":") as [string, string];
  const payload = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
  return new Promise((resolve, reject) => {
    const req = https.request({ host, port: Number(port), method, path, ca, agent: false, headers: { ...options.headers, ...(payload === undefined ? {} : { "content-type": "application/json" }) } });
    req.on("response", (res) => {
      const parts: Buffer[] = [];
      res.on("data", (c: Buffer) => parts.push(c));
      res.on("end", () => {
        const text = Buffer.concat(parts).toString();
        let value: Record<string, unknown> = {};
        try {
          value = JSON.parse(text) as Record<string, unknown>;
        } catch {
          value = { text };
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, json: value });
      });
    });
    req.on("error", reject);
    req.end(payload);
  });
}

const codeOf = (r: { json: Record<string, unknown> }): unknown => (r.json["error"] as { code?: unknown } | undefined)?.code;

describe("dashboard sessions and ferry top", () => {
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  let n1: NodeProc;
  const pids: string[] = [];
  let sleeper_sha = "";

  before(async () => {
    cluster = await startCluster(["n1", "n2"]);
    n1 = cluster.nodes[0] as NodeProc;
    for (const [node, args] of [["n1", ["200", "100000"]], ["n2", ["32", "1", "86400"]]] as const) {
      const program = node === "n1" ? "sleeper" : "memhog";
      const sha = await upload(n1.address, path.join(EXAMPLES, "c", `${program}.wasm`));
      if (node === "n2") await upload((cluster.nodes[1] as NodeProc).address, path.join(EXAMPLES, "c", `${program}.wasm`));
      if (program === "sleeper") sleeper_sha = sha;
      pids.push((await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: `${program}.wasm`, args, node })).pid);
    }
  });
  after(() => cluster.stop());

  it("logs a browser in once per token, then lets its session read and act only with the CSRF token and the page's origin", async () => {
    const n2 = cluster.nodes[1] as NodeProc;
    const origin = `https://${n1.address}`;
    // The page is there for anyone who completes TLS; the data are not.
    const page = await browserRequest(n1.address, "GET", "/");
    assert.equal(page.status, 200);
    assert.match(String(page.headers["content-security-policy"]), /default-src 'none'.*frame-ancestors 'none'/);
    assert.equal(codeOf(await browserRequest(n1.address, "GET", "/dashboard/api/overview")), "ERR_SESSION");
    assert.equal(codeOf(await browserRequest(n1.address, "POST", "/dashboard/logins")), "ERR_FORBIDDEN");
    // A node certificate is not a person: it gets no login.
    const as_node = await request(n1.address, "POST", "/dashboard/logins", undefined, await nodeDialer());
    assert.equal(as_node.status, 403);

    const made = await ferry(["dashboard", "--json", "--node", "n2", "--cluster", n1.address]);
    assert.equal(made.status, 0, made.stderr.toString());
    const url = new URL((JSON.parse(made.stdout.toString()) as { url: string }).url);
    assert.equal(url.host, n2.address, "--node n2 gives n2's own URL: its sessions live there");
    const token = url.hash.slice(1);
    const n2_origin = `https://${n2.address}`;
    assert.equal(codeOf(await browserRequest(n2.address, "POST", "/dashboard/session", { body: { token } })), "ERR_CSRF", "a login without the page's origin");
    assert.equal(codeOf(await browserRequest(n2.address, "POST", "/dashboard/session", { body: { token }, headers: { origin: "https://evil.example" } })), "ERR_CSRF");
    const login = await browserRequest(n2.address, "POST", "/dashboard/session", { body: { token }, headers: { origin: n2_origin } });
    assert.equal(login.status, 200, JSON.stringify(login.json));
    assert.equal(login.json["user"], "tester");
    const set = String(login.headers["set-cookie"]);
    assert.match(set, /^__Host-ferry_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+; Secure$/);
    assert.equal(codeOf(await browserRequest(n2.address, "POST", "/dashboard/session", { body: { token }, headers: { origin: n2_origin } })), "ERR_SESSION", "the token works once");
    const cookie = set.split(";")[0] as string;
    // The cookie is n2's: n1 does not know it.
    assert.equal(codeOf(await browserRequest(n1.address, "GET", "/dashboard/api/overview", { headers: { cookie } })), "ERR_SESSION");
    const overview = await browserRequest(n2.address, "GET", "/dashboard/api/overview", { headers: { cookie } });
    assert.equal(overview.status, 200);
    assert.deepEqual((overview.json["nodes"] as { name: string }[]).map((n) => n.name).sort(), ["n1", "n2"]);
    const page_of = await browserRequest(n2.address, "GET", `/dashboard/api/processes?q=${pids[0]}`, { headers: { cookie } });
    assert.deepEqual((page_of.json["rows"] as { pid: string }[]).map((r) => r.pid), [pids[0]]);
    assert.equal(codeOf(await browserRequest(n2.address, "GET", "/dashboard/api/processes?limit=100000", { headers: { cookie } })), "ERR_BAD_REQUEST");

    const victim = (await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sleeper_sha, module_name: "sleeper.wasm", args: ["200", "100000"] })).pid;
    const kill = `/dashboard/api/v1/processes/${victim}`;
    const csrf = String(login.json["csrf"]);
    assert.equal(codeOf(await browserRequest(n2.address, "DELETE", kill, { headers: { cookie, origin: n2_origin } })), "ERR_CSRF");
    assert.equal(codeOf(await browserRequest(n2.address, "DELETE", kill, { headers: { cookie, "x-ferry-csrf": csrf } })), "ERR_CSRF", "no origin");
    assert.equal(codeOf(await browserRequest(n2.address, "DELETE", kill, { headers: { cookie, "x-ferry-csrf": csrf, origin } })), "ERR_CSRF", "n1's origin on n2");
    assert.equal(codeOf(await browserRequest(n2.address, "POST", "/dashboard/api/v1/tokens", { headers: { cookie, "x-ferry-csrf": csrf, origin: n2_origin }, body: {} })), "ERR_FORBIDDEN");
    assert.equal((await json<{ state: string }>(n1.address, "GET", `/v1/processes/${victim}`)).state, "running");
    const killed = await browserRequest(n2.address, "DELETE", kill, { headers: { cookie, "x-ferry-csrf": csrf, origin: n2_origin } });
    assert.equal(killed.status, 200, JSON.stringify(killed.json));
    assert.equal((await json<{ state: string }>(n1.address, "GET", `/v1/processes/${victim}`)).state, "killed");

    const out = await browserRequest(n2.address, "DELETE", "/dashboard/session", { headers: { cookie, "x-ferry-csrf": csrf, origin: n2_origin } });
    assert.equal(out.status, 200);
    assert.equal(codeOf(await browserRequest(n2.address, "GET", "/dashboard/api/overview", { headers: { cookie } })), "ERR_SESSION", "logged out");
  });

  it("pages the cluster's process list from each node's first rows, in the same order as the whole list", async () => {
    // Processes whose home is n2 too: each node then holds part of the list.
    const n2 = cluster.nodes[1] as NodeProc;
    const sha = await upload(n2.address, path.join(EXAMPLES, "c", "sleeper.wasm"));
    const more = await Promise.all([0, 1, 2].map(async () => (await json<{ pid: string }>(n2.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "sleeper.wasm", args: ["200", "100000"], node: "n2" })).pid));
    try {
      for (const sort of ["pid", "node", "state", "uptime", "memory"]) {
        const whole = await json<{ total: number; rows: { pid: string }[] }>(n1.address, "GET", `/dashboard/api/processes?sort=${sort}&limit=500`);
        assert.ok(whole.total >= 5 && whole.rows.length === whole.total, `${sort}: ${whole.total} rows`);
        const paged: string[] = [];
        for (let offset = 0; offset < whole.total; offset += 2) {
          const page = await json<{ total: number; offset: number; rows: { pid: string }[] }>(n1.address, "GET", `/dashboard/api/processes?sort=${sort}&offset=${offset}&limit=2`);
          assert.equal(page.total, whole.total);
          paged.push(...page.rows.map((r) => r.pid));
        }
        assert.deepEqual(paged, whole.rows.map((r) => r.pid), `pages of 2 sorted by ${sort} are the whole list's`);
      }
      const filtered = await json<{ total: number; rows: { pid: string }[] }>(n1.address, "GET", `/dashboard/api/processes?q=${more[1]}&limit=10`);
      assert.deepEqual(filtered.rows.map((r) => r.pid), [more[1]], "a filter applies at every node");
    } finally {
      for (const pid of more) await json(n2.address, "DELETE", `/v1/processes/${pid}`);
    }
  });

  it("--once prints the nodes and the running processes, the largest first", async () => {
    // memhog's 32 MiB are seen once it has touched them.
    const text = await until("a frame listing memhog's 32 MiB", async () => {
      const top = await ferry(["top", "--once", "--cluster", n1.address]);
      assert.equal(top.status, 0, top.stderr.toString());
      const out = top.stdout.toString();
      return /^\S+\s+n2\s+running\s+3\d\.\d MiB/m.test(out) ? out : undefined;
    });
    assert.match(text, /2 of 2 nodes up/);
    assert.match(text, /^NODE\s+ADDRESS\s+PROCS\s+LOAD\/CPU/m);
    for (const n of cluster.nodes) assert.match(text, new RegExp(`^${n.name}\\s+${n.address.replace(/\./g, "\\.")}\\s+1/256\\s`, "m"));
    const lines = text.split("\n");
    const memhog = lines.findIndex((l) => l.startsWith(`${pids[1]} `));
    const sleeper = lines.findIndex((l) => l.startsWith(`${pids[0]} `));
    assert.ok(memhog > 0 && sleeper > memhog, text);
    assert.doesNotMatch(text, /\x1b/, "one frame for a file or pipe has no terminal codes");
    const help = await ferry(["top", "--help"]);
    assert.equal(help.status, 0);
    assert.match(help.stdout.toString(), /--once/);
    const bad = await ferry(["top", "--interval", "0"]);
    assert.equal(bad.status, 2);
  });

  for (const [key, name] of [["q", "q"], ["\x03", "Ctrl-C"]] as const) {
    it(`draws in place on a terminal and quits on ${name}`, { skip: have_script ? false : "no `script`" }, async () => {
      const command = [process.execPath, FERRY, "top", "--interval", "0.5", "--cluster", n1.address].map((a) => `'${a}'`).join(" ");
      const child = spawn("script", ["-qfec", command, "/dev/null"], { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, FERRY_HOME: testHome() } });
      let out = "";
      child.stdout.on("data", (c: Buffer) => (out += c.toString()));
      // Its exit can come before the last of its output is read: 'close' comes after both.
      let closed = false;
      child.on("close", () => (closed = true));
      try {
        // Two frames drawn from the top left: it refreshes in place rather than scrolling.
        await until("two frames of ferry top", () => out.includes("\x1b[?1049h") && out.split("\x1b[H").length > 2 && out.includes(pids[0] as string), 30_000);
        child.stdin.write(key);
        await until(`ferry top to quit on ${name}`, () => closed, 10_000);
        assert.equal(child.exitCode, 0);
        assert.ok(out.trimEnd().endsWith("\x1b[?25h\x1b[?1049l"), "the terminal is given back: cursor shown, main screen");
      } finally {
        if (child.exitCode === null) child.kill("SIGKILL");
      }
    });
  }
});
