import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { certificateIdentity, createAuthority, fingerprint, identityFromAltNames, issue, newKeyPair } from "./pki.js";
import { ClusterTls } from "./tls.js";
import { formatToken, parseToken, TokenStore } from "./tokens.js";

describe("cluster CA", () => {
  it("issues node and client certificates whose identity only its own CA vouches for", async () => {
    const ca = await createAuthority("t");
    const other = await createAuthority("other");
    const node = await issue(ca, { role: "node", name: "n1", hosts: ["127.0.0.1", "example.org"] });
    const client = await issue(ca, { role: "client", name: "alice@x" });
    assert.deepEqual(certificateIdentity(node.cert_pem, ca.cert_pem), { role: "node", name: "n1" });
    assert.deepEqual(certificateIdentity(client.cert_pem, ca.cert_pem), { role: "client", name: "alice@x" });
    assert.throws(() => certificateIdentity(node.cert_pem, other.cert_pem), (e: { code?: string }) => e.code === "ERR_TLS_CONFIG");
    assert.notEqual(fingerprint(ca.cert_pem), fingerprint(other.cert_pem));
    const tls = new ClusterTls({ ca_pem: ca.cert_pem, cert_pem: node.cert_pem, key_pem: node.key_pem as string });
    assert.deepEqual(tls.identity, { role: "node", name: "n1" });
    // A key that is not the certificate's is refused when loaded, not at the first handshake.
    assert.throws(() => new ClusterTls({ ca_pem: ca.cert_pem, cert_pem: node.cert_pem, key_pem: client.key_pem as string }), /does not belong/);
  });

  it("certifies a joiner's own public key, whose private key never leaves it", async () => {
    const ca = await createAuthority("t");
    const keys = await newKeyPair();
    const issued = await issue(ca, { role: "node", name: "n4", public_key_der: keys.public_key_der });
    assert.equal(issued.key_pem, null);
    const tls = new ClusterTls({ ca_pem: ca.cert_pem, cert_pem: issued.cert_pem, key_pem: keys.key_pem });
    assert.equal(tls.identity.name, "n4");
    await assert.rejects(issue(ca, { role: "node", name: "bad name" }), (e: { code?: string }) => e.code === "ERR_BAD_REQUEST");
    await assert.rejects(issue(ca, { role: "node", name: "n5", public_key_der: new Uint8Array(10) }), (e: { code?: string }) => e.code === "ERR_BAD_REQUEST");
  });

  it("reads exactly one Ferry identity from the alternative names", () => {
    assert.deepEqual(identityFromAltNames("URI:ferry://node/n1, IP Address:127.0.0.1"), { role: "node", name: "n1" });
    assert.equal(identityFromAltNames("URI:ferry://node/n1, URI:ferry://client/n2"), null);
    assert.equal(identityFromAltNames("URI:ferry://admin/n1"), null);
    assert.equal(identityFromAltNames("DNS:ferry://node/n1"), null);
    assert.equal(identityFromAltNames(undefined), null);
  });
});

describe("join tokens", () => {
  const fp = "ab".repeat(32);
  it("work once, for their role and name, until they expire", () => {
    let now = 1_000;
    const store = new TokenStore(() => now);
    const a = parseToken(store.create("node", { address: "10.0.0.1:7070", ca_fingerprint: fp }).token);
    assert.deepEqual({ address: a.address, ca_fingerprint: a.ca_fingerprint, role: a.role }, { address: "10.0.0.1:7070", ca_fingerprint: fp, role: "node" });
    assert.throws(() => store.redeem(a.secret, "client", "x"), (e: { code?: string }) => e.code === "ERR_TOKEN");
    store.redeem(a.secret, "node", "n4");
    assert.throws(() => store.redeem(a.secret, "node", "n4"), /unknown, used, expired/);
    const named = parseToken(store.create("client", { address: "h:1", ca_fingerprint: fp, name: "bob" }).token);
    assert.throws(() => store.redeem(named.secret, "client", "eve"), /for bob/);
    store.redeem(named.secret, "client", "bob");
    const short = parseToken(store.create("node", { address: "h:1", ca_fingerprint: fp, ttl_ms: 50 }).token);
    now += 50;
    assert.throws(() => store.redeem(short.secret, "node", "n9"), (e: { code?: string }) => e.code === "ERR_TOKEN");
  });

  it("refuses text that is not a token", () => {
    for (const bad of ["", "ferry1.", "ferry2.abc", `ferry1.${Buffer.from("{}").toString("base64url")}`, `ferry1.${"A".repeat(2000)}`]) {
      assert.throws(() => parseToken(bad), (e: { code?: string }) => e.code === "ERR_TOKEN", bad);
    }
    const good = formatToken({ address: "[::1]:7070", ca_fingerprint: fp, role: "client", secret: "A".repeat(43) });
    assert.equal(parseToken(`  ${good}\n`).address, "[::1]:7070");
  });
});
