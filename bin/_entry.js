// Which code the ferry command runs.
import { bundleIsFresh } from "../dist/src/bundle.js";

/**
 * The bundle `npm run build` makes (scripts/build-cli.mjs: it loads about
 * 60 ms sooner than the ~80 modules `ferry exec` needs) while none of the
 * modules that went into it is newer than it (`bundleIsFresh`); the modules
 * themselves otherwise. `dist` is the URL of the built sources' directory,
 * ending in a slash.
 */
export function cliEntry(dist = new URL("../dist/src/", import.meta.url)) {
  const bundle = new URL("ferry_cli.js", dist);
  return bundleIsFresh(bundle, new URL("ferry_cli.inputs.json", dist), dist) ? bundle : new URL("cli/main.js", dist);
}
