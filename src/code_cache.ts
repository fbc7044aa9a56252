/**
 * Files Ferry keeps to start faster (`~/.cache/ferry/code`): binaryen.js
 * split in two (`instrument/_load.ts`) and V8's code cache of the process
 * worker (`runtime/_worker_code.ts`). Each file has the SHA-256 of its
 * contents in front: a damaged one is never used, and is made again. Losing
 * one costs the next start time, never correctness.
 */
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/** SHA-256 in front of each file kept. */
const DIGEST_BYTES = 32;

/** Where the files are kept: `FERRY_CODE_CACHE_DIR`, else beside the instrumented modules; "" turns it off. */
export function codeCacheDir(): string | null {
  const fromEnv = process.env["FERRY_CODE_CACHE_DIR"];
  if (fromEnv !== undefined) return fromEnv === "" ? null : fromEnv;
  return path.join(os.homedir(), ".cache", "ferry", "code");
}

/** The contents of a file written by {@link writeChecked}, or undefined if it is missing or does not match its digest. */
export function readChecked(file: string): Buffer | undefined {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch {
    // Not made yet (the usual first run): it is written after the load.
    return undefined;
  }
  const data = bytes.subarray(DIGEST_BYTES);
  if (bytes.length <= DIGEST_BYTES || !createHash("sha256").update(data).digest().equals(bytes.subarray(0, DIGEST_BYTES))) return undefined;
  return data;
}

/**
 * Writes `data` behind its digest, through a temporary file renamed into
 * place (a reader sees the old file or the new one, whole); its folder is
 * made if missing, private to this user. False if it could not be written.
 */
export function writeChecked(file: string, data: Uint8Array): boolean {
  const tmp = `${file}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    fs.writeFileSync(tmp, Buffer.concat([createHash("sha256").update(data).digest(), data]), { mode: 0o600 });
    fs.renameSync(tmp, file);
    return true;
  } catch {
    // A read-only or full cache folder costs the next start time, not correctness.
    try {
      fs.rmSync(tmp, { force: true });
    } catch {
      // Not even a folder to look in: nothing was left.
    }
    return false;
  }
}
