/**
 * Headless Chromium for the dashboard's browser tests (Debian's `chromium`,
 * driven by playwright-core; nothing is downloaded).
 *
 * Chromium is told to trust the cluster's CA by its public key
 * (`--ignore-certificate-errors-spki-list`, honoured with a `--user-data-dir`
 * of the test's own): only certificates chaining to this CA pass, as they
 * would with the CA imported into the browser. No certificate error is
 * ignored wholesale.
 */
import { createHash, X509Certificate } from "node:crypto";
import fs from "node:fs";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { testAuthority } from "./_cluster.js";
import { tempDir } from "./_helpers.js";

/** Where Debian puts Chromium. */
export const CHROMIUM = "/usr/bin/chromium";

/** Whether Chromium is installed here (the browser tests are skipped without it). */
export const have_chromium = fs.existsSync(CHROMIUM);

/** base64(SHA-256(SPKI)) of a certificate's public key: what Chromium's SPKI list takes. */
export function spkiHash(cert_pem: string): string {
  const der = new X509Certificate(cert_pem).publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(der).digest("base64");
}

/** A browser of its own (a fresh profile) that trusts the test CA's certificates only; `close` removes the profile too. */
export async function openBrowser(): Promise<{ context: BrowserContext; page: Page; close(): Promise<void> }> {
  const ca = await testAuthority();
  const profile = tempDir("chromium");
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1400, height: 1000 },
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        `--ignore-certificate-errors-spki-list=${spkiHash(ca.cert_pem)}`,
      ],
    });
  } catch (err: unknown) {
    fs.rmSync(profile, { recursive: true, force: true });
    throw err;
  }
  const page = context.pages()[0] ?? (await context.newPage());
  return {
    context,
    page,
    async close() {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}
