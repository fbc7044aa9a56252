import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { RestoreError } from "../errors.js";
import { Errno, WasiHost, match_preopens, type WasiState } from "./mod.js";
import { Guest, fake_deps, remove_temp_dirs, temp_dir } from "./_testing.js";
import { OFlags } from "./_layout.js";

after(remove_temp_dirs);

const through_json = (s: WasiState): WasiState => JSON.parse(JSON.stringify(s)) as WasiState;

function restore_error(fn: () => unknown): RestoreError {
  try {
    fn();
  } catch (error) {
    if (error instanceof RestoreError) return error;
    throw error;
  }
  throw new Error("expected a RestoreError, but the restore succeeded");
}

/**
 * outer/
 *   secret.txt
 *   data/        preopened as /data; the guest holds data.txt and sub/ open
 *     data.txt
 *     sub/
 */
function captured(): { outer: string; data: string; state: WasiState; file_fd: number; dir_fd: number } {
  const outer = temp_dir();
  const data = join(outer, "data");
  mkdirSync(join(data, "sub"), { recursive: true });
  writeFileSync(join(data, "data.txt"), "0123456789");
  writeFileSync(join(outer, "secret.txt"), "secret");
  const { guest } = Guest.start({ preopens: [{ host_path: data, guest_path: "/data" }] });
  const [e1, file_fd] = guest.open(3, "data.txt");
  const [e2, dir_fd] = guest.open(3, "sub", { oflags: OFlags.directory });
  assert.deepEqual([e1, e2], [Errno.success, Errno.success]);
  guest.read(file_fd, 2);
  const state = through_json(guest.host.capture());
  guest.host.close();
  return { outer, data, state, file_fd, dir_fd };
}

/** `state` with the fd numbered `fd` changed by `edit`, as a hand-edited image would carry it. */
function edit_fd(state: WasiState, fd: number, edit: (f: Record<string, unknown>) => void): WasiState {
  const copy = through_json(state);
  const entry = copy.fds.find((f) => f.fd === fd);
  assert.ok(entry !== undefined);
  edit(entry as unknown as Record<string, unknown>);
  return copy;
}

describe("match_preopens", () => {
  const a = { host_path: "/h/a", guest_path: "/a" };
  const b = { host_path: "/h/b", guest_path: "/b" };

  test("matches by guest path, in the image's order, taking the granted host paths", () => {
    const match = match_preopens([a, b], [{ host_path: "/x/b", guest_path: "/b" }, { host_path: "/x/a", guest_path: "/a" }]);
    assert.deepEqual(match, { kind: "granted", preopens: [{ host_path: "/x/a", guest_path: "/a" }, { host_path: "/x/b", guest_path: "/b" }] });
  });

  test("a guest path recorded twice takes its grants first to first", () => {
    const match = match_preopens([a, { ...a, host_path: "/h/a2" }], [{ host_path: "/1", guest_path: "/a" }, { host_path: "/2", guest_path: "/a" }]);
    assert.deepEqual(match.kind === "granted" && match.preopens.map((p) => p.host_path), ["/1", "/2"]);
  });

  test("a recorded directory without a grant, or a grant without a directory, is a mismatch", () => {
    assert.deepEqual(match_preopens([a, b], [a]), { kind: "mismatch", missing: [b], unused: [] });
    assert.deepEqual(match_preopens([a], [a, b]), { kind: "mismatch", missing: [], unused: [b] });
    assert.deepEqual(match_preopens([], []), { kind: "granted", preopens: [] });
  });
});

describe("restore takes its directories from the grant, never from the state", () => {
  test("a granted copy elsewhere is used, and the recorded host directory is not touched", () => {
    const { outer, data, state, file_fd } = captured();
    const elsewhere = join(outer, "elsewhere");
    cpSync(data, elsewhere, { recursive: true });
    writeFileSync(join(elsewhere, "data.txt"), "abcdefghij");
    const restored = new Guest(WasiHost.restore(state, fake_deps().deps, { preopens: [{ host_path: elsewhere, guest_path: "/data" }] }));
    assert.deepEqual(restored.read(file_fd, 3), [Errno.success, "cde"]);
    assert.equal(restored.host.capture().preopens[0]?.host_path, elsewhere);
    restored.host.close();
  });

  test("a directory the state has but the grant lacks is ERR_RESTORE_PREOPEN naming it; so is an unused grant", () => {
    const { data, state } = captured();
    const missing = restore_error(() => WasiHost.restore(state, fake_deps().deps, { preopens: [] }));
    assert.equal(missing.code, "ERR_RESTORE_PREOPEN");
    assert.match(missing.message, /\/data is not granted/);
    const extra = restore_error(() =>
      WasiHost.restore(state, fake_deps().deps, {
        preopens: [
          { host_path: data, guest_path: "/data" },
          { host_path: data, guest_path: "/more" },
        ],
      }),
    );
    assert.equal(extra.code, "ERR_RESTORE_PREOPEN");
    assert.match(extra.message, /no directory \/more/);
  });

  test("a state whose preopen was edited to /etc reads nothing there", () => {
    const { data, state, file_fd } = captured();
    const edited = edit_fd(state, file_fd, (f) => {
      f["rel_path"] = "passwd";
      f["host_path"] = "/etc/passwd";
    });
    edited.preopens = [{ host_path: "/etc", guest_path: "/data" }];
    // Not granted: refused before anything is opened.
    assert.equal(restore_error(() => WasiHost.restore(edited, fake_deps().deps, { preopens: [] })).code, "ERR_RESTORE_PREOPEN");
    // Granted its real directory: passwd is looked for there, and is not.
    const error = restore_error(() => WasiHost.restore(edited, fake_deps().deps, { preopens: [{ host_path: data, guest_path: "/data" }] }));
    assert.equal(error.code, "ERR_RESTORE_FILE");
    assert.match(error.message, /\/data \(granted as /);
  });

  for (const target of ["../secret.txt", "/etc/passwd"]) {
    test(`an open file whose path now leads out through a symlink (${target}) is ERR_RESTORE_FILE`, () => {
      const { outer, data, state, file_fd } = captured();
      symlinkSync(target, join(data, "out"));
      const edited = edit_fd(state, file_fd, (f) => (f["rel_path"] = "out"));
      const error = restore_error(() => WasiHost.restore(edited, fake_deps().deps, { preopens: [{ host_path: data, guest_path: "/data" }] }));
      assert.equal(error.code, "ERR_RESTORE_FILE");
      assert.match(error.message, /leads outside/);
      assert.equal(readFileSync(join(outer, "secret.txt"), "utf8"), "secret");
    });
  }

  test("an open directory whose path now leads out is ERR_RESTORE_FILE, and so is the preopen's own fd", () => {
    const { data, state, dir_fd } = captured();
    symlinkSync("..", join(data, "up"));
    const sub = edit_fd(state, dir_fd, (f) => (f["rel_path"] = "up"));
    assert.equal(restore_error(() => WasiHost.restore(sub, fake_deps().deps, { preopens: [{ host_path: data, guest_path: "/data" }] })).code, "ERR_RESTORE_FILE");
    const preopen_fd = edit_fd(state, 3, (f) => (f["rel_path"] = "up"));
    assert.equal(restore_error(() => WasiHost.restore(preopen_fd, fake_deps().deps, { preopens: [{ host_path: data, guest_path: "/data" }] })).code, "ERR_RESTORE_FILE");
  });

  test("paths that climb or are absolute are malformed state, refused before any directory is looked at", () => {
    const { data, state, file_fd } = captured();
    for (const rel_path of ["../secret.txt", "/etc/passwd", "sub/../../secret.txt"]) {
      const edited = edit_fd(state, file_fd, (f) => (f["rel_path"] = rel_path));
      assert.equal(restore_error(() => WasiHost.restore(edited, fake_deps().deps, { preopens: [{ host_path: data, guest_path: "/data" }] })).code, "ERR_RESTORE_STATE");
    }
  });

  test("a granted directory that is not there is ERR_RESTORE_PREOPEN", () => {
    const { outer, state } = captured();
    const error = restore_error(() => WasiHost.restore(state, fake_deps().deps, { preopens: [{ host_path: join(outer, "nope"), guest_path: "/data" }] }));
    assert.equal(error.code, "ERR_RESTORE_PREOPEN");
  });
});
