/**
 * The directory conformance suite against the backends that need a server:
 * the embedded directory as `ferry up` serves it to its nodes (mutual TLS),
 * and a real etcd (skipped, saying why, where /usr/bin/etcd is missing).
 */
import { after, before } from "node:test";
import { EtcdDirectory } from "../src/directory/mod.js";
import { directoryConformance } from "../src/directory/_conformance.js";
import { etcdMissing, startEtcd, type TestEtcd } from "./_etcd.js";

let etcd: TestEtcd | null = null;
let prefixes = 0;
const missing = etcdMissing();

before(async () => {
  if (missing === false) etcd = await startEtcd();
});
after(async () => {
  await etcd?.stop();
});

directoryConformance("etcd", {
  // etcd's leases are whole seconds.
  ttl_ms: 1000,
  skip: missing,
  open: () => {
    if (etcd === null) throw new Error("etcd did not start");
    prefixes += 1;
    const directory = new EtcdDirectory({ endpoints: [etcd.endpoint], prefix: `/conformance${prefixes}/` });
    return Promise.resolve({ directory, close: () => directory.close() });
  },
});
