import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { formatLogLine } from "./format.js";
import { configureLogging, errorField, isLogLevel, logger } from "./logger.js";
import { FerryError } from "../errors.js";

describe("log format", () => {
  it("puts time, level, node and message first, then the other fields", () => {
    const line = JSON.stringify({ level: 40, time: Date.UTC(2025, 0, 2, 12, 3, 4, 567), node: "n1", msg: "migration stalled", pid: "n1-4", stall_ms: 30000, phase: "round 2" });
    assert.equal(formatLogLine(line), '12:03:04.567 WARN  n1 migration stalled stall_ms=30000 phase="round 2"');
  });

  it("shows an error field by its code and message", () => {
    // As pino writes an Error.
    const line = JSON.stringify({ level: 50, time: 0, msg: "x", err: { type: "FerryError", message: "peer gone", stack: "FerryError: peer gone\n    at ...", code: "ERR_PEER_UNREACHABLE" } });
    assert.match(formatLogLine(line), /ERROR x err="ERR_PEER_UNREACHABLE: peer gone"$/);
  });

  it("passes lines that are not log entries through", () => {
    assert.equal(formatLogLine("plain text"), "plain text");
    assert.equal(formatLogLine("[1,2]"), "[1,2]");
  });

  it("colours the level only when asked", () => {
    assert.match(formatLogLine(JSON.stringify({ level: 30, time: 0, msg: "m" }), true), /\u001b\[32mINFO/);
  });
});

describe("logger", () => {
  it("writes one JSON line per entry at or above its level", () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(...chunk.toString().split("\n").filter((l) => l !== ""));
        done();
      },
    });
    const before = logger();
    try {
      configureLogging({ level: "info", stream, pretty: false, base: { node: "n7" } });
      logger().debug("hidden");
      logger().child({ pid: "n7-1" }).warn({ bytes: 3, err: errorField(new FerryError("ERR_PEER", "it broke")) }, "shown");
      assert.equal(lines.length, 1);
      const entry = JSON.parse(lines[0] as string) as Record<string, unknown>;
      assert.equal(entry["level"], 40);
      assert.equal(entry["node"], "n7");
      assert.equal(entry["pid"], "n7-1");
      assert.equal(entry["bytes"], 3);
      assert.equal(entry["msg"], "shown");
      assert.deepEqual({ ...(entry["err"] as object), stack: undefined }, { type: "FerryError", name: "FerryError", message: "it broke", code: "ERR_PEER", stack: undefined });
      assert.equal(typeof entry["time"], "number");
    } finally {
      configureLogging({ level: before.level as "warn" });
    }
  });

  it("knows its level names", () => {
    assert.ok(isLogLevel("debug"));
    assert.ok(!isLogLevel("verbose"));
  });
});
