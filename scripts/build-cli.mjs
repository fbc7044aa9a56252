#!/usr/bin/env node
// Bundles the ferry command (dist/src/cli/main.js and every module its
// commands import) into dist/src/ferry_cli.js and chunks beside it, one per
// group of commands (esbuild's code splitting: `ferry exec` loads the exec
// command's code, not the node daemon's), with the list of what went into
// them in dist/src/ferry_cli.inputs.json. Node's ES module loader takes about
// a millisecond per module here: `ferry exec` loads ~80 of Ferry's, and one
// bundle of them starts about 60 ms sooner (issue 14, start-up). bin/ferry.js
// runs the bundle only while no input is newer than it, so a `tsc` without
// this step never runs stale code.
//
// Modules that find files from their own location (`new URL("./x.js",
// import.meta.url)`: worker scripts, the native addon, the dashboard's page)
// keep finding them: each `import.meta.url` is rewritten to the module's own
// URL, computed from the bundle's, which sits in dist/src with its chunks.
import { build } from "esbuild";
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const src = path.join(root, "dist", "src");
for (const f of readdirSync(src)) if (/^ferry_cli[.-]/.test(f)) rmSync(path.join(src, f));

// `import.meta.url` as an expression, not inside a string or a template (src/instrument/_load.ts names it in both).
const META_URL = /(?<![\w$."'`])import\.meta\.url(?![\w$"'`])/g;
const ownUrl = {
  name: "own-import-meta-url",
  setup(b) {
    b.onLoad({ filter: /\.js$/ }, (args) => {
      const text = readFileSync(args.path, "utf8");
      if (!args.path.startsWith(src + path.sep) || !text.includes("import.meta.url")) return { contents: text, loader: "js" };
      const own = "./" + path.relative(src, args.path).split(path.sep).join("/");
      return { contents: text.replace(META_URL, `new URL(${JSON.stringify(own)}, import.meta.url).href`), loader: "js" };
    });
  },
};

const result = await build({
  entryPoints: [path.join(src, "cli", "main.js")],
  outdir: src,
  entryNames: "ferry_cli",
  chunkNames: "ferry_cli-[hash]",
  bundle: true,
  splitting: true,
  platform: "node",
  format: "esm",
  target: ["node20"],
  // npm packages load from node_modules as before.
  packages: "external",
  metafile: true,
  plugins: [ownUrl],
  logLevel: "warning",
});
// Inputs relative to dist/src, where bin/ferry.js looks for them.
const inputs = Object.keys(result.metafile.inputs).map((p) => path.relative(src, path.join(root, p)));
writeFileSync(path.join(src, "ferry_cli.inputs.json"), JSON.stringify({ inputs }) + "\n");
