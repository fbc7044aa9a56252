/**
 * Images at rest through the CLI (issue 10): `ferry exec` signs with a key it
 * makes under FERRY_HOME; `ferry resume` runs only images signed with it,
 * opens encrypted ones with the local key, and refuses every bad image with
 * a typed error and status 125 before anything runs: edited (CRCs
 * recomputed), foreign, undecryptable, a global of the wrong type, a corrupt
 * stack, a module path that is no regular file.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { buildImage, splitSections } from "../src/image/_fixtures.js";
import { SectionKind } from "../src/image/format.js";
import { ENVELOPE_MAGIC, type ProcessImage } from "../src/image/mod.js";
import { ENCRYPTION_KEY_FILE, KEYS_DIR, SIGNING_KEY_FILE, localSigner, localTrust, readImageFile, writeImageFile } from "../src/runtime/mod.js";
import { EXAMPLES, ferry, tempDir, testHome, type RunResult } from "./_helpers.js";

const compute = path.join(EXAMPLES, "c", "compute.wasm");
const fileproc = path.join(EXAMPLES, "c", "fileproc.wasm");
/** Rounds of compute: long enough to be suspended, short enough to finish soon after. */
const ROUNDS = "10";
const EXIT_FERRY_FAILED = 125;

/** The image magic's first bytes, as docs/image-format.md gives them. */
const IMAGE_MAGIC_PREFIX = Buffer.from([0x89, 0x46, 0x45, 0x52, 0x52, 0x59]);

function assertRefused(r: RunResult, code: string): void {
  assert.equal(r.status, EXIT_FERRY_FAILED, `status ${r.status}: ${r.stderr.toString()}`);
  assert.match(r.stderr.toString(), new RegExp(code));
  assert.equal(r.stdout.length, 0, "the program ran");
}

/** Re-signs an edited copy of `file` with the local key, as a writer that holds it would: only the runtime's own checks are left. */
function resigned(file: string, out: string, edit: (image: ProcessImage) => void): string {
  const home = testHome();
  const image = readImageFile(file, { trust: localTrust(home) });
  edit(image);
  writeImageFile(out, image, { signer: localSigner(home) });
  return out;
}

describe("signed and encrypted images (CLI)", () => {
  let dir = "";
  let image = "";
  let whole: RunResult;
  before(async () => {
    dir = tempDir("trust");
    image = path.join(dir, "compute.img");
    whole = await ferry(["exec", compute, ROUNDS, "3"]);
    const r = await ferry(["exec", "--suspend-after", "150", "--image", image, compute, ROUNDS, "3"]);
    assert.equal(r.status, 0, r.stderr.toString());
    assert.ok(fs.existsSync(image), "compute finished before it could be suspended");
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("exec makes the signing key in FERRY_HOME, readable by its owner only, and the image resumes", async () => {
    const keys = path.join(testHome(), KEYS_DIR);
    assert.equal(fs.statSync(keys).mode & 0o777, 0o700);
    assert.equal(fs.statSync(path.join(keys, SIGNING_KEY_FILE)).mode & 0o777, 0o600);
    assert.ok(fs.readFileSync(image).subarray(0, 6).equals(IMAGE_MAGIC_PREFIX));
    const r = await ferry(["resume", image]);
    assert.equal(r.status, 3, r.stderr.toString());
  });

  it("an image edited with every CRC recomputed (its preopen pointed at /etc) is refused with ERR_IMAGE_SIGNATURE", async () => {
    const data = tempDir("trust-data");
    try {
      fs.writeFileSync(path.join(data, "in.bin"), Buffer.alloc(4 * 1024 * 1024, 7));
      const img = path.join(dir, "fileproc.img");
      const r = await ferry(["exec", "--suspend-after", "200", "--image", img, "--dir", `${data}:/data`, fileproc, "/data/in.bin", "/data/out.bin"]);
      assert.equal(r.status, 0, r.stderr.toString());
      assert.ok(fs.existsSync(img), "fileproc finished before it could be suspended");
      const sections = splitSections(fs.readFileSync(img)).map((s) =>
        s.kind === SectionKind.wasi ? { ...s, payload: Buffer.from(Buffer.from(s.payload).toString().split(data).join("/etc")) } : s,
      );
      assert.ok(sections.some((s) => s.kind === SectionKind.wasi && Buffer.from(s.payload).includes("/etc")));
      const forged = path.join(dir, "forged.img");
      fs.writeFileSync(forged, buildImage(sections, { keep_signatures: true }));
      assertRefused(await ferry(["resume", forged]), "ERR_IMAGE_SIGNATURE");
    } finally {
      fs.rmSync(data, { recursive: true, force: true });
    }
  });

  it("an image signed under another Ferry home is foreign: ERR_IMAGE_SIGNATURE", async () => {
    const other = tempDir("other-home");
    try {
      const img = path.join(dir, "foreign.img");
      const r = await ferry(["exec", "--suspend-after", "150", "--image", img, compute, ROUNDS], { env: { FERRY_HOME: other } });
      assert.equal(r.status, 0, r.stderr.toString());
      assertRefused(await ferry(["resume", img]), "ERR_IMAGE_SIGNATURE");
      // ...and where it was made, it resumes.
      assert.equal((await ferry(["resume", img], { env: { FERRY_HOME: other } })).status, 0);
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
  });

  it("--encrypt writes an envelope only this home opens; resume --encrypt writes one again; the output is an uninterrupted run's", async () => {
    const first = path.join(dir, "enc1.img");
    const second = path.join(dir, "enc2.img");
    const a = await ferry(["exec", "--suspend-after", "150", "--image", first, "--encrypt", compute, ROUNDS, "3"]);
    assert.equal(a.status, 0, a.stderr.toString());
    assert.equal(fs.statSync(path.join(testHome(), KEYS_DIR, ENCRYPTION_KEY_FILE)).mode & 0o777, 0o600);
    const sealed = fs.readFileSync(first);
    assert.ok(sealed.subarray(0, 8).equals(ENVELOPE_MAGIC), "not an envelope");
    assert.equal(sealed.indexOf(IMAGE_MAGIC_PREFIX), -1, "the plain image shows through");
    const b = await ferry(["resume", "--suspend-after", "150", "--image", second, "--encrypt", first]);
    assert.equal(b.status, 0, b.stderr.toString());
    assert.ok(fs.readFileSync(second).subarray(0, 8).equals(ENVELOPE_MAGIC), "re-encrypted image is not an envelope");
    const c = await ferry(["resume", second]);
    assert.equal(c.status, 3, c.stderr.toString());
    assert.equal(Buffer.concat([a.stdout, b.stdout, c.stdout]).toString(), whole.stdout.toString());
  });

  it("an encrypted image without its key, or changed, is refused with ERR_IMAGE_DECRYPT", async () => {
    const img = path.join(dir, "enc3.img");
    const r = await ferry(["exec", "--suspend-after", "150", "--image", img, "--encrypt", compute, ROUNDS]);
    assert.equal(r.status, 0, r.stderr.toString());
    const other = tempDir("other-home");
    try {
      assertRefused(await ferry(["resume", img], { env: { FERRY_HOME: other } }), "ERR_IMAGE_DECRYPT");
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
    const changed = Buffer.from(fs.readFileSync(img));
    const at = Math.floor(changed.length / 2);
    changed[at] = (changed[at] as number) ^ 0x20;
    const bad = path.join(dir, "enc-bad.img");
    fs.writeFileSync(bad, changed);
    assertRefused(await ferry(["resume", bad]), "ERR_IMAGE_DECRYPT");
  });

  it("--encrypt without --image is a usage error", async () => {
    const r = await ferry(["exec", "--encrypt", compute]);
    assert.equal(r.status, 2);
    assert.match(r.stderr.toString(), /--encrypt goes with/);
  });

  it("a global of the wrong type, signed, is ERR_RESTORE_STATE with status 125, not a silent exit", async () => {
    const bad = resigned(image, path.join(dir, "global.img"), (i) => {
      i.globals = i.globals.map((g) => ({ ...g, type: g.type === "i32" ? "i64" : "i32", bits: 0n }));
    });
    assertRefused(await ferry(["resume", bad]), "ERR_RESTORE_STATE");
  });

  it("a corrupt Asyncify stack, signed, is ERR_RESTORE_STATE with status 125, not a silent exit 13", async () => {
    const bad = resigned(image, path.join(dir, "stack.img"), (i) => {
      i.stack = { ...i.stack, asyncify: i.stack.asyncify.map((b) => b ^ 0x5a) };
    });
    assertRefused(await ferry(["resume", bad]), "ERR_RESTORE_STATE");
  });

  it("a module path that is no regular file of bounded size is refused at once: /dev/zero, a FIFO, a huge file", async () => {
    const fifo = path.join(dir, "fifo.wasm");
    execFileSync("mkfifo", [fifo]);
    const huge = path.join(dir, "huge.wasm");
    fs.writeFileSync(huge, "");
    fs.truncateSync(huge, 300 * 1024 * 1024); // sparse
    const cases: Array<[string, string]> = [
      ["/dev/zero", "ERR_MODULE_NOT_FILE"],
      [fifo, "ERR_MODULE_NOT_FILE"],
      [huge, "ERR_MODULE_TOO_LARGE"],
    ];
    for (const [module_path, code] of cases) {
      const bad = resigned(image, path.join(dir, "module.img"), (i) => {
        i.meta = { ...i.meta, module_path };
      });
      assertRefused(await ferry(["resume", bad], { timeout_ms: 30_000 }), code);
    }
  });
});
