/**
 * The local image keys: made on first use, owner-only, reused, never
 * replaced (commands racing to make one agree on it), refused when others
 * may read them.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { FerryError } from "../errors.js";
import { envelopeKeyId, imageKeyId } from "../image/mod.js";
import { ENCRYPTION_KEY_FILE, KEYS_DIR, SIGNING_KEY_FILE, localEncryptionKey, localEnvelopeKeys, localSigner, localTrust } from "./image_keys.js";

const dirs: string[] = [];
function tempHome(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-keys-"));
  dirs.push(dir);
  return path.join(dir, "home"); // not there yet: the first use makes it
}
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function mode(file: string): number {
  return fs.statSync(file).mode & 0o777;
}

describe("local image keys", () => {
  it("the signing key is made on first use, Ed25519, owner-only, and the same ever after", () => {
    const home = tempHome();
    assert.equal(localTrust(home)(new Uint8Array(32)), undefined, "a home without keys trusts nothing");
    const first = localSigner(home);
    assert.equal(first.key.asymmetricKeyType, "ed25519");
    assert.equal(mode(home), 0o700);
    assert.equal(mode(path.join(home, KEYS_DIR)), 0o700);
    const file = path.join(home, KEYS_DIR, SIGNING_KEY_FILE);
    assert.equal(mode(file), 0o600);
    assert.match(fs.readFileSync(file, "utf8"), /^-----BEGIN PRIVATE KEY-----/);
    const again = localSigner(home);
    assert.deepEqual(imageKeyId(again.key), imageKeyId(first.key));
    // resume trusts exactly that key.
    assert.ok(localTrust(home)(imageKeyId(first.key)) !== undefined);
    assert.equal(fs.readdirSync(path.join(home, KEYS_DIR)).filter((n) => n.endsWith(".tmp")).length, 0, "a temporary file was left");
  });

  it("the encryption key is made on first use, 32 bytes, owner-only, and opens what it sealed", () => {
    const home = tempHome();
    assert.equal(localEnvelopeKeys(home)(new Uint8Array(32)), undefined);
    const key = localEncryptionKey(home);
    assert.equal(key.symmetricKeySize, 32);
    assert.equal(mode(path.join(home, KEYS_DIR, ENCRYPTION_KEY_FILE)), 0o600);
    assert.deepEqual(envelopeKeyId(localEncryptionKey(home)), envelopeKeyId(key));
    assert.ok(localEnvelopeKeys(home)(envelopeKeyId(key)) !== undefined);
  });

  it("commands making the key at once agree on one key", async () => {
    const home = tempHome();
    // Separate processes, as two `ferry exec` would be.
    const script = `import { localSigner } from ${JSON.stringify(new URL("./image_keys.js", import.meta.url).href)};
      import { imageKeyId } from ${JSON.stringify(new URL("../image/mod.js", import.meta.url).href)};
      process.stdout.write(Buffer.from(imageKeyId(localSigner(${JSON.stringify(home)}).key)).toString("hex"));`;
    const ids = await Promise.all(
      [1, 2, 3, 4].map(
        () =>
          new Promise<string>((resolve, reject) => {
            const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
            let out = "";
            child.stdout.on("data", (c: Buffer) => (out += c.toString()));
            child.on("error", reject);
            child.on("close", () => resolve(out));
          }),
      ),
    );
    assert.equal(new Set(ids).size, 1, `different keys: ${ids.join(" ")}`);
    assert.equal(ids[0]?.length, 64);
  });

  it("a key file others may read, or that is not a key, is refused with ERR_KEY_FILE", () => {
    const home = tempHome();
    localSigner(home);
    const file = path.join(home, KEYS_DIR, SIGNING_KEY_FILE);
    fs.chmodSync(file, 0o644);
    for (const load of [() => localSigner(home), () => localTrust(home)]) {
      assert.throws(load, (e: unknown) => e instanceof FerryError && e.code === "ERR_KEY_FILE" && /chmod 600/.test(e.message));
    }
    fs.chmodSync(file, 0o600);
    fs.writeFileSync(file, "not a key");
    assert.throws(() => localSigner(home), { code: "ERR_KEY_FILE" });
    const enc = path.join(home, KEYS_DIR, ENCRYPTION_KEY_FILE);
    fs.writeFileSync(enc, "c2hvcnQ=\n", { mode: 0o600 });
    assert.throws(() => localEncryptionKey(home), { code: "ERR_KEY_FILE" });
  });
});
