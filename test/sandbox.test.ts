/**
 * The WASI sandbox end to end (issue 10):
 * - `ferry resume` grants directories again with --dir, matched to the
 *   image's by guest path, and never opens a host path an image records,
 *   even in an image edited with its checksums recomputed.
 * (The official WASI testsuite's path and filesystem tests run with the rest
 * of that suite in wasi_testsuite.test.ts.)
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { decodeImage, encodeImage } from "../src/image/mod.js";
import { GuestProcess, localSigner, localTrust, writeImageFile } from "../src/runtime/mod.js";
import { ferryHome } from "../src/home.js";
import type { WasiState } from "../src/wasi/mod.js";
import { EXAMPLES, ferry, tempDir, until } from "./_helpers.js";


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
