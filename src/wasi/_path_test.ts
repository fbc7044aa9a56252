import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, mkdirSync, openSync, renameSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { Errno, ErrnoError } from "./errno.js";
import { opened_inside, RealRoots, resolve, resolve_dir, symlink_target_escapes } from "./_path.js";
import { remove_temp_dirs, temp_dir } from "./_testing.js";

after(remove_temp_dirs);

function errno_of_resolve(fn: () => unknown): number {
  try {
    fn();
    return Errno.success;
  } catch (error) {
    if (error instanceof ErrnoError) return error.errno;
    throw error;
  }
}

describe("resolve", () => {
  const root = temp_dir();
  mkdirSync(join(root, "a", "b"), { recursive: true });
  writeFileSync(join(root, "a", "f"), "");
  symlinkSync("b", join(root, "a", "to_b"));
  symlinkSync("../f", join(root, "a", "b", "to_f"));
  symlinkSync(".", join(root, "dot"));

  test("walks components and reports the final entry", () => {
    const r = resolve({ root, rel: [] }, "a/b/../f", { follow: false });
    assert.deepEqual(r.rel, ["a", "f"]);
    assert.equal(r.host_path, join(root, "a", "f"));
    assert.equal(r.entry, true);
    assert.equal(r.stat?.isFile(), true);
  });

  test("a missing final component is not an error", () => {
    const r = resolve({ root, rel: ["a"] }, "new", { follow: true });
    assert.deepEqual(r.rel, ["a", "new"]);
    assert.equal(r.stat, undefined);
  });

  test("follows symlinks relative to their directory, the final one only on request", () => {
    assert.deepEqual(resolve({ root, rel: [] }, "a/to_b/to_f", { follow: true }).rel, ["a", "f"]);
    const not_followed = resolve({ root, rel: [] }, "a/to_b/to_f", { follow: false });
    assert.deepEqual(not_followed.rel, ["a", "b", "to_f"]);
    assert.equal(not_followed.stat?.isSymbolicLink(), true);
  });

  test("paths ending in . or .. name no entry", () => {
    const r = resolve({ root, rel: [] }, "a/..", { follow: false });
    assert.deepEqual(r.rel, []);
    assert.equal(r.entry, false);
    assert.equal(resolve({ root, rel: ["a"] }, ".", { follow: false }).entry, false);
    assert.equal(resolve({ root, rel: [] }, "dot", { follow: true }).entry, false);
  });

  test("refuses escapes", () => {
    for (const path of ["..", "../x", "a/../..", "/", "/a", "a/b/../../../a"]) {
      assert.equal(errno_of_resolve(() => resolve({ root, rel: [] }, path, { follow: true })), Errno.notcapable, path);
    }
    // A directory fd is a capability: nothing above it, though its preopen goes higher.
    assert.equal(errno_of_resolve(() => resolve({ root, rel: ["a", "b"] }, "..", { follow: true })), Errno.notcapable);
    assert.equal(errno_of_resolve(() => resolve({ root, rel: ["a", "b"] }, "to_f", { follow: true })), Errno.notcapable);
    assert.equal(errno_of_resolve(() => resolve({ root, rel: ["a", "b"] }, "x/..", { follow: true })), Errno.noent);
    assert.equal(errno_of_resolve(() => resolve({ root, rel: ["a"] }, "b/..", { follow: true })), Errno.success);
  });

  test("intermediate non-directories are notdir; missing ones noent", () => {
    assert.equal(errno_of_resolve(() => resolve({ root, rel: [] }, "a/f/x", { follow: true })), Errno.notdir);
    assert.equal(errno_of_resolve(() => resolve({ root, rel: [] }, "a/f/", { follow: true })), Errno.notdir);
    assert.equal(errno_of_resolve(() => resolve({ root, rel: [] }, "nope/x", { follow: true })), Errno.noent);
  });
});

describe("resolve walks the directory fd's own components again", () => {
  const root = temp_dir();
  mkdirSync(join(root, "real", "d"), { recursive: true });
  writeFileSync(join(root, "real", "d", "f"), "");
  symlinkSync("real", join(root, "swapped"));
  symlinkSync("..", join(root, "up"));

  test("a component that became a symlink is followed, inside, and the result is where it leads", () => {
    const r = resolve({ root, rel: ["swapped", "d"] }, "f", { follow: false });
    assert.deepEqual(r.rel, ["real", "d", "f"]);
    assert.equal(r.host_path, join(root, "real", "d", "f"));
  });

  test("a component that became a symlink out is notcapable; one that is gone is noent", () => {
    assert.equal(errno_of_resolve(() => resolve({ root, rel: ["up"] }, "x", { follow: false })), Errno.notcapable);
    assert.equal(errno_of_resolve(() => resolve({ root, rel: ["up"] }, ".", { follow: false })), Errno.notcapable);
    assert.equal(errno_of_resolve(() => resolve({ root, rel: ["gone"] }, "x", { follow: false })), Errno.noent);
    assert.equal(errno_of_resolve(() => resolve({ root, rel: ["real", "d", "f"] }, "x", { follow: false })), Errno.notdir);
  });

  test("resolve_dir answers the directory itself, walked again", () => {
    const r = resolve_dir({ root, rel: ["swapped", "d"] });
    assert.deepEqual(r.rel, ["real", "d"]);
    assert.equal(r.stat.isDirectory(), true);
    assert.equal(errno_of_resolve(() => resolve_dir({ root, rel: ["up"] })), Errno.notcapable);
  });
});

describe("opened_inside", () => {
  test("tells a file below the root from one outside it", () => {
    const outer = temp_dir();
    const root = join(outer, "root");
    mkdirSync(root);
    mkdirSync(join(outer, "ou"));
    writeFileSync(join(root, "in"), "");
    writeFileSync(join(outer, "out"), "");
    const inside = openSync(join(root, "in"), "r");
    const outside = openSync(join(outer, "out"), "r");
    try {
      const real_roots = new RealRoots();
      assert.equal(opened_inside(inside, root, real_roots), true);
      assert.equal(opened_inside(outside, root, real_roots), false);
      // A sibling whose name starts like the root is not inside it.
      assert.equal(opened_inside(outside, join(outer, "ou"), real_roots), false);
    } finally {
      closeSync(inside);
      closeSync(outside);
    }
  });
});

describe("opened_inside, the root swapped on the host", () => {
  test("refuses files reached through a root replaced by a symlink since the process first used it", () => {
    const outer = temp_dir();
    const root = join(outer, "root");
    const elsewhere = join(outer, "elsewhere");
    mkdirSync(root);
    mkdirSync(elsewhere);
    writeFileSync(join(root, "in"), "");
    writeFileSync(join(elsewhere, "in"), "");
    const real_roots = new RealRoots();
    const first = openSync(join(root, "in"), "r");
    try {
      assert.equal(opened_inside(first, root, real_roots), true);
    } finally {
      closeSync(first);
    }
    // The host moves the directory away and puts a symlink to another one in its place.
    renameSync(root, join(outer, "moved"));
    symlinkSync(elsewhere, root);
    const second = openSync(join(root, "in"), "r");
    try {
      assert.equal(opened_inside(second, root, real_roots), false);
      // A process that starts now takes the root as it is now.
      assert.equal(opened_inside(second, root, new RealRoots()), true);
    } finally {
      closeSync(second);
    }
  });
});

describe("symlink_target_escapes", () => {
  test("judges lexically from the link's directory", () => {
    assert.equal(symlink_target_escapes([], "x"), false);
    assert.equal(symlink_target_escapes([], "../x"), true);
    assert.equal(symlink_target_escapes(["a"], "../x"), false);
    assert.equal(symlink_target_escapes(["a"], "../../x"), true);
    assert.equal(symlink_target_escapes(["a"], "b/../../x"), false);
    assert.equal(symlink_target_escapes(["a"], "/x"), true);
  });
});
