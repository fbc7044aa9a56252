/** What nodes send each other: endpoint bodies, link and connection frames. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as v from "valibot";
import { BatchSchema, ExitReportSchema, LocationSchema, NetHelloSchema, OutputChunksSchema } from "./_internal_schemas.js";
import { parseBatch } from "./_links.js";

const ok = (schema: v.GenericSchema, value: unknown): boolean => v.safeParse(schema, value).success;

describe("node-to-node schemas", () => {
  it("output chunks: a stream, a whole offset, base64", () => {
    assert.ok(ok(OutputChunksSchema, [{ stream: "stderr", offset: 3, data: "YQ==" }]));
    for (const bad of [{}, [{ stream: "stdin", offset: 0, data: "" }], [{ stream: "stdout", offset: 0.5, data: "" }], [{ stream: "stdout", offset: 2 ** 53, data: "" }], [{ stream: "stdout", offset: 0, data: "%%" }]]) {
      assert.ok(!ok(OutputChunksSchema, bad), JSON.stringify(bad));
    }
  });

  it("exit statuses and locations, each naming its node and move", () => {
    const from = { node: "n2", moves: 1 };
    for (const good of [{ kind: "exit", code: 0 }, { kind: "exit", code: -1 }, { kind: "trap", message: "x" }, { kind: "killed" }, { kind: "lost", message: "pages" }]) assert.ok(ok(ExitReportSchema, { status: good, ...from }), JSON.stringify(good));
    const exit = { kind: "exit", code: 0 };
    for (const bad of [{}, { status: { kind: "exit" }, ...from }, { status: { kind: "exit", code: 0.5 }, ...from }, { status: { kind: "died" }, ...from }, { status: { kind: "trap" }, ...from }, { status: exit }, { status: exit, node: "n2" }, { status: exit, node: "n2", moves: -1 }, { status: exit, node: "a b", moves: 0 }]) {
      assert.ok(!ok(ExitReportSchema, bad), JSON.stringify(bad));
    }
    assert.ok(ok(LocationSchema, { node: "n2", moves: 3 }) && !ok(LocationSchema, { node: "../n2", moves: 3 }));
    assert.ok(!ok(LocationSchema, { node: "n2" }) && !ok(LocationSchema, { node: "n2", moves: 1.5 }) && !ok(LocationSchema, { node: "n2", moves: 2 ** 53 }));
  });

  it("link batches", () => {
    const batch = { from: "n1-1", messages: [{ seq: 1, data: "aGk=" }] };
    assert.ok(ok(BatchSchema, batch));
    assert.deepEqual(parseBatch(batch).messages[0]?.data, Buffer.from("hi"));
    assert.ok(!ok(BatchSchema, { ...batch, messages: [{ seq: 0, data: "" }] }) && !ok(BatchSchema, { ...batch, from: "" }));
    assert.ok(!ok(BatchSchema, { ...batch, messages: Array.from({ length: 129 }, (_, i) => ({ seq: i + 1, data: "" })) }));
  });

  it("the connection relay's HELLO: u32 connections, whole offsets, bounded counts", () => {
    assert.ok(ok(NetHelloSchema, { known: [2], conns: [{ listener: 0, seq: 1, received: 10 }] }));
    for (const bad of [{ known: [-1], conns: [] }, { known: [], conns: [{ listener: 2 ** 32, seq: 0, received: 0 }] }, { known: [], conns: [{ listener: 0, seq: 0, received: 0.5 }] }, { known: Array.from({ length: 17 }, () => 0), conns: [] }]) {
      assert.ok(!ok(NetHelloSchema, bad), JSON.stringify(bad));
    }
  });
});
