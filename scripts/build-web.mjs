#!/usr/bin/env node
// Builds the dashboard's page (web/) into dist/web/: one JavaScript bundle
// (Preact included) made by esbuild, the style sheet and the HTML shell. No
// CDN: a node serves these files itself (src/node/dashboard.ts).
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const out = path.join(root, "dist", "web");
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [path.join(root, "web", "main.tsx")],
  outfile: path.join(out, "app.js"),
  bundle: true,
  format: "esm",
  target: ["es2022"],
  minify: true,
  sourcemap: true,
  jsx: "automatic",
  jsxImportSource: "preact",
  legalComments: "linked",
  logLevel: "warning",
});
for (const file of ["index.html", "app.css"]) copyFileSync(path.join(root, "web", file), path.join(out, file));
