/**
 * The cluster's own certificate authority (DESIGN.md: "only authenticated
 * nodes and clients are served"). One CA per cluster signs a certificate
 * for every node and every client; a certificate says who its holder is in
 * a URI subject alternative name, `ferry://node/NAME`, `ferry://client/NAME`
 * or `ferry://scrape/NAME`, so a node's name is bound to its key.
 *
 * Keys are ECDSA P-256: every TLS stack speaks it, and signing is fast
 * enough that a join or a node start never waits on it.
 */
import { X509Certificate as NodeX509, createHash, randomBytes, webcrypto } from "node:crypto";
// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata API loaded first.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { FerryError } from "../errors.js";

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const KEY_ALGORITHM = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGNING_ALGORITHM = { name: "ECDSA", hash: "SHA-256" } as const;

/** A CA lives ten years: a cluster outlives its machines, and there is no rotation yet. */
const CA_LIFETIME_DAYS = 3650;
/** Node and client certificates live five years (no revocation list: remove a member by re-keying the cluster). */
const LEAF_LIFETIME_DAYS = 1825;
/** Certificates start a little in the past, so a peer whose clock is slightly behind accepts them. */
const CLOCK_SKEW_MS = 5 * 60_000;

/**
 * What a certificate's holder is: a node, a client (a person or a script,
 * which may use the whole control API), or a scraper (a monitoring system,
 * which may read `GET /metrics` and nothing else).
 */
export type Role = "node" | "client" | "scrape";

/** Who holds a certificate: its role and name. */
export interface Identity {
  role: Role;
  name: string;
}

/** A certificate and its private key, PEM. */
export interface KeyPairPem {
  cert_pem: string;
  key_pem: string;
}

/** A member's credential: its certificate and key, and the cluster CA that signed it. */
export interface Credential extends KeyPairPem {
  ca_pem: string;
}

/** The URI that names a holder in its certificate. */
export function identityUri(id: Identity): string {
  return `ferry://${id.role}/${id.name}`;
}

const IDENTITY_URI = /^ferry:\/\/(node|client|scrape)\/([A-Za-z0-9_.@-]{1,64})$/;

/** Names a client or node may have in a certificate. */
export const IDENTITY_NAME = /^[A-Za-z0-9_.@-]{1,64}$/;

/**
 * The identity in a certificate's subject alternative names, as Node
 * prints them (`URI:ferry://node/n1, IP Address:127.0.0.1`); null when it
 * names none or more than one.
 */
export function identityFromAltNames(altnames: string | undefined): Identity | null {
  if (altnames === undefined) return null;
  const found: Identity[] = [];
  for (const part of altnames.split(", ")) {
    if (!part.startsWith("URI:")) continue;
    const m = IDENTITY_URI.exec(part.slice(4));
    if (m !== null) found.push({ role: m[1] as Role, name: m[2] as string });
  }
  return found.length === 1 ? (found[0] as Identity) : null;
}

function pem(label: string, der: ArrayBuffer): string {
  const b64 = Buffer.from(der).toString("base64");
  return `-----BEGIN ${label}-----\n${(b64.match(/.{1,64}/g) ?? []).join("\n")}\n-----END ${label}-----\n`;
}

function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] as number) & 0x7f; // positive, as DER integers must be for serials
  return bytes.toString("hex");
}

async function newKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ["sign", "verify"])) as CryptoKeyPair;
}

async function exportKey(key: CryptoKey): Promise<string> {
  return pem("PRIVATE KEY", await webcrypto.subtle.exportKey("pkcs8", key));
}

async function importKey(key_pem: string): Promise<CryptoKey> {
  const body = key_pem.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, "");
  try {
    return await webcrypto.subtle.importKey("pkcs8", Buffer.from(body, "base64"), KEY_ALGORITHM, true, ["sign"]);
  } catch (err: unknown) {
    throw new FerryError("ERR_TLS_CONFIG", "the CA key is not an ECDSA P-256 private key in PEM", { cause: err });
  }
}

function validity(days: number): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  return { notBefore: new Date(now - CLOCK_SKEW_MS), notAfter: new Date(now + days * 86_400_000) };
}

/** Creates a new cluster CA named `cluster`. */
export async function createAuthority(cluster: string): Promise<KeyPairPem> {
  const keys = await newKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=Ferry cluster CA ${cluster.replace(/[,=+<>#;"\\]/g, "_")}`,
    ...validity(CA_LIFETIME_DAYS),
    keys,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert_pem: cert.toString("pem") + "\n", key_pem: await exportKey(keys.privateKey) };
}

/** What a new certificate is for. */
export interface IssueRequest extends Identity {
  /** Host names and IP addresses the holder answers on (nodes), for tools that check them. */
  hosts?: readonly string[];
  /** The holder's public key (SPKI, DER), when it made its own key pair; else a key pair is made here. */
  public_key_der?: Uint8Array;
}

/** Signs a certificate for a node or a client with the cluster CA. */
export async function issue(authority: KeyPairPem, request: IssueRequest): Promise<{ cert_pem: string; key_pem: string | null }> {
  if (!IDENTITY_NAME.test(request.name)) throw new FerryError("ERR_BAD_REQUEST", `bad name ${JSON.stringify(request.name)} for a certificate`);
  const ca = new x509.X509Certificate(authority.cert_pem);
  const signingKey = await importKey(authority.key_pem);
  let keys: CryptoKeyPair | null = null;
  let publicKey: CryptoKey;
  if (request.public_key_der !== undefined) {
    try {
      publicKey = await webcrypto.subtle.importKey("spki", request.public_key_der, KEY_ALGORITHM, true, ["verify"]);
    } catch (err: unknown) {
      throw new FerryError("ERR_BAD_REQUEST", "the public key is not an ECDSA P-256 key (SPKI, DER)", { cause: err });
    }
  } else {
    keys = await newKeys();
    publicKey = keys.publicKey;
  }
  const names: x509.JsonGeneralName[] = [{ type: "url", value: identityUri(request) }];
  for (const host of request.hosts ?? []) names.push({ type: /^[0-9.]+$|:/.test(host) ? "ip" : "dns", value: host });
  const usages = request.role === "node" ? [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth] : [x509.ExtendedKeyUsage.clientAuth];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${request.name}, OU=${request.role}`,
    issuer: ca.subject,
    ...validity(LEAF_LIFETIME_DAYS),
    publicKey,
    signingKey,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension(usages),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.AuthorityKeyIdentifierExtension.create(ca),
    ],
  });
  return { cert_pem: cert.toString("pem") + "\n", key_pem: keys === null ? null : await exportKey(keys.privateKey) };
}

/** A new ECDSA P-256 key pair: the private key as PEM, the public one as SPKI DER (a joiner keeps its key to itself). */
export async function newKeyPair(): Promise<{ key_pem: string; public_key_der: Uint8Array }> {
  const keys = await newKeys();
  return { key_pem: await exportKey(keys.privateKey), public_key_der: new Uint8Array(await webcrypto.subtle.exportKey("spki", keys.publicKey)) };
}

/** SHA-256 of a certificate's DER, hex: how a token names the CA a joiner must find. */
export function fingerprint(cert: string | Uint8Array): string {
  const der = typeof cert === "string" ? new NodeX509(cert).raw : cert;
  return createHash("sha256").update(der).digest("hex");
}

/** The identity a PEM certificate names, after checking that `ca_pem` signed it and it is in date. */
export function certificateIdentity(cert_pem: string, ca_pem: string): Identity {
  let cert: NodeX509;
  let ca: NodeX509;
  try {
    cert = new NodeX509(cert_pem);
    ca = new NodeX509(ca_pem);
  } catch (err: unknown) {
    throw new FerryError("ERR_TLS_CONFIG", "not a PEM certificate", { cause: err });
  }
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) throw new FerryError("ERR_TLS_CONFIG", "the certificate was not signed by this cluster's CA");
  const now = Date.now();
  if (Date.parse(cert.validFrom) > now + CLOCK_SKEW_MS || Date.parse(cert.validTo) < now) throw new FerryError("ERR_TLS_CONFIG", `the certificate is valid from ${cert.validFrom} to ${cert.validTo} only`);
  const id = identityFromAltNames(cert.subjectAltName);
  if (id === null) throw new FerryError("ERR_TLS_CONFIG", "the certificate names no Ferry node or client");
  return id;
}
