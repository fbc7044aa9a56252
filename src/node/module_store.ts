/**
 * The node's content-addressed module store: a module is kept under the
 * SHA-256 of its bytes, so a node never stores or ships one twice.
 */
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { FerryError } from "../errors.js";

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Modules on disk under `dir`. */
export class ModuleStore {
  readonly #dir: string;

  constructor(dir: string) {
    this.#dir = dir;
    fs.mkdirSync(dir, { recursive: true });
    // Uploads cut short by a stop or a crash: never complete, never used.
    for (const name of fs.readdirSync(dir)) if (name.endsWith(".tmp")) fs.rmSync(path.join(dir, name), { force: true });
  }

  #file(sha256: string): string {
    if (!SHA256_HEX.test(sha256)) throw new FerryError("ERR_MODULE_HASH", `not a SHA-256: ${JSON.stringify(sha256)}`);
    return path.join(this.#dir, `${sha256}.wasm`);
  }

  /** Whether the module is here. */
  has(sha256: string): boolean {
    return fs.existsSync(this.#file(sha256));
  }

  /**
   * Stores a module as it streams in: written to a temporary file while it is
   * hashed, never held in memory whole, and kept only if it is at most
   * `max_bytes` and hashes to `sha256`; the temporary file is removed
   * otherwise. Throws ERR_MODULE_TOO_LARGE as soon as `max_bytes` is passed
   * (the rest is not read), ERR_MODULE_HASH. Resolves true if the module is
   * new here.
   */
  async putStream(sha256: string, chunks: AsyncIterable<Uint8Array>, max_bytes: number): Promise<boolean> {
    const file = this.#file(sha256);
    const tmp = `${file}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
    const hash = createHash("sha256");
    const out = await fs.promises.open(tmp, "wx");
    let total = 0;
    try {
      for await (const chunk of chunks) {
        total += chunk.length;
        if (total > max_bytes) throw new FerryError("ERR_MODULE_TOO_LARGE", `module is larger than the ${max_bytes} bytes this node accepts`);
        hash.update(chunk);
        await out.write(chunk);
      }
      await out.close();
      const actual = hash.digest("hex");
      if (actual !== sha256) throw new FerryError("ERR_MODULE_HASH", `bytes hash to ${actual}, not ${sha256}`);
      if (fs.existsSync(file)) {
        await fs.promises.rm(tmp, { force: true });
        return false;
      }
      await fs.promises.rename(tmp, file);
      return true;
    } catch (err: unknown) {
      await out.close().catch(() => {
        // Closed already (the failure came after the close).
      });
      await fs.promises.rm(tmp, { force: true });
      throw err;
    }
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
