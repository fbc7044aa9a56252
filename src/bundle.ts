/**
 * Whether a bundle `npm run build` made may be run in place of the modules
 * that went into it (scripts/build-worker.mjs, scripts/build-cli.mjs): it
 * exists, and none of the inputs its manifest lists (`{inputs: [...]}`,
 * paths relative to `base`) is newer than it. So a `tsc` without the
 * bundling step, or a module rebuilt since, never runs stale code.
 */
import fs from "node:fs";

export function bundleIsFresh(bundle: URL, manifest: URL, base: URL): boolean {
  try {
    const made_ms = fs.statSync(bundle).mtimeMs;
    const { inputs } = JSON.parse(fs.readFileSync(manifest, "utf8")) as { inputs: string[] };
    for (const input of inputs) if (fs.statSync(new URL(input, base)).mtimeMs > made_ms) return false;
    return true;
  } catch {
    // No bundle, an input gone or a manifest that does not parse: the bundle only saves time, the modules are always right.
    return false;
  }
}
