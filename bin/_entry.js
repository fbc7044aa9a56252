// Which code the ferry command runs.
import { readFileSync, statSync } from "node:fs";

/**
 * The bundle `npm run build` makes (scripts/build-cli.mjs: it loads about
 * 60 ms sooner than the ~80 modules `ferry exec` needs) while none of the
 * modules that went into it is newer than it; the modules themselves
 * otherwise (a `tsc` without that step, or a module rebuilt since).
 * `dist` is the URL of the built sources' directory, ending in a slash.
 */
export function cliEntry(dist = new URL("../dist/src/", import.meta.url)) {
  const modules = new URL("cli/main.js", dist);
  try {
    const bundle = new URL("ferry_cli.js", dist);
    const made_ms = statSync(bundle).mtimeMs;
    const { inputs } = JSON.parse(readFileSync(new URL("ferry_cli.inputs.json", dist), "utf8"));
    for (const input of inputs) if (statSync(new URL(input, dist)).mtimeMs > made_ms) return modules;
    return bundle;
  } catch {
    // No bundle, an input gone or a manifest that does not parse: the bundle only saves time, the modules are always right.
    return modules;
  }
}
