/**
 * The dashboard's idle cost (docs/operations.md, "It costs nothing when
 * nobody watches"): a node in this process, watched through a dashboard
 * session (login, the page's polls, its event stream), then left alone. What
 * the session made (timers, made by the dashboard's and the event stream's
 * code, seen through async_hooks whether or not they keep the process
 * alive; and sockets) is all gone once the session ends, and nothing of the
 * dashboard runs while nobody watches. Observed, not timed: the test waits
 * for the state, never for a while.
 */
import assert from "node:assert/strict";
import { createHook } from "node:async_hooks";
import https from "node:https";
import type { ClientRequest, IncomingMessage } from "node:http";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { localNode } from "../src/cli/_identity.js";
import { FerryNode } from "../src/node/mod.js";
import { tempDir, until } from "./_helpers.js";
import { request, testAuthority } from "./_cluster.js";

/** Source files of the dashboard and of the event stream it reads: a timer made by their code is the dashboard's. */
const DASHBOARD_CODE = /[\\/]src[\\/]node[\\/](dashboard[a-z_]*|_dashboard_api|_event_stream)\.js:/;

/**
 * Timers made by the dashboard's code and not yet ended, counted while
 * `start()`ed (async_hooks sees unref'd timers too, which
 * process.getActiveResourcesInfo() leaves out).
 */
function dashboardTimers(): { start(): void; alive(): string[]; stop(): void } {
  const alive = new Map<number, string>();
  const hook = createHook({
    init(id, type) {
      if (type !== "Timeout") return;
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 40;
      const stack = new Error().stack ?? "";
      Error.stackTraceLimit = limit;
      if (DASHBOARD_CODE.test(stack)) alive.set(id, stack);
    },
    destroy(id) {
      alive.delete(id);
    },
  });
  return {
    start: () => void hook.enable(),
    alive: () => [...alive.values()],
    stop: () => void hook.disable(),
  };
}

/** The kinds of resources that keep this process alive, counted (sockets, servers, ref'd timers...). */
function resources(): string {
  const counts: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1;
  return JSON.stringify(Object.entries(counts).sort(([a], [b]) => a.localeCompare(b)));
}

describe("the dashboard when nobody watches", () => {
  let node: FerryNode;
  const data = tempDir("dashboard-idle");
  const timers = dashboardTimers();

  before(async () => {
    const ca = await testAuthority();
    node = await FerryNode.start({ name: "n1", host: "127.0.0.1", port: 0, peers: [], data_dir: path.join(data, "n1"), tls: await localNode(ca, "n1", "127.0.0.1") });
  });
  after(async () => {
    timers.stop();
    await node.stop();
    fs.rmSync(data, { recursive: true, force: true });
  });

  it("leaves no timer or socket of a session behind once it ends", async () => {
    const ca = (await testAuthority()).cert_pem;
    const [host, port] = node.address.split(":") as [string, string];
    const origin = `https://${node.address}`;
    // As a browser asks: the cluster's CA, no client certificate, and no connection kept for later.
    const browser = (method: string, p: string, headers: Record<string, string> = {}, body?: object): ClientRequest => {
      const req = https.request({ host, port: Number(port), method, path: p, ca, agent: false, headers: { ...headers, ...(body === undefined ? {} : { "content-type": "application/json" }) } });
      req.end(body === undefined ? undefined : JSON.stringify(body));
      return req;
    };
    const answer = (req: ClientRequest): Promise<{ status: number; headers: IncomingMessage["headers"]; json: Record<string, unknown> }> =>
      new Promise((resolve, reject) => {
        req.on("error", reject);
        req.on("response", (res) => {
          const parts: Buffer[] = [];
          res.on("data", (c: Buffer) => parts.push(c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, json: JSON.parse(Buffer.concat(parts).toString()) as Record<string, unknown> }));
        });
      });

    const before_session = resources();
    timers.start();
    const login = await request(node.address, "POST", "/dashboard/logins");
    assert.equal(login.status, 201, login.body.toString());
    const token = String((JSON.parse(login.body.toString()) as { token: string }).token);
    const session = await answer(browser("POST", "/dashboard/session", { origin }, { token }));
    assert.equal(session.status, 200, JSON.stringify(session.json));
    const cookie = String(session.headers["set-cookie"]).split(";")[0] as string;
    const csrf = String(session.json["csrf"]);
    // The page's polls.
    for (const p of ["/dashboard/api/overview", "/dashboard/api/processes?limit=50", "/dashboard/api/v1/links"]) {
      const r = await answer(browser("GET", p, { cookie }));
      assert.equal(r.status, 200, `${p}: ${JSON.stringify(r.json)}`);
    }
    // The page's event stream, open: it holds a keepalive timer while it lasts (what the probe sees).
    const stream = browser("GET", "/dashboard/api/v1/events?follow=1", { cookie });
    const opened = await new Promise<IncomingMessage>((resolve, reject) => {
      stream.on("error", reject);
      stream.on("response", resolve);
    });
    assert.equal(opened.statusCode, 200);
    opened.resume();
    assert.ok(timers.alive().length > 0, "the open event stream's keepalive is seen");
    // The page closes: its stream goes, and it logs out.
    stream.destroy();
    const out = await answer(browser("DELETE", "/dashboard/session", { cookie, origin, "x-ferry-csrf": csrf }));
    assert.equal(out.status, 200, JSON.stringify(out.json));

    await until("every timer of the dashboard to end", () => timers.alive().length === 0 || undefined, 30_000).catch((err: unknown) => {
      throw new Error(`timers of the dashboard still alive:\n${timers.alive().join("\n---\n")}`, { cause: err });
    });
    await until("the session's sockets to close", () => resources() === before_session || undefined, 30_000).catch((err: unknown) => {
      throw new Error(`resources before the session ${before_session}, now ${resources()}`, { cause: err });
    });
    // Nor does the node count a stream it serves.
    const metrics = await request(node.address, "GET", "/metrics");
    assert.match(metrics.body.toString(), /^ferry_event_streams(\{[^}]*\})? 0$/m);
  });
});
