/**
 * Credentials on disk. A credential directory holds `ca.pem` (the cluster
 * CA), `cert.pem` and `key.pem` (its holder's certificate and private key);
 * a CA directory holds `ca.pem` and `ca-key.pem`. Keys are written 0600 in
 * directories made 0700, atomically (a crash never leaves half a key).
 */
import fs from "node:fs";
import path from "node:path";
import { FerryError } from "../errors.js";
import { ferryHome } from "../home.js";
import type { Credential, KeyPairPem } from "./pki.js";

/** Largest PEM file read (a certificate chain is a few KiB). */
const PEM_FILE_BYTES_MAX = 64 * 1024;

/** Where the CLI finds its credential: $FERRY_CREDENTIALS, else the Ferry home's `client/`. */
export function clientCredentialDir(env: NodeJS.ProcessEnv = process.env): string {
  const given = env["FERRY_CREDENTIALS"];
  return given !== undefined && given !== "" ? path.resolve(given) : path.join(ferryHome(env), "client");
}

/** Where `ferry up` keeps the CA of the local cluster it starts: the Ferry home's `cluster/`. */
export function localAuthorityDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(ferryHome(env), "cluster");
}

function writePrivate(file: string, text: string, mode: number): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text, { mode });
  fs.chmodSync(tmp, mode);
  fs.renameSync(tmp, file);
}

/** Reads a PEM file, with an error that names it. */
export function readPem(file: string): string {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (err: unknown) {
    throw new FerryError("ERR_TLS_CONFIG", `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (!stat.isFile() || stat.size > PEM_FILE_BYTES_MAX) throw new FerryError("ERR_TLS_CONFIG", `${file} is not a PEM file of at most ${PEM_FILE_BYTES_MAX} bytes`);
  return fs.readFileSync(file, "utf8");
}

/** Writes a credential into `dir` (key 0600). */
export function writeCredential(dir: string, credential: Credential): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dir, 0o700);
  writePrivate(path.join(dir, "key.pem"), credential.key_pem, 0o600);
  writePrivate(path.join(dir, "cert.pem"), credential.cert_pem, 0o644);
  writePrivate(path.join(dir, "ca.pem"), credential.ca_pem, 0o644);
}

/** Whether `dir` holds a whole credential. */
export function hasCredential(dir: string): boolean {
  return ["ca.pem", "cert.pem", "key.pem"].every((f) => fs.existsSync(path.join(dir, f)));
}

/** Reads the credential in `dir`. */
export function readCredential(dir: string): Credential {
  return { ca_pem: readPem(path.join(dir, "ca.pem")), cert_pem: readPem(path.join(dir, "cert.pem")), key_pem: readPem(path.join(dir, "key.pem")) };
}

/** Writes a CA into `dir` (its key 0600). */
export function writeAuthority(dir: string, ca: KeyPairPem): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dir, 0o700);
  writePrivate(path.join(dir, "ca-key.pem"), ca.key_pem, 0o600);
  writePrivate(path.join(dir, "ca.pem"), ca.cert_pem, 0o644);
}

/** The CA in `dir`, or null if there is none. */
export function readAuthority(dir: string): KeyPairPem | null {
  if (!fs.existsSync(path.join(dir, "ca-key.pem"))) return null;
  return { cert_pem: readPem(path.join(dir, "ca.pem")), key_pem: readPem(path.join(dir, "ca-key.pem")) };
}
