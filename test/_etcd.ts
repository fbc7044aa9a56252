/**
 * A real etcd for the tests (Debian's etcd-server, installed by .ci/run):
 * one member on 127.0.0.1 with free ports and a temporary data directory,
 * stopped (and its directory removed) by `stop`. Its election timeout is
 * short so that its shortest lease is 1 s (etcd raises shorter ones to 1.5
 * election timeouts).
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { openEtcdDirectory } from "../src/directory/mod.js";
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
  /** What `--directory` takes to use it. */
  url: string;
  stop(): Promise<void>;
}

/** Starts an etcd and resolves once it answers. */
export async function startEtcd(): Promise<TestEtcd> {
  const [client, peer] = await freePorts(2);
  const dir = tempDir("etcd");
  const endpoint = `127.0.0.1:${client}`;
  const child = spawn(
    ETCD_BIN,
    [
      "--name", "test",
      "--data-dir", path.join(dir, "data"),
      "--listen-client-urls", `http://${endpoint}`,
      "--advertise-client-urls", `http://${endpoint}`,
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
  const probe = await openEtcdDirectory({ endpoints: [endpoint], prefix: "/probe/" });
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
  return { endpoint, url: `etcd://${endpoint}`, stop };
}
