/** The fields a run request and an OFFER share. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as v from "valibot";
import { Args, Dirs, Env, HostPath, isNormalAbsolutePath, Listen, MemoryCap, ModuleName, NodeName, Pid, splitHostPort } from "./process_spec.js";

const ok = (schema: v.GenericSchema, value: unknown): boolean => v.safeParse(schema, value).success;

describe("process spec fields", () => {
  it("host paths are absolute and normal: what they say is what they name", () => {
    for (const good of ["/", "/a", "/a/b.c", "/a/..b", "/a/.b"]) assert.ok(isNormalAbsolutePath(good), good);
    for (const bad of ["", "a", "./a", "/a/", "/a//b", "/a/./b", "/a/../b", "/..", "/a/.", "/a/.."]) assert.ok(!isNormalAbsolutePath(bad), bad);
    assert.ok(!ok(HostPath, "/a\0b"));
    assert.ok(!ok(HostPath, `/${"a".repeat(5000)}`));
  });

  it("HOST:PORT, IPv6 in brackets, ports to 65535", () => {
    assert.deepEqual(splitHostPort("127.0.0.1:80"), { host: "127.0.0.1", port: 80 });
    assert.deepEqual(splitHostPort("[::1]:0"), { host: "::1", port: 0 });
    for (const bad of ["", "host", ":80", "h:65536", "h:-1", "h:1.5", "a b:1", "::1:80", "h/x:1"]) assert.equal(splitHostPort(bad), null, bad);
    assert.ok(!ok(Listen, Array.from({ length: 17 }, () => "127.0.0.1:0")));
  });

  it("names and pids", () => {
    assert.ok(ok(NodeName, "n_1") && !ok(NodeName, "n-1") && !ok(NodeName, "x".repeat(33)));
    assert.ok(ok(Pid, "n1-7") && !ok(Pid, "n1") && !ok(Pid, "n1-") && !ok(Pid, "n1-1.5"));
    assert.ok(!ok(ModuleName, "") && ok(ModuleName, "a.wasm"));
  });

  it("arguments, environment and directories are bounded", () => {
    assert.ok(ok(Args, ["a", ""]) && !ok(Args, Array.from({ length: 1025 }, () => "a")) && !ok(Args, ["a".repeat(8193)]));
    assert.ok(ok(Env, ["K=V", "K="]) && !ok(Env, ["K"]) && !ok(Env, ["=V"]));
    assert.ok(ok(Dirs, [{ host: "/d", guest: "/g" }]) && !ok(Dirs, [{ host: "/d" }]) && !ok(Dirs, [{ host: "d", guest: "/g" }]));
  });

  it("memory caps are whole wasm pages from 64 KiB to 4 GiB", () => {
    for (const good of [65536, 64 * 1024 * 1024, 4 * 1024 ** 3]) assert.ok(ok(MemoryCap, good), String(good));
    for (const bad of [0, 65535, 65537, 1.5 * 65536, 4 * 1024 ** 3 + 65536, -65536, NaN, "65536"]) assert.ok(!ok(MemoryCap, bad), String(bad));
  });
});
