import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { Errno, WasiHost } from "./mod.js";
import { Guest, fake_deps, remove_temp_dirs, temp_dir } from "./_testing.js";
import { FdFlags, OFlags, Rights, Whence } from "./_layout.js";

after(remove_temp_dirs);

function with_dir(memory?: WebAssembly.Memory): ReturnType<typeof Guest.start> & { dir: string } {
  const dir = temp_dir();
  return { dir, ...Guest.start({ preopens: [{ host_path: dir, guest_path: "/work" }], ...(memory ? { memory } : {}) }) };
}

for (const shared of [false, true]) {
  describe(`file I/O (${shared ? "shared" : "plain"} memory)`, () => {
    const memory = () => new WebAssembly.Memory(shared ? { initial: 2, maximum: 10, shared: true } : { initial: 2 });

    test("write, seek, read, tell", () => {
      const { guest, dir } = with_dir(memory());
      const [errno, fd] = guest.open(3, "f.txt", { oflags: OFlags.creat });
      assert.equal(errno, Errno.success);
      assert.equal(fd, 4);
      assert.deepEqual(guest.write(fd, "hello world"), [Errno.success, 11]);
      assert.equal(readFileSync(join(dir, "f.txt"), "utf8"), "hello world");
      assert.deepEqual(guest.seek(fd, 0n, Whence.cur), [Errno.success, 11n]);
      assert.deepEqual(guest.seek(fd, -5n, Whence.end), [Errno.success, 6n]);
      assert.deepEqual(guest.read(fd, 100), [Errno.success, "world"]);
      assert.deepEqual(guest.read(fd, 100), [Errno.success, ""]);
      assert.deepEqual(guest.seek(fd, 2n, Whence.set), [Errno.success, 2n]);
      assert.deepEqual(guest.seek(fd, 1n, Whence.cur), [Errno.success, 3n]);
      const out = guest.alloc(8);
      assert.equal(guest.call("fd_tell", fd, out), Errno.success);
      assert.equal(guest.u64(out), 3n);
      assert.equal(guest.seek(fd, -4n, Whence.cur)[0], Errno.inval);
      assert.equal(guest.seek(fd, 0n, 3)[0], Errno.inval);
      assert.deepEqual(guest.seek(fd, 0n, Whence.cur), [Errno.success, 3n]);
      guest.host.close();
    });

    test("scatter/gather over several iovecs, growing memory in between", () => {
      const { guest } = with_dir(memory());
      const [, fd] = guest.open(3, "g.txt", { oflags: OFlags.creat });
      const iovs = guest.alloc(16, 4);
      const [a, a_len] = guest.str("abc");
      const [b, b_len] = guest.str("defgh");
      guest.set_u32(iovs, a);
      guest.set_u32(iovs + 4, a_len);
      guest.set_u32(iovs + 8, b);
      guest.set_u32(iovs + 12, b_len);
      const n = guest.alloc(4, 4);
      assert.equal(guest.call("fd_write", fd, iovs, 2, n), Errno.success);
      assert.equal(guest.u32(n), 8);
      guest.memory.grow(1);
      const [riovs, count, bufs] = guest.iovecs([2, 0, 4, 10]);
      assert.equal(guest.call("fd_pread", fd, riovs, count, 1n, n), Errno.success);
      assert.equal(guest.u32(n), 7);
      assert.equal(guest.text(bufs[0] as number, 2), "bc");
      assert.equal(guest.text(bufs[2] as number, 4), "defg");
      assert.equal(guest.text(bufs[3] as number, 1), "h");
      // A pointer into the grown region works: the host re-made its views.
      const far = 2 * 65536 + 100;
      guest.set_u32(riovs, far);
      guest.set_u32(riovs + 4, 3);
      assert.equal(guest.call("fd_pread", fd, riovs, 1, 0n, n), Errno.success);
      assert.equal(guest.text(far, 3), "abc");
      guest.host.close();
    });

    test("pread/pwrite leave the offset alone", () => {
      const { guest, dir } = with_dir(memory());
      writeFileSync(join(dir, "p"), "0123456789");
      const [, fd] = guest.open(3, "p");
      guest.seek(fd, 4n, Whence.set);
      const [iovs, count, [buf]] = guest.iovecs([3]);
      const n = guest.alloc(4, 4);
      assert.equal(guest.call("fd_pread", fd, iovs, count, 7n, n), Errno.success);
      assert.equal(guest.text(buf as number, guest.u32(n)), "789");
      const [w, w_len] = guest.str("XY");
      guest.set_u32(iovs, w);
      guest.set_u32(iovs + 4, w_len);
      assert.equal(guest.call("fd_pwrite", fd, iovs, 1, 12n, n), Errno.success);
      assert.equal(readFileSync(join(dir, "p"), "latin1"), "0123456789\0\0XY");
      assert.deepEqual(guest.read(fd, 2), [Errno.success, "45"]);
      guest.host.close();
    });
  });
}

describe("append and access modes", () => {
  test("APPEND writes at the end even after a seek, and the offset follows", () => {
    const { guest, dir } = with_dir();
    writeFileSync(join(dir, "log"), "start;");
    const [, fd] = guest.open(3, "log", { fdflags: FdFlags.append });
    guest.seek(fd, 0n, Whence.set);
    guest.write(fd, "one;");
    writeFileSync(join(dir, "log"), "start;one;outside;");
    guest.write(fd, "two;");
    assert.equal(readFileSync(join(dir, "log"), "utf8"), "start;one;outside;two;");
    assert.deepEqual(guest.seek(fd, 0n, Whence.cur), [Errno.success, 22n]);
    guest.host.close();
  });

  test("APPEND can be switched on with fd_fdstat_set_flags", () => {
    const { guest, dir } = with_dir();
    writeFileSync(join(dir, "log"), "abc");
    const [, fd] = guest.open(3, "log");
    assert.equal(guest.call("fd_fdstat_set_flags", fd, FdFlags.append), Errno.success);
    guest.write(fd, "d");
    assert.equal(readFileSync(join(dir, "log"), "utf8"), "abcd");
    guest.host.close();
  });

  test("read-only and write-only fds refuse the other direction with badf", () => {
    const { guest, dir } = with_dir();
    writeFileSync(join(dir, "r"), "data");
    const [, ro] = guest.open(3, "r", { rights: Rights.fd_read | Rights.fd_seek });
    assert.equal(guest.write(ro, "x")[0], Errno.badf);
    const [, wo] = guest.open(3, "r", { rights: Rights.fd_write });
    assert.equal(guest.read(wo, 4)[0], Errno.badf);
    assert.equal(guest.seek(wo, 0n, Whence.set)[0], Errno.notcapable);
    guest.host.close();
  });

  test("reading or writing a directory is isdir; seeking one is badf", () => {
    const { guest } = with_dir();
    assert.equal(guest.read(3, 4)[0], Errno.isdir);
    assert.equal(guest.write(3, "x")[0], Errno.isdir);
    assert.equal(guest.seek(3, 0n, Whence.set)[0], Errno.badf);
  });
});

describe("stdio", () => {
  test("stdout/stderr go to the sinks and are counted", () => {
    const { guest, stdout, stderr } = Guest.start();
    assert.deepEqual(guest.write(1, "out"), [Errno.success, 3]);
    assert.deepEqual(guest.write(2, "error!"), [Errno.success, 6]);
    assert.equal(stdout.text(), "out");
    assert.equal(stderr.text(), "error!");
    assert.equal(guest.host.stdout_bytes, 3);
    assert.equal(guest.host.stderr_bytes, 6);
    assert.equal(guest.write(0, "x")[0], Errno.badf);
    assert.equal(guest.read(1, 1)[0], Errno.badf);
  });

  test("stdio is not seekable: seek, tell, pread, pwrite are spipe", () => {
    const { guest } = Guest.start();
    assert.equal(guest.seek(1, 0n, Whence.cur)[0], Errno.spipe);
    assert.equal(guest.call("fd_tell", 0, guest.alloc(8)), Errno.spipe);
    const [iovs, count] = guest.iovecs([4]);
    const n = guest.alloc(4, 4);
    assert.equal(guest.call("fd_pread", 0, iovs, count, 0n, n), Errno.spipe);
    assert.equal(guest.call("fd_pwrite", 1, iovs, count, 0n, n), Errno.spipe);
  });

  test("stdin reads what is there, blocks when empty, and sees eof", () => {
    const { guest, stdin, blocker } = Guest.start();
    stdin.push("hello");
    assert.deepEqual(guest.read(0, 3), [Errno.success, "hel"]);
    assert.deepEqual(guest.read(0, 10), [Errno.success, "lo"]);
    blocker.script.push(() => {
      stdin.push("later");
      return "ready";
    });
    assert.deepEqual(guest.read(0, 10), [Errno.success, "later"]);
    assert.deepEqual(blocker.calls, [{ stdin: true }]);
    stdin.eof = true;
    assert.deepEqual(guest.read(0, 10), [Errno.success, ""]);
  });

  test("stdin with NONBLOCK is again when empty", () => {
    const { guest, blocker } = Guest.start();
    assert.equal(guest.call("fd_fdstat_set_flags", 0, FdFlags.nonblock), Errno.success);
    assert.equal(guest.read(0, 10)[0], Errno.again);
    assert.equal(blocker.calls.length, 0);
  });

  test("a suspended stdin read consumes nothing and writes nothing; the repeat reads", () => {
    const { guest, stdin, blocker } = Guest.start();
    blocker.script.push("suspend");
    const [iovs, count, [buf]] = guest.iovecs([8]);
    const n = guest.alloc(4, 4);
    guest.set_u32(n, 0xdeadbeef);
    assert.equal(guest.call("fd_read", 0, iovs, count, n), Errno.success);
    assert.equal(guest.u32(n), 0xdeadbeef);
    stdin.push("abc");
    const state = JSON.parse(JSON.stringify(guest.host.capture()));
    const fresh = fake_deps();
    fresh.stdin.push("abc");
    const restored = new Guest(WasiHost.restore(state, fresh.deps, { preopens: state.preopens }), guest.memory);
    assert.equal(restored.call("fd_read", 0, iovs, count, n), Errno.success);
    assert.equal(restored.text(buf as number, restored.u32(n)), "abc");
  });
});

describe("errors", () => {
  test("bad fd is badf", () => {
    const { guest } = Guest.start();
    assert.equal(guest.write(9, "x")[0], Errno.badf);
    assert.equal(guest.read(9, 1)[0], Errno.badf);
    assert.equal(guest.call("fd_close", 9), Errno.badf);
    assert.equal(guest.seek(-1, 0n, Whence.set)[0], Errno.badf);
  });

  test("bad pointers are fault and nothing is written first", () => {
    const { guest, stdout } = Guest.start();
    const [iovs] = guest.iovecs([4]);
    const end = guest.memory.buffer.byteLength;
    assert.equal(guest.call("fd_write", 1, end - 4, 1, guest.alloc(4)), Errno.fault);
    assert.equal(guest.call("fd_write", 1, iovs, 1, end - 2), Errno.fault);
    assert.equal(guest.call("fd_write", 1, iovs, 1, -8), Errno.fault);
    guest.set_u32(iovs, end - 1);
    assert.equal(guest.call("fd_write", 1, iovs, 1, guest.alloc(4)), Errno.fault);
    assert.equal(stdout.chunks.length, 0);
    assert.equal(guest.call("clock_time_get", 1, 0n, end), Errno.fault);
  });
});
