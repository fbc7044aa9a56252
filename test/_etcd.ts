/**
 * A real etcd for the tests (Debian's etcd-server, installed by .ci/run):
 * one member on 127.0.0.1 with free ports and a temporary data directory,
 * stopped (and its directory removed) by `stop`. Its election timeout is
 * short so that its shortest lease is 1 s (etcd raises shorter ones to 1.5
 * election timeouts). With `tls`, it serves its clients over TLS with a
 * certificate of a CA made for it (the project's own PKI, src/trust/) and
 * asks them for a client certificate of that CA.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { openEtcdDirectory } from "../src/directory/mod.js";
import { createAuthority, issue } from "../src/trust/mod.js";
import { freePorts } from "./_cluster.js";
import { tempDir, until } from "./_helpers.js";

/** Where Debian's etcd-server puts the server. */
export const ETCD_BIN = "/usr/bin/etcd";

/** Why the etcd tests cannot run here, or false. */
export function etcdMissing(): string | false {
  return fs.existsSync(ETCD_BIN) ? false : `${ETCD_BIN} is missing: install Debian's etcd-server (.ci/run does) to run the etcd tests`;
}

/** A running etcd. */
export interface TestEtcd {
  /** HOST:PORT of its client API. */
  endpoint: string;
  /** What `--directory` takes to use it (without a key prefix; see {@link TestEtcd.directoryUrl}). */
  url: string;
  /** What `--directory` takes to use it with keys under `prefix` (TLS options included). */
  directoryUrl(prefix: string): string;
  /** With TLS: the PEM files for a client (the CA etcd's certificate is signed by, a client certificate and its key). */
  tls: { ca: string; cert: string; key: string } | null;
  stop(): Promise<void>;
}

/** A CA and certificates for an etcd on 127.0.0.1 and one client, as PEM files in `dir`. */
async function etcdCredentials(dir: string): Promise<{ ca: string; server_cert: string; server_key: string; cert: string; key: string }> {
  const ca = await createAuthority("etcd-test");
  const server = await issue(ca, { role: "node", name: "etcd", hosts: ["127.0.0.1"] });
  const client = await issue(ca, { role: "node", name: "client" });
  const files = { ca: ca.cert_pem, server_cert: server.cert_pem, server_key: server.key_pem as string, cert: client.cert_pem, key: client.key_pem as string };
  const paths = {} as Record<keyof typeof files, string>;
  for (const [k, pem] of Object.entries(files) as [keyof typeof files, string][]) {
    paths[k] = path.join(dir, `${k}.pem`);
    fs.writeFileSync(paths[k], pem, { mode: 0o600 });
  }
  return paths;
}

/** Starts an etcd and resolves once it answers. */
export async function startEtcd(options: { tls?: boolean } = {}): Promise<TestEtcd> {
  const [client, peer] = await freePorts(2);
  const dir = tempDir("etcd");
  const endpoint = `127.0.0.1:${client}`;
  const creds = options.tls === true ? await etcdCredentials(dir) : null;
  const scheme = creds === null ? "http" : "https";
  const child = spawn(
    ETCD_BIN,
    [
      "--name", "test",
      "--data-dir", path.join(dir, "data"),
      "--listen-client-urls", `${scheme}://${endpoint}`,
      "--advertise-client-urls", `${scheme}://${endpoint}`,
      ...(creds === null ? [] : ["--cert-file", creds.server_cert, "--key-file", creds.server_key, "--trusted-ca-file", creds.ca, "--client-cert-auth"]),
      "--listen-peer-urls", `http://127.0.0.1:${peer}`,
      "--initial-advertise-peer-urls", `http://127.0.0.1:${peer}`,
      "--initial-cluster", `test=http://127.0.0.1:${peer}`,
      "--heartbeat-interval", "50",
      "--election-timeout", "500",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let log = "";
  child.stderr?.on("data", (c: Buffer) => {
    log = (log + c.toString()).slice(-20_000);
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      await exited;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const tls = creds === null ? undefined : { ca_pem: fs.readFileSync(creds.ca), cert_pem: fs.readFileSync(creds.cert), key_pem: fs.readFileSync(creds.key) };
  const probe = await openEtcdDirectory({ endpoints: [endpoint], prefix: "/probe/", ...(tls === undefined ? {} : { tls }) });
  try {
    await until(
      "etcd to answer",
      async () => {
        if (child.exitCode !== null) throw new Error(`etcd exited with ${child.exitCode}: ${log}`);
        try {
          await probe.members();
          return true;
        } catch {
          // Not listening yet.
          return false;
        }
      },
      30_000,
    );
  } catch (err: unknown) {
    await stop();
    throw err;
  } finally {
    await probe.close();
  }
  const query = creds === null ? "" : `?ca=${encodeURIComponent(creds.ca)}&cert=${encodeURIComponent(creds.cert)}&key=${encodeURIComponent(creds.key)}`;
  return {
    endpoint,
    url: `${creds === null ? "etcd" : "etcds"}://${endpoint}${query}`,
    directoryUrl: (prefix) => `${creds === null ? "etcd" : "etcds"}://${endpoint}${prefix}${query}`,
    tls: creds === null ? null : { ca: creds.ca, cert: creds.cert, key: creds.key },
    stop,
  };
}
