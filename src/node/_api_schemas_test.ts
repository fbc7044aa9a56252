/** The control API's bodies and queries. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as v from "valibot";
import { parse } from "../validate.js";
import { ListQuerySchema, MigrateRequestSchema, OutputQuerySchema, queryOf, RunRequestSchema, SendRequestSchema } from "./_api_schemas.js";

const sha = "0".repeat(64);
const ok = (schema: v.GenericSchema, value: unknown): boolean => v.safeParse(schema, value).success;

describe("control API schemas", () => {
  it("a run request gets its defaults; the memory cap stays absent for the node to fill", () => {
    assert.deepEqual(parse(RunRequestSchema, { module_sha256: sha }, "body"), { module_sha256: sha, module_name: "program.wasm", args: [], env: [], dirs: [], listen: [] });
    for (const bad of [{}, { module_sha256: "A".repeat(64) }, { module_sha256: sha, node: "" }, { module_sha256: sha, memory_max_bytes: 1 }, { module_sha256: sha, dirs: [{ host: "/", guest: "" }] }]) {
      assert.ok(!ok(RunRequestSchema, bad), JSON.stringify(bad));
    }
  });

  it("a migration request: a node, a known strategy, positive numbers in range", () => {
    assert.deepEqual(parse(MigrateRequestSchema, { to: "n2" }, "body"), { to: "n2", strategy: "stop-copy" });
    for (const bad of [{}, { to: "n2", strategy: "fast" }, { to: "n2", max_downtime_ms: 0 }, { to: "n2", max_downtime_ms: 1e9 }, { to: "n2", recover_ms: 600_001 }, { to: "n2", push_bytes_per_s: 0 }, { to: "n2", push_bytes_per_s: NaN }]) {
      assert.ok(!ok(MigrateRequestSchema, bad), JSON.stringify(bad));
    }
  });

  it("a message to send: text or base64, not both, not neither", () => {
    assert.ok(ok(SendRequestSchema, { data: "hi" }) && ok(SendRequestSchema, { data_base64: "aGk=" }));
    assert.ok(!ok(SendRequestSchema, {}) && !ok(SendRequestSchema, { data: "a", data_base64: "YQ==" }) && !ok(SendRequestSchema, { data: "x".repeat(65537) }));
  });

  it("output offsets from a query string are whole numbers; a repeated name counts once", () => {
    const q = (s: string): unknown => parse(OutputQuerySchema, queryOf(new URL(`http://n/x?${s}`)), "query");
    assert.deepEqual(q(""), { follow: "0", stdout: 0, stderr: 0 });
    assert.deepEqual(q("follow=1&stdout=10&stderr=7&other=x"), { follow: "1", stdout: 10, stderr: 7 });
    assert.deepEqual(q("stdout=1&stdout=2"), { follow: "0", stdout: 2, stderr: 0 });
    for (const bad of ["stdout=1.5", "stdout=-1", "stderr=1e2", "follow=true"]) assert.throws(() => q(bad), /query/, bad);
    assert.ok(!ok(ListQuerySchema, { local: "yes" }));
  });
});
