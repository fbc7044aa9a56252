/**
 * The local keys of `ferry exec` and `ferry resume`, kept in the Ferry home
 * (`src/home.ts`) under `keys/`: an Ed25519 key that signs the images this
 * user writes (and the only one `resume` trusts), and an AES-256 key that
 * encrypts them at rest when asked. Each is created on first use, readable by
 * its owner only, and never replaced once it exists: images signed or
 * encrypted with it would become unreadable.
 */
import { createPrivateKey, createSecretKey, generateKeyPairSync, randomBytes, randomUUID, type KeyObject } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { KeyFileError } from "../errors.js";
import { ENVELOPE_KEY_BYTES, envelopeKeyId, trustKeys, type EnvelopeKeys, type ImageSigner, type ImageTrust } from "../image/mod.js";

/** Folder of the keys inside the Ferry home. */
export const KEYS_DIR = "keys";
/** The signing key: PKCS#8 PEM. */
export const SIGNING_KEY_FILE = "image-signing.pem";
/** The encryption key: its 32 bytes in base64, one line. */
export const ENCRYPTION_KEY_FILE = "image-encryption.key";

/** Owner only: the keys are credentials. */
const DIR_MODE = 0o700;
const FILE_MODE = 0o600;
/** Permission bits of group and others: a key file with any of them set is refused, as ssh refuses such a private key. */
const SHARED_MODE_BITS = 0o077;
/** Largest key file read: a PEM Ed25519 or P-256 key is a few hundred bytes. */
const KEY_FILE_BYTES_MAX = 64 * 1024;

/** Whether an I/O error says the file is not there. */
function missing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === "ENOENT";
}

function keysDir(home: string): string {
  return path.join(home, KEYS_DIR);
}

/** Creates the home and its keys folder (owner only) if they are missing. */
function ensureKeysDir(home: string): string {
  const dir = keysDir(home);
  try {
    fs.mkdirSync(home, { recursive: true, mode: DIR_MODE });
    fs.mkdirSync(dir, { recursive: true, mode: DIR_MODE });
    // mkdir leaves an existing folder's mode alone; this one holds only our keys.
    if ((fs.statSync(dir).mode & SHARED_MODE_BITS) !== 0) fs.chmodSync(dir, DIR_MODE);
  } catch (cause: unknown) {
    throw new KeyFileError(`cannot create the key folder ${dir}: ${(cause as Error).message}`, { cause });
  }
  return dir;
}

/** The text of a key file, or undefined if there is none; refused if others may read it. */
function readKeyFile(file: string): string | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (cause: unknown) {
    if (missing(cause)) return undefined;
    throw new KeyFileError(`cannot open key file ${file}: ${(cause as Error).message}`, { cause });
  }
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new KeyFileError(`key file ${file} is not a regular file`);
    if ((stat.mode & SHARED_MODE_BITS) !== 0) {
      throw new KeyFileError(`key file ${file} may be read by other users (mode ${(stat.mode & 0o777).toString(8)}): run chmod 600 ${file}`);
    }
    if (stat.size > KEY_FILE_BYTES_MAX) throw new KeyFileError(`key file ${file} is ${stat.size} bytes; a key is far smaller`);
    const bytes = Buffer.alloc(stat.size);
    let filled = 0;
    while (filled < bytes.length) {
      const n = fs.readSync(fd, bytes, filled, bytes.length - filled, filled);
      if (n === 0) break;
      filled += n;
    }
    return bytes.subarray(0, filled).toString("utf8");
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Writes a new key file unless one exists. The key goes to a private temporary
 * file first and is linked into place, which fails if the name exists: two
 * commands creating the key at once agree on one, and no reader ever sees a
 * half-written key. Returns the key file's text (the winner's).
 */
function createKeyFile(dir: string, name: string, text: string): string {
  const file = path.join(dir, name);
  const tmp = path.join(dir, `.${name}.${randomUUID()}.tmp`);
  try {
    const fd = fs.openSync(tmp, "wx", FILE_MODE);
    try {
      fs.writeSync(fd, text);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    try {
      fs.linkSync(tmp, file);
    } catch (err: unknown) {
      // Another command created it first: use that one.
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
  } catch (cause: unknown) {
    throw new KeyFileError(`cannot create key file ${file}: ${(cause as Error).message}`, { cause });
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  const written = readKeyFile(file);
  if (written === undefined) throw new KeyFileError(`key file ${file} vanished as it was created`);
  return written;
}

function parseSigningKey(file: string, pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (cause: unknown) {
    throw new KeyFileError(`key file ${file} is not a PEM private key`, { cause });
  }
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (key.asymmetricKeyType !== "ed25519" && !(key.asymmetricKeyType === "ec" && curve === "prime256v1")) {
    throw new KeyFileError(`key file ${file} holds a ${key.asymmetricKeyType ?? "?"} key; images are signed with Ed25519 or ECDSA P-256`);
  }
  return key;
}

function parseEncryptionKey(file: string, text: string): KeyObject {
  const bytes = Buffer.from(text.trim(), "base64");
  if (bytes.length !== ENVELOPE_KEY_BYTES || bytes.toString("base64") !== text.trim()) {
    throw new KeyFileError(`key file ${file} does not hold ${ENVELOPE_KEY_BYTES} bytes in base64`);
  }
  return createSecretKey(bytes);
}

/** The local signing key, created (Ed25519) if there is none yet. */
export function localSigner(home: string): ImageSigner {
  const file = path.join(keysDir(home), SIGNING_KEY_FILE);
  let pem = readKeyFile(file);
  if (pem === undefined) {
    const fresh = generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    pem = createKeyFile(ensureKeysDir(home), SIGNING_KEY_FILE, fresh);
  }
  return { key: parseSigningKey(file, pem) };
}

/**
 * What `ferry resume` trusts: the local signing key and nothing else; nothing
 * at all where no key was ever created (no image was signed here).
 */
export function localTrust(home: string): ImageTrust {
  const file = path.join(keysDir(home), SIGNING_KEY_FILE);
  const pem = readKeyFile(file);
  return pem === undefined ? () => undefined : trustKeys([parseSigningKey(file, pem)]);
}

/** The local encryption key, created (32 random bytes) if there is none yet. */
export function localEncryptionKey(home: string): KeyObject {
  const file = path.join(keysDir(home), ENCRYPTION_KEY_FILE);
  let text = readKeyFile(file);
  text ??= createKeyFile(ensureKeysDir(home), ENCRYPTION_KEY_FILE, `${randomBytes(ENVELOPE_KEY_BYTES).toString("base64")}\n`);
  return parseEncryptionKey(file, text);
}

/** The keys `ferry resume` opens encrypted images with: the local one, if it exists. */
export function localEnvelopeKeys(home: string): EnvelopeKeys {
  const file = path.join(keysDir(home), ENCRYPTION_KEY_FILE);
  const text = readKeyFile(file);
  if (text === undefined) return () => undefined;
  const key = parseEncryptionKey(file, text);
  const id = Buffer.from(envelopeKeyId(key));
  return (key_id) => (id.equals(key_id) ? key : undefined);
}
