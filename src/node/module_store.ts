/**
 * The node's content-addressed module store: a module is kept under the
 * SHA-256 of its bytes, so a node never stores or ships one twice.
 */
import fs from "node:fs";
import path from "node:path";
import { FerryError } from "../errors.js";
import { moduleHash } from "../instrument/mod.js";

/** Largest module a node accepts (wasm32 code of any real program fits). */
export const MODULE_BYTES_MAX = 256 * 1024 * 1024;

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Modules on disk under `dir`. */
export class ModuleStore {
  readonly #dir: string;

  constructor(dir: string) {
    this.#dir = dir;
    fs.mkdirSync(dir, { recursive: true });
  }

  #file(sha256: string): string {
    if (!SHA256_HEX.test(sha256)) throw new FerryError("ERR_MODULE_HASH", `not a SHA-256: ${JSON.stringify(sha256)}`);
    return path.join(this.#dir, `${sha256}.wasm`);
  }

  /** Whether the module is here. */
  has(sha256: string): boolean {
    return fs.existsSync(this.#file(sha256));
  }

  /** Stores `bytes`, which must hash to `sha256`. */
  put(sha256: string, bytes: Uint8Array): void {
    const file = this.#file(sha256);
    if (bytes.length > MODULE_BYTES_MAX) throw new FerryError("ERR_MODULE_TOO_LARGE", `module of ${bytes.length} bytes exceeds ${MODULE_BYTES_MAX}`);
    const actual = moduleHash(bytes);
    if (actual !== sha256) throw new FerryError("ERR_MODULE_HASH", `bytes hash to ${actual}, not ${sha256}`);
    if (fs.existsSync(file)) return;
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, bytes);
    fs.renameSync(tmp, file);
  }

  /** The module's bytes; throws ERR_MODULE_MISSING if absent. */
  get(sha256: string): Uint8Array {
    try {
      return fs.readFileSync(this.#file(sha256));
    } catch (err: unknown) {
      throw new FerryError("ERR_MODULE_MISSING", `module ${sha256} is not on this node`, { cause: err });
    }
  }
}
