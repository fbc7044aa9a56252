/**
 * The directory conformance suite against the backends that need a server:
 * the embedded directory as `ferry up` serves it to its nodes, and a real
 * etcd (skipped, saying why, where /usr/bin/etcd is missing). Then the
 * served directory's guard: only the cluster's nodes, each acting on its
 * own lease only.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { MemoryDirectory, openEtcdDirectory, RemoteDirectory } from "../src/directory/mod.js";
import { directoryConformance } from "../src/directory/_conformance.js";
import { directoryTransport, Dialer, openDirectory, serveDirectory } from "../src/node/mod.js";
import { FerryError } from "../src/errors.js";
import { ClusterTls, issue, type Role } from "../src/trust/mod.js";
import { testAuthority } from "./_cluster.js";
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
  // etcd's leases are whole seconds; renewed every third of it, a 2 s one outlasts a stall of a busy machine.
  ttl_ms: 2000,
  // etcd's lessor looks for expired leases every 500 ms: a death comes up to that much after the lease's end.
  expiry_check_ms: 500,
  skip: missing,
  open: async () => {
    if (etcd === null) throw new Error("etcd did not start");
    prefixes += 1;
    const directory = await openEtcdDirectory({ endpoints: [etcd.endpoint], prefix: `/conformance${prefixes}/` });
    return { directory, close: () => directory.close() };
  },
});

describe("etcd over TLS (etcds://), with client certificates", { skip: missing }, () => {
  let secure: TestEtcd;
  before(async () => {
    secure = await startEtcd({ tls: true });
  });
  after(async () => {
    await secure?.stop();
  });

  it("works through --directory etcds://...?ca=&cert=&key=, and etcd refuses a client without TLS or without a client certificate", async () => {
    const directory = await openDirectory(secure.directoryUrl("/tls-test/"), null);
    try {
      await directory.createProcess({ pid: "n1-1", home: "n1" });
      // A lease far longer than the reads below take on a busy machine: a 1 s one could run out before members() asked.
      const lease = await directory.grantLease({ name: "n1", address: "127.0.0.1:1" }, 60_000);
      assert.equal((await directory.process("n1-1"))?.home, "n1");
      assert.deepEqual((await directory.members()).map((m) => [m.name, m.state]), [["n1", "alive"]]);
      await directory.revokeLease(lease.id);
    } finally {
      await directory.close();
    }
    const tls = secure.tls as { ca: string; cert: string; key: string };
    for (const url of [`etcd://${secure.endpoint}/tls-test/`, `etcds://${secure.endpoint}/tls-test/?ca=${encodeURIComponent(tls.ca)}`]) {
      const plain = await openDirectory(url, null);
      try {
        await assert.rejects(plain.process("n1-1"), code("ERR_DIRECTORY_UNAVAILABLE"), url);
      } finally {
        await plain.close();
      }
    }
  });

  it("refuses etcds:// without a CA, with a certificate but no key, or with an unknown option", async () => {
    for (const url of [`etcds://${secure.endpoint}`, `etcds://${secure.endpoint}?ca=/x&cert=/y`, `etcds://${secure.endpoint}?ca=/x&verify=no`, `etcd://${secure.endpoint}?ca=/x`, `etcds://${secure.endpoint}?ca=/no/such/file`]) {
      await assert.rejects(openDirectory(url, null), code("ERR_DIRECTORY_URL"), url);
    }
  });
});

// The protocol, without TLS: with it a node may take a lease only in its own name, which the suite's many names are not.
directoryConformance("served (HTTP)", {
  // Renewed over HTTP every third of the lease: with 300 ms, a busy machine's stall between two renewals let it run out.
  ttl_ms: 2000,
  open: async () => {
    const served = new MemoryDirectory({ kind: "embedded" });
    const server = await serveDirectory(served, { host: "127.0.0.1", port: 0, tls: null });
    const directory = await openDirectory(server.url, null);
    return {
      directory,
      async close() {
        await directory.close();
        await server.close();
        await served.close();
      },
    };
  },
});

/** A credential of the test CA for `role` `name`. */
async function credential(role: Role, name: string): Promise<ClusterTls> {
  const ca = await testAuthority();
  const issued = await issue(ca, { role, name, hosts: ["127.0.0.1"] });
  return new ClusterTls({ ca_pem: ca.cert_pem, cert_pem: issued.cert_pem, key_pem: issued.key_pem as string });
}

function code(c: string): (e: unknown) => boolean {
  return (e: unknown) => e instanceof FerryError && e.code === c;
}

describe("served directory over mutual TLS", () => {
  it("serves the cluster's nodes only, and lets each take, renew and end only its own lease", async () => {
    const served = new MemoryDirectory({ kind: "embedded" });
    const server = await serveDirectory(served, { host: "127.0.0.1", port: 0, tls: await credential("node", "directory") });
    const a = await openDirectory(server.url, await credential("node", "a"));
    const b = await openDirectory(server.url, await credential("node", "b"));
    const client = new RemoteDirectory(directoryTransport(new Dialer(await credential("client", "someone")), server.address), server.url);
    try {
      const lease = await a.grantLease({ name: "a", address: "127.0.0.1:1" }, 60_000);
      await a.keepAlive(lease.id);
      await assert.rejects(b.grantLease({ name: "a", address: "127.0.0.1:2" }, 60_000), code("ERR_FORBIDDEN"));
      await assert.rejects(b.keepAlive(lease.id), code("ERR_FORBIDDEN"));
      await assert.rejects(b.revokeLease(lease.id), code("ERR_FORBIDDEN"));
      await assert.rejects(client.members(), code("ERR_UNAUTHENTICATED"));
      await assert.rejects(client.createProcess({ pid: "a-1", home: "a" }), code("ERR_UNAUTHENTICATED"));
      assert.deepEqual((await b.members()).map((m) => [m.name, m.state]), [["a", "alive"]]);
      // A bad body is refused by its schema, naming the field.
      await assert.rejects(a.createProcess({ pid: "not a pid", home: "a" }), code("ERR_BAD_REQUEST"));
      await a.revokeLease(lease.id);
      assert.deepEqual((await b.members()).map((m) => [m.name, m.state]), [["a", "dead"]]);
    } finally {
      await Promise.all([a.close(), b.close(), client.close()]);
      await server.close();
      await served.close();
    }
  });

  it("refuses --directory URLs it cannot use with ERR_DIRECTORY_URL", async () => {
    const tls = await credential("node", "a");
    for (const [url, with_tls] of [["ftp://127.0.0.1:1", tls], ["https://127.0.0.1:1", null], ["http://127.0.0.1:1", tls], ["etcd://nohostport", null], ["https://127.0.0.1:1,127.0.0.1:2", tls], ["127.0.0.1:2379", null]] as const) {
      await assert.rejects(openDirectory(url, with_tls), code("ERR_DIRECTORY_URL"), url);
    }
  });
});
