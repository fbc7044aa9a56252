import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, rmSync, writeFileSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";

import { Errno, ProcExit, WasiHost, type WasiState } from "./mod.js";
import { RestoreError } from "../errors.js";
import { Guest, fake_deps, remove_temp_dirs, temp_dir } from "./_testing.js";
import { OFlags, Whence } from "./_layout.js";

after(remove_temp_dirs);

const PREVIEW1_FUNCTIONS = [
  "args_get", "args_sizes_get", "environ_get", "environ_sizes_get", "clock_res_get", "clock_time_get",
  "fd_advise", "fd_allocate", "fd_close", "fd_datasync", "fd_fdstat_get", "fd_fdstat_set_flags",
  "fd_fdstat_set_rights", "fd_filestat_get", "fd_filestat_set_size", "fd_filestat_set_times", "fd_pread",
  "fd_prestat_get", "fd_prestat_dir_name", "fd_pwrite", "fd_read", "fd_readdir", "fd_renumber", "fd_seek",
  "fd_sync", "fd_tell", "fd_write", "path_create_directory", "path_filestat_get", "path_filestat_set_times",
  "path_link", "path_open", "path_readlink", "path_remove_directory", "path_rename", "path_symlink",
  "path_unlink_file", "poll_oneoff", "proc_exit", "proc_raise", "sched_yield", "random_get", "sock_accept",
  "sock_recv", "sock_send", "sock_shutdown",
];

/** JSON round trip, as an image would carry the state. */
function through_json(state: WasiState): WasiState {
  return JSON.parse(JSON.stringify(state)) as WasiState;
}

describe("WasiHost", () => {
  test("imports cover every preview1 function; blocking ones are listed", () => {
    const { guest } = Guest.start();
    assert.deepEqual(Object.keys(guest.fns).sort(), [...PREVIEW1_FUNCTIONS].sort());
    for (const name of ["poll_oneoff", "fd_read", "sched_yield"]) assert.ok(WasiHost.blocking_imports.has(name));
    for (const name of WasiHost.blocking_imports) assert.ok(PREVIEW1_FUNCTIONS.includes(name));
  });

  test("args and environ", () => {
    const { guest } = Guest.start({ args: ["prog", "héllo", ""], env: ["A=1", "B=two"] });
    const sizes = guest.alloc(8, 4);
    assert.equal(guest.call("args_sizes_get", sizes, sizes + 4), Errno.success);
    assert.equal(guest.u32(sizes), 3);
    assert.equal(guest.u32(sizes + 4), 5 + 7 + 1);
    const argv = guest.alloc(12, 4);
    const buf = guest.alloc(13, 1);
    assert.equal(guest.call("args_get", argv, buf), Errno.success);
    assert.equal(guest.u32(argv), buf);
    assert.equal(guest.text(guest.u32(argv + 4), 6), "héllo");
    assert.equal(guest.u8(guest.u32(argv + 4) + 6), 0);
    assert.equal(guest.u32(argv + 8), buf + 12);

    assert.equal(guest.call("environ_sizes_get", sizes, sizes + 4), Errno.success);
    assert.deepEqual([guest.u32(sizes), guest.u32(sizes + 4)], [2, 10]);
    const envp = guest.alloc(8, 4);
    const env_buf = guest.alloc(10, 1);
    assert.equal(guest.call("environ_get", envp, env_buf), Errno.success);
    assert.equal(guest.text(guest.u32(envp + 4), 5), "B=two");
  });

  test("proc_exit throws ProcExit with the code; proc_raise is nosys", () => {
    const { guest } = Guest.start();
    assert.throws(() => guest.call("proc_exit", 3), (e: unknown) => e instanceof ProcExit && e.code === 3);
    assert.throws(() => guest.call("proc_exit", -1), (e: unknown) => e instanceof ProcExit && e.code === 0xffffffff);
    assert.equal(guest.call("proc_raise", 9), Errno.nosys);
  });

  test("random_get fills from deps.random; sched_yield returns 0; socket calls on other fds are notsock", () => {
    const { guest } = Guest.start();
    const buf = guest.alloc(70_000, 1);
    assert.equal(guest.call("random_get", buf, 70_000), Errno.success);
    assert.deepEqual([...guest.bytes(buf, 3)], [3, 10, 17]);
    assert.notEqual(guest.u8(buf + 69_999), 0);
    assert.equal(guest.call("sched_yield"), Errno.success);
    assert.equal(guest.call("sock_shutdown", 1, 2), Errno.notsock);
    assert.equal(guest.call("sock_accept", 77, 0, 0), Errno.badf);
  });

  test("a missing preopen directory is ERR_RESTORE_PREOPEN", () => {
    const { deps } = fake_deps();
    const missing = join(temp_dir(), "nope");
    assert.throws(
      () => new WasiHost({ args: [], env: [], preopens: [{ host_path: missing, guest_path: "/data" }] }, deps),
      (e: unknown) => e instanceof RestoreError && e.code === "ERR_RESTORE_PREOPEN" && e.message.includes(missing),
    );
  });

  test("imports before bindMemory fail with fault, not a JS exception", () => {
    const { deps } = fake_deps();
    const host = new WasiHost({ args: ["a"], env: [], preopens: [] }, deps);
    const fns = host.imports() as Record<string, (...a: number[]) => number>;
    assert.equal(fns["args_sizes_get"]?.(0, 4), Errno.fault);
  });
});

describe("capture and restore", () => {
  test("restore continues reading at the same offset, through JSON", () => {
    const dir = temp_dir();
    writeFileSync(join(dir, "data.txt"), "0123456789abcdef");
    const { guest, stdout } = Guest.start({ args: ["x"], env: ["K=V"], preopens: [{ host_path: dir, guest_path: "/data" }] });
    const [errno, fd] = guest.open(3, "data.txt");
    assert.equal(errno, Errno.success);
    assert.deepEqual(guest.read(fd, 4), [Errno.success, "0123"]);
    guest.write(1, "hi\n");
    const state = through_json(guest.host.capture());
    assert.equal(state.v, 1);
    assert.equal(state.stdout_bytes, 3);
    const file = state.fds.find((f) => f.fd === fd);
    assert.ok(file !== undefined && file.kind === "file");
    assert.equal(file.offset, "4");
    assert.equal(file.guest_path, "/data/data.txt");
    guest.host.close();

    const fresh = fake_deps();
    const restored = new Guest(WasiHost.restore(state, fresh.deps, { preopens: state.preopens }));
    assert.deepEqual(restored.read(fd, 6), [Errno.success, "456789"]);
    assert.equal(restored.host.stdout_bytes, 3);
    restored.write(1, "more");
    assert.equal(restored.host.stdout_bytes, 7);
    assert.equal(stdout.text(), "hi\n");
    assert.equal(fresh.stdout.text(), "more");
    // Everything else is as it was: args, preopen names, a new fd takes the lowest free number.
    const sizes = restored.alloc(8, 4);
    restored.call("args_sizes_get", sizes, sizes + 4);
    assert.equal(restored.u32(sizes), 1);
    const [, again] = restored.open(3, "data.txt");
    assert.equal(again, fd + 1);
    restored.host.close();
  });

  test("a capture of a restored host equals the original capture", () => {
    const dir = temp_dir();
    mkdirSync(join(dir, "sub"));
    writeFileSync(join(dir, "sub", "f"), "abc");
    const { guest } = Guest.start({ preopens: [{ host_path: dir, guest_path: "." }] });
    const [e1, sub] = guest.open(3, "sub", { oflags: OFlags.directory });
    const [e2, f] = guest.open(sub, "f", { fdflags: 1 });
    assert.deepEqual([e1, e2], [Errno.success, Errno.success]);
    guest.seek(f, 2n, Whence.set);
    assert.equal(guest.call("fd_renumber", f, 1), Errno.success);
    const first = through_json(guest.host.capture());
    const restored = WasiHost.restore(first, fake_deps().deps, { preopens: first.preopens });
    const second = restored.capture();
    assert.deepEqual({ ...second, monotonic_ns: "" }, { ...first, monotonic_ns: "" });
    restored.close();
    guest.host.close();
  });

  test("restore with the file deleted is ERR_RESTORE_FILE naming it, and leaves nothing open", () => {
    const dir = temp_dir();
    writeFileSync(join(dir, "a.txt"), "a");
    writeFileSync(join(dir, "gone.txt"), "b");
    const { guest } = Guest.start({ preopens: [{ host_path: dir, guest_path: "/d" }] });
    guest.open(3, "a.txt");
    guest.open(3, "gone.txt");
    const state = through_json(guest.host.capture());
    guest.host.close();
    rmSync(join(dir, "gone.txt"));
    assert.throws(
      () => WasiHost.restore(state, fake_deps().deps, { preopens: state.preopens }),
      (e: unknown) => e instanceof RestoreError && e.code === "ERR_RESTORE_FILE" && e.message.includes("/d/gone.txt"),
    );
  });

  test("restore never creates or truncates", () => {
    const dir = temp_dir();
    const { guest } = Guest.start({ preopens: [{ host_path: dir, guest_path: "/d" }] });
    const [, fd] = guest.open(3, "new.txt", { oflags: OFlags.creat | OFlags.trunc });
    guest.write(fd, "keep me");
    const state = through_json(guest.host.capture());
    guest.host.close();
    const restored = WasiHost.restore(state, fake_deps().deps, { preopens: state.preopens });
    restored.close();
    assert.equal(readFileSync(join(dir, "new.txt"), "utf8"), "keep me");
    rmSync(join(dir, "new.txt"));
    assert.throws(() => WasiHost.restore(state, fake_deps().deps, { preopens: state.preopens }), { code: "ERR_RESTORE_FILE" });
    assert.equal(existsSync(join(dir, "new.txt")), false);
  });

  test("a file replaced while open cannot be restored silently as the new one", () => {
    const dir = temp_dir();
    writeFileSync(join(dir, "f"), "old");
    const { guest } = Guest.start({ preopens: [{ host_path: dir, guest_path: "/d" }] });
    guest.open(3, "f");
    writeFileSync(join(dir, "g"), "new");
    renameSync(join(dir, "g"), join(dir, "f"));
    const state = through_json(guest.host.capture());
    guest.host.close();
    assert.throws(() => WasiHost.restore(state, fake_deps().deps, { preopens: state.preopens }), { code: "ERR_RESTORE_FILE" });
  });

  test("a file the guest renamed while open is reopened under its new name", () => {
    const dir = temp_dir();
    mkdirSync(join(dir, "a"));
    writeFileSync(join(dir, "a", "f"), "content");
    const { guest } = Guest.start({ preopens: [{ host_path: dir, guest_path: "/d" }] });
    const [, fd] = guest.open(3, "a/f");
    guest.read(fd, 3);
    const [from, from_len] = guest.str("a");
    const [to, to_len] = guest.str("b");
    assert.equal(guest.call("path_rename", 3, from, from_len, 3, to, to_len), Errno.success);
    const state = through_json(guest.host.capture());
    guest.host.close();
    const restored = new Guest(WasiHost.restore(state, fake_deps().deps, { preopens: state.preopens }));
    assert.deepEqual(restored.read(fd, 10), [Errno.success, "tent"]);
    restored.host.close();
  });

  test("restore from a preopen that vanished is ERR_RESTORE_PREOPEN", () => {
    const dir = temp_dir();
    const { guest } = Guest.start({ preopens: [{ host_path: dir, guest_path: "/d" }] });
    const state = through_json(guest.host.capture());
    rmSync(dir, { recursive: true });
    assert.throws(() => WasiHost.restore(state, fake_deps().deps, { preopens: state.preopens }), { code: "ERR_RESTORE_PREOPEN" });
  });

  test("malformed state is ERR_RESTORE_STATE", () => {
    const { guest } = Guest.start();
    const state = through_json(guest.host.capture());
    const broken = { ...state, monotonic_ns: -1 } as unknown as WasiState;
    assert.throws(() => WasiHost.restore(broken, fake_deps().deps, { preopens: broken.preopens }), { code: "ERR_RESTORE_STATE" });
    assert.throws(() => WasiHost.restore({ ...state, v: 2 } as unknown as WasiState, fake_deps().deps, { preopens: state.preopens }), {
      code: "ERR_RESTORE_STATE",
    });
  });
});
