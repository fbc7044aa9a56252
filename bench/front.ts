/**
 * What the node's front costs TLS traffic (it sorts each connection by its
 * first bytes before the HTTPS server sees it): the same HTTPS server with
 * mutual TLS, listening itself or behind the front, alternating in one run.
 * A bulk download and upload on one connection each, and new connections
 * (handshake and one small request each), one after another.
 */
import https from "node:https";
import type net from "node:net";
import { createFront } from "../src/node/_front.js";
import { ClusterTls, createAuthority, issue } from "../src/trust/mod.js";
import { median } from "./_measure.js";

type Mode = "direct" | "front";

interface Target {
  port: number;
  close(): Promise<void>;
}

/** Starts the server under test: answers GET /bulk/N with N bytes, takes POST bodies whole, and answers anything else with "ok". */
async function startServer(tls: ClusterTls, mode: Mode): Promise<Target> {
  const block = Buffer.alloc(1024 * 1024, 7);
  const server = https.createServer(tls.serverOptions(), (req, res) => {
    if (req.method === "POST") {
      let n = 0;
      req.on("data", (c: Buffer) => (n += c.length));
      req.on("end", () => res.end(String(n)));
      return;
    }
    const bulk = /^\/bulk\/(\d+)$/.exec(req.url ?? "");
    if (bulk === null) {
      res.end("ok");
      return;
    }
    let left = Number(bulk[1]);
    const more = (): void => {
      while (left > 0) {
        const part = block.subarray(0, Math.min(block.length, left));
        left -= part.length;
        if (!res.write(part)) {
          res.once("drain", more);
          return;
        }
      }
      res.end();
    };
    more();
  });
  let listener: net.Server = server;
  if (mode === "front") {
    listener = createFront({ tls: (s) => void server.emit("connection", s), pageData: (s) => s.destroy() }).server;
  }
  await new Promise<void>((r) => listener.listen(0, "127.0.0.1", () => r()));
  if (listener !== server) server.emit("listening");
  return {
    port: (listener.address() as net.AddressInfo).port,
    close: async () => {
      server.closeAllConnections();
      if (listener !== server) server.close();
      await new Promise((r) => listener.close(r));
    },
  };
}

function get(port: number, client: ClusterTls, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    https
      .get({ host: "127.0.0.1", port, path, agent: false, ...client.clientOptions({ role: "node" }) }, (res) => {
        let n = 0;
        res.on("data", (c: Buffer) => (n += c.length));
        res.on("end", () => resolve(n));
      })
      .on("error", reject);
  });
}

function post(port: number, client: ClusterTls, bytes: number): Promise<void> {
  const block = Buffer.alloc(1024 * 1024, 9);
  return new Promise((resolve, reject) => {
    const req = https.request({ host: "127.0.0.1", port, method: "POST", path: "/up", agent: false, ...client.clientOptions({ role: "node" }) }, (res) => {
      res.resume();
      res.on("end", () => resolve());
    });
    req.on("error", reject);
    let left = bytes;
    const more = (): void => {
      while (left > 0) {
        const part = block.subarray(0, Math.min(block.length, left));
        left -= part.length;
        if (!req.write(part)) {
          req.once("drain", more);
          return;
        }
      }
      req.end();
    };
    more();
  });
}

/** Runs the front benchmark and prints its table. */
export async function frontBench(quick: boolean): Promise<void> {
  const mib = quick ? 64 : 256;
  const repeats = quick ? 3 : 5;
  const handshakes = quick ? 100 : 300;
  const ca = await createAuthority("bench-front");
  const n1 = await issue(ca, { role: "node", name: "n1", hosts: ["127.0.0.1"] });
  const probe = await issue(ca, { role: "node", name: "probe" });
  const node = new ClusterTls({ ca_pem: ca.cert_pem, cert_pem: n1.cert_pem, key_pem: n1.key_pem as string });
  const client = new ClusterTls({ ca_pem: ca.cert_pem, cert_pem: probe.cert_pem, key_pem: probe.key_pem as string });
  const modes: Mode[] = ["direct", "front"];
  const got = new Map<string, number[]>();
  const add = (key: string, v: number): void => void got.set(key, [...(got.get(key) ?? []), v]);
  for (let i = 0; i < repeats; i += 1) {
    for (const mode of modes) {
      const t = await startServer(node, mode);
      try {
        let t0 = performance.now();
        await get(t.port, client, `/bulk/${mib * 1048576}`);
        add(`${mode} down`, (mib * 1.048576) / ((performance.now() - t0) / 1000));
        t0 = performance.now();
        await post(t.port, client, mib * 1048576);
        add(`${mode} up`, (mib * 1.048576) / ((performance.now() - t0) / 1000));
        t0 = performance.now();
        for (let j = 0; j < handshakes; j += 1) await get(t.port, client, "/");
        add(`${mode} conn`, (performance.now() - t0) / handshakes);
      } finally {
        await t.close();
      }
    }
  }
  const m = (k: string): number => median(got.get(k) ?? [NaN]);
  console.log(`\n(l) the node's front (sorting connections by their first bytes) vs the HTTPS server listening itself, mutual TLS, same run, alternating (median of ${repeats})`);
  console.log("| measure | direct | front | front / direct |\n|---|---|---|---|");
  const row = (label: string, key: string, unit: string, digits: number): void => {
    const [d, f] = [m(`direct ${key}`), m(`front ${key}`)];
    console.log(`| ${label} | ${d.toFixed(digits)} ${unit} | ${f.toFixed(digits)} ${unit} | ${(f / d).toFixed(2)}x |`);
  };
  row(`download, ${mib} MiB on one connection`, "down", "MB/s", 0);
  row(`upload, ${mib} MiB on one connection`, "up", "MB/s", 0);
  row("new connection + one small request", "conn", "ms", 2);
}
