import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parse } from "../validate.js";
import { JoinAnswerSchema, JoinRequestSchema, PeerAnnounceSchema, TokenRequestSchema } from "./_join_schemas.js";

const bad = (e: unknown): boolean => (e as { code?: string }).code === "ERR_BAD_REQUEST";

describe("join schemas", () => {
  it("take a token request with defaults, and refuse a bad role, name or life", () => {
    assert.deepEqual(parse(TokenRequestSchema, {}, "t"), { role: "node" });
    assert.deepEqual(parse(TokenRequestSchema, { role: "client", name: "bob", ttl_ms: 60_000 }, "t"), { role: "client", name: "bob", ttl_ms: 60_000 });
    for (const body of [{ role: "admin" }, { name: "a b" }, { ttl_ms: 0.5 }, { ttl_ms: 0 }, { ttl_ms: 8 * 24 * 3_600_000 }, null, "x"]) {
      assert.throws(() => parse(TokenRequestSchema, body, "t"), bad, JSON.stringify(body));
    }
  });

  it("take a join request, and refuse one with a long secret, a key that is not base64, or a bad host", () => {
    const good = { secret: "A".repeat(43), role: "node", name: "n4", public_key: Buffer.alloc(91, 1).toString("base64") };
    assert.deepEqual(parse(JoinRequestSchema, good, "j"), { ...good, hosts: [] });
    for (const over of [{ secret: "A".repeat(65) }, { secret: "" }, { public_key: "not base64!" }, { hosts: ["a/b"] }, { hosts: Array(17).fill("h") }, { role: "root" }, { name: "" }]) {
      assert.throws(() => parse(JoinRequestSchema, { ...good, ...over }, "j"), bad, JSON.stringify(over));
    }
  });

  it("check a join answer and a peer's announce", () => {
    assert.deepEqual(parse(JoinAnswerSchema, { cert_pem: "c", ca_pem: "a", peers: ["10.0.0.1:7070", "[::1]:7071"] }, "a").peers.length, 2);
    assert.throws(() => parse(JoinAnswerSchema, { cert_pem: "c", ca_pem: "a", peers: ["nowhere"] }, "a"), bad);
    assert.throws(() => parse(PeerAnnounceSchema, { address: "x" }, "p"), bad);
  });
});
