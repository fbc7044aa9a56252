import { describe, test } from "node:test";
import assert from "node:assert/strict";

import { RestoreError } from "../errors.js";
import { parse_wasi_state, type WasiState } from "./mod.js";

const valid: WasiState = {
  v: 1,
  args: ["a"],
  env: [],
  preopens: [{ host_path: "/tmp/x", guest_path: "/x" }],
  fds: [
    { fd: 0, kind: "stdio", stream: 0, as: "file", fdflags: 0, rights_base: "2", rights_inheriting: "0" },
    {
      fd: 4, kind: "file", preopen: 0, rel_path: "a/b.txt", host_path: "/tmp/x/a/b.txt", guest_path: "/x/a/b.txt",
      read: true, write: false, oflags: 0, offset: "18446744073709551615", detached: false,
      fdflags: 0, rights_base: "2", rights_inheriting: "0",
    },
  ],
  monotonic_ns: "123",
  stdin_bytes: 7,
  stdout_bytes: 0,
  stderr_bytes: 5,
  pending: { import: "poll_oneoff", args: [1, 2, 1, 3], clocks: [{ index: 0, timeout_ns: "5", deadline_ns: "9" }] },
};

function rejects(mutate: (s: Record<string, unknown> & { fds: Array<Record<string, unknown>> }) => void): void {
  const copy = JSON.parse(JSON.stringify(valid));
  mutate(copy);
  assert.throws(() => parse_wasi_state(copy), (e: unknown) => e instanceof RestoreError && e.code === "ERR_RESTORE_STATE");
}

describe("parse_wasi_state", () => {
  test("accepts a well-formed state unchanged", () => {
    assert.deepEqual(parse_wasi_state(JSON.parse(JSON.stringify(valid))), valid);
  });

  test("reads a state captured before streams had kinds and stdin was counted as it was", () => {
    const old = JSON.parse(JSON.stringify(valid));
    delete old.fds[0].as;
    delete old.stdin_bytes;
    const parsed = parse_wasi_state(old);
    assert.deepEqual(parsed.fds[0], { ...valid.fds[0], as: "terminal" });
    assert.equal(parsed.stdin_bytes, 0);
  });

  test("rejects malformed states with ERR_RESTORE_STATE", () => {
    rejects((s) => ((s.fds[0] as Record<string, unknown>)["as"] = "printer"));
    rejects((s) => (s["stdin_bytes"] = -1));
    rejects((s) => (s["v"] = 2));
    rejects((s) => (s["monotonic_ns"] = "-1"));
    rejects((s) => (s["monotonic_ns"] = "18446744073709551616"));
    rejects((s) => (s["monotonic_ns"] = "01"));
    rejects((s) => (s["stdout_bytes"] = 1.5));
    rejects((s) => (s["args"] = [1]));
    rejects((s) => ((s.fds[1] as Record<string, unknown>)["rel_path"] = "../etc/passwd"));
    rejects((s) => ((s.fds[1] as Record<string, unknown>)["rel_path"] = "/abs"));
    rejects((s) => ((s.fds[1] as Record<string, unknown>)["rel_path"] = "a//b"));
    rejects((s) => ((s.fds[1] as Record<string, unknown>)["preopen"] = 1));
    rejects((s) => ((s.fds[1] as Record<string, unknown>)["fd"] = 0));
    rejects((s) => ((s.fds[1] as Record<string, unknown>)["fd"] = 5000));
    rejects((s) => ((s.fds[1] as Record<string, unknown>)["kind"] = "socket"));
    rejects((s) => ((s.fds[0] as Record<string, unknown>)["stream"] = 3));
    rejects((s) => (s["pending"] = { import: "fd_read", args: [], clocks: [] }));
    rejects((s) => ((s as Record<string, unknown>)["fds"] = null));
  });
});
