import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { Errno } from "./mod.js";
import { Guest, remove_temp_dirs, temp_dir } from "./_testing.js";
import { Filestat, LOOKUP_SYMLINK_FOLLOW, OFlags } from "./_layout.js";
import { SYMLINK_EXPANSIONS_MAX } from "./_path.js";

after(remove_temp_dirs);

/**
 * outer/
 *   secret.txt          outside the sandbox
 *   box/                the preopen
 *     a/b/              nested dirs
 *     t.txt
 *     to_root -> /
 *     to_up -> ../../
 *     to_secret -> ../secret.txt
 *     loop1 -> loop2, loop2 -> loop1, self -> self
 *     a/ok -> ../t.txt  (stays inside)
 */
function sandbox(): ReturnType<typeof Guest.start> & { outer: string; box: string } {
  const outer = temp_dir();
  const box = join(outer, "box");
  mkdirSync(join(box, "a", "b"), { recursive: true });
  writeFileSync(join(outer, "secret.txt"), "secret");
  writeFileSync(join(box, "t.txt"), "inside");
  symlinkSync("/", join(box, "to_root"));
  symlinkSync("../../", join(box, "to_up"));
  symlinkSync("../secret.txt", join(box, "to_secret"));
  symlinkSync("loop2", join(box, "loop1"));
  symlinkSync("loop1", join(box, "loop2"));
  symlinkSync("self", join(box, "self"));
  symlinkSync("../t.txt", join(box, "a", "ok"));
  return { outer, box, ...Guest.start({ preopens: [{ host_path: box, guest_path: "/box" }] }) };
}

const ESCAPES = [
  "../secret.txt",
  "a/../../secret.txt",
  "a/b/../../../secret.txt",
  "/etc/passwd",
  "/box/t.txt",
  "to_root/etc/passwd",
  "to_root",
  "to_up",
  "to_up/secret.txt",
  "to_secret",
];

describe("sandbox", () => {
  for (const path of ESCAPES) {
    test(`${path} is notcapable for open, stat, mkdir, unlink, create`, () => {
      const { guest, outer } = sandbox();
      assert.equal(guest.open(3, path)[0], Errno.notcapable);
      assert.equal(guest.open(3, path, { oflags: OFlags.creat })[0], Errno.notcapable);
      const st = guest.alloc(Filestat.size);
      assert.equal(guest.call("path_filestat_get", 3, LOOKUP_SYMLINK_FOLLOW, ...guest.str(path), st), Errno.notcapable);
      const inner = `${path}/x`;
      assert.equal(guest.path_call("path_create_directory", 3, inner), Errno.notcapable);
      assert.equal(guest.path_call("path_unlink_file", 3, `${path}/../secret.txt`), Errno.notcapable);
      assert.equal(readFileSync(join(outer, "secret.txt"), "utf8"), "secret");
      assert.equal(existsSync(join(outer, "x")), false);
    });
  }

  test("symlinks to outside are still visible as links when not followed", () => {
    const { guest } = sandbox();
    const st = guest.alloc(Filestat.size);
    assert.equal(guest.call("path_filestat_get", 3, 0, ...guest.str("to_root"), st), Errno.success);
    assert.equal(guest.open(3, "to_root", { follow: false })[0], Errno.loop);
  });

  test("symlinks that stay inside work, and .. climbs back to the root", () => {
    const { guest } = sandbox();
    const [errno, fd] = guest.open(3, "a/ok");
    assert.equal(errno, Errno.success);
    assert.deepEqual(guest.read(fd, 10), [Errno.success, "inside"]);
    assert.equal(guest.open(3, "a/b/../../t.txt")[0], Errno.success);
    assert.equal(guest.open(3, "./a/./b/..//../t.txt")[0], Errno.success);
    guest.host.close();
  });

  test("a subdirectory fd is a capability: neither .. nor a symlink climbs above it", () => {
    const { guest } = sandbox();
    const [, a] = guest.open(3, "a", { oflags: OFlags.directory });
    const [, b] = guest.open(3, "a/b", { oflags: OFlags.directory });
    assert.equal(guest.open(b, "../../t.txt")[0], Errno.notcapable);
    assert.equal(guest.open(b, "../../../secret.txt")[0], Errno.notcapable);
    assert.equal(guest.open(a, "b/..", { oflags: OFlags.directory })[0], Errno.success);
    // a/ok -> ../t.txt: fine from the preopen, above the fd from a.
    assert.equal(guest.open(3, "a/ok")[0], Errno.success);
    assert.equal(guest.open(a, "ok")[0], Errno.notcapable);
    guest.host.close();
  });

  test("symlink loops are loop", () => {
    const { guest } = sandbox();
    assert.equal(guest.open(3, "loop1")[0], Errno.loop);
    assert.equal(guest.open(3, "self")[0], Errno.loop);
    assert.equal(guest.open(3, "loop1/x", { follow: false })[0], Errno.loop);
    assert.equal(guest.path_call("path_create_directory", 3, "self/x"), Errno.loop);
  });

  test(`a chain of ${SYMLINK_EXPANSIONS_MAX} symlinks resolves, one more is loop`, () => {
    const { guest, box } = sandbox();
    for (let i = 1; i <= SYMLINK_EXPANSIONS_MAX + 1; i++) symlinkSync(i === 1 ? "t.txt" : `c${i - 1}`, join(box, `c${i}`));
    assert.equal(guest.open(3, `c${SYMLINK_EXPANSIONS_MAX}`)[0], Errno.success);
    assert.equal(guest.open(3, `c${SYMLINK_EXPANSIONS_MAX + 1}`)[0], Errno.loop);
    guest.host.close();
  });

  test("malformed paths: NUL is inval, too long is nametoolong, empty is noent, bad UTF-8 is ilseq", () => {
    const { guest } = sandbox();
    assert.equal(guest.open(3, "t.txt\0../../secret.txt")[0], Errno.inval);
    assert.equal(guest.open(3, "x".repeat(5000))[0], Errno.nametoolong);
    assert.equal(guest.open(3, "y".repeat(300))[0], Errno.nametoolong);
    assert.equal(guest.open(3, "")[0], Errno.noent);
    const bad = guest.alloc(2, 1);
    new Uint8Array(guest.memory.buffer).set([0xff, 0xfe], bad);
    assert.equal(guest.call("path_open", 3, 1, bad, 2, 0, 0n, 0n, 0, guest.alloc(4)), Errno.ilseq);
  });

  test("only directories answer path calls", () => {
    const { guest } = sandbox();
    const [, f] = guest.open(3, "t.txt");
    assert.equal(guest.open(f, "x")[0], Errno.notdir);
    assert.equal(guest.open(1, "x")[0], Errno.notdir);
    assert.equal(guest.open(42, "x")[0], Errno.badf);
    guest.host.close();
  });
});
