/**
 * The error registry: well-formed, matched by docs/cluster.md's error table
 * row for row, and complete (every `"ERR_*"` the sources and the native
 * addon spell is registered, so no code escapes the type check by being
 * built elsewhere).
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { ERROR_CODES, isErrorCode, knownCode, statusOf } from "./error_codes.js";
import { FerryError } from "./errors.js";

/** The repository root (this runs from dist/src). */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

function files(dir: string, match: RegExp): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...files(full, match));
    else if (match.test(entry.name)) out.push(full);
  }
  return out;
}

describe("error registry", () => {
  it("gives every code an error status and a one-line meaning", () => {
    for (const [code, info] of Object.entries(ERROR_CODES)) {
      assert.match(code, /^ERR_[A-Z0-9_]+$/);
      assert.ok(Number.isInteger(info.status) && info.status >= 400 && info.status <= 599, `${code}: status ${info.status}`);
      assert.ok(info.meaning.length > 0 && !info.meaning.includes("\n") && !info.meaning.includes("|"), `${code}: meaning ${JSON.stringify(info.meaning)}`);
    }
  });

  it("reserves the codes of the TLS and image-signing work with their statuses", () => {
    const want = { ERR_UNAUTHENTICATED: 401, ERR_FORBIDDEN: 403, ERR_PEER_UNAUTHENTICATED: 502, ERR_TOKEN: 401, ERR_TLS_CONFIG: 500, ERR_IMAGE_SIGNATURE: 502, ERR_IMAGE_DECRYPT: 400, ERR_NO_AUTHORITY: 409, ERR_NO_CREDENTIALS: 401 };
    for (const [code, status] of Object.entries(want)) {
      assert.ok(isErrorCode(code), code);
      assert.equal(statusOf(code), status, code);
    }
  });

  it("lets only registered codes pass for themselves", () => {
    assert.equal(knownCode("ERR_QUOTA", "ERR_PEER"), "ERR_QUOTA");
    for (const outside of ["ERR_NOPE", "toString", "__proto__", "constructor", 7, null, undefined]) assert.equal(knownCode(outside, "ERR_PEER"), "ERR_PEER");
    assert.equal(new FerryError("ERR_FORBIDDEN", "no").code, "ERR_FORBIDDEN");
  });

  it("is what docs/cluster.md's error table says, row for row", () => {
    const doc = fs.readFileSync(path.join(ROOT, "docs", "cluster.md"), "utf8");
    const section = doc.slice(doc.indexOf("\n## Errors"));
    assert.ok(section.length > 20, "docs/cluster.md has an Errors section");
    const rows = new Map<string, { status: number; meaning: string }>();
    for (const m of section.matchAll(/^\| `(ERR_[A-Z0-9_]+)` \| (\d{3}) \| (.*) \|$/gm)) {
      assert.ok(!rows.has(m[1] as string), `${m[1]} is listed twice`);
      rows.set(m[1] as string, { status: Number(m[2]), meaning: m[3] as string });
    }
    for (const [code, info] of Object.entries(ERROR_CODES)) {
      assert.deepEqual(rows.get(code), { status: info.status, meaning: info.meaning }, `docs/cluster.md's row for ${code}`);
    }
    for (const code of rows.keys()) assert.ok(isErrorCode(code), `docs/cluster.md lists ${code}, which is not registered`);
  });

  it("holds every ERR_ code the sources and the native addon spell", () => {
    const sources = [...files(path.join(ROOT, "src"), /(?<!_test)\.ts$/), ...files(path.join(ROOT, "native"), /\.c$/)];
    const missing = new Set<string>();
    for (const file of sources) {
      for (const m of fs.readFileSync(file, "utf8").matchAll(/"(ERR_[A-Z0-9_]+)"/g)) {
        if (!isErrorCode(m[1])) missing.add(`${m[1]} (${path.relative(ROOT, file)})`);
      }
    }
    assert.deepEqual([...missing], []);
  });
});
