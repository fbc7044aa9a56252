/**
 * How `ferry node start` and `ferry up` come by a node's credential: given
 * files, a join token, a new cluster (`--init`), what an earlier start left
 * in the data directory, or `ferry up`'s local CA.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { FerryError } from "../errors.js";
import { redeemToken } from "../node/mod.js";
import {
  ClusterTls,
  createAuthority,
  fingerprint,
  hasCredential,
  issue,
  newKeyPair,
  parseToken,
  readAuthority,
  readCredential,
  readPem,
  writeAuthority,
  writeCredential,
  type KeyPairPem,
} from "../trust/mod.js";
import { UsageError } from "./_args.js";

/** Where a node keeps its credential and, if it holds it, the cluster CA. */
export function nodeTlsDirs(data_dir: string): { credential: string; authority: string } {
  return { credential: path.join(data_dir, "tls"), authority: path.join(data_dir, "ca") };
}

/** What a node starts with. */
export interface NodeIdentity {
  tls: ClusterTls;
  authority: KeyPairPem | null;
  /** Peers learned while joining. */
  peers: string[];
  /** Whether it joined just now (its peers do not know it yet). */
  joined: boolean;
  /** What happened, for the operator. */
  note: string;
}

/** The options of `ferry node start` that say where the credential comes from. */
export interface IdentityOptions {
  name: string;
  data_dir: string;
  /** Where the node listens (its certificate names the host). */
  host: string;
  ca?: string;
  cert?: string;
  key?: string;
  ca_key?: string;
  join?: string;
  init: boolean;
}

/** Resolves a node's credential from its options (see the module comment). */
export async function nodeIdentity(o: IdentityOptions): Promise<NodeIdentity> {
  const dirs = nodeTlsDirs(o.data_dir);
  const files = [o.ca, o.cert, o.key].filter((f) => f !== undefined).length;
  const ways = [files > 0, o.join !== undefined, o.init].filter(Boolean).length;
  if (ways > 1) throw new UsageError("give one of --ca/--cert/--key, --join TOKEN or --init");
  if (files > 0 && files < 3) throw new UsageError("--ca, --cert and --key go together");
  const authorityFrom = (ca_pem: string): KeyPairPem | null => {
    const a = o.ca_key !== undefined ? { cert_pem: ca_pem, key_pem: readPem(o.ca_key) } : readAuthority(dirs.authority);
    if (a !== null && fingerprint(a.cert_pem) !== fingerprint(ca_pem)) throw new FerryError("ERR_TLS_CONFIG", "the CA key given is not the key of this node's cluster CA");
    return a;
  };
  if (files === 3) {
    const ca_pem = readPem(o.ca as string);
    const tls = new ClusterTls({ ca_pem, cert_pem: readPem(o.cert as string), key_pem: readPem(o.key as string) });
    return { tls, authority: authorityFrom(ca_pem), peers: [], joined: false, note: `credential from ${o.cert}` };
  }
  if (o.join !== undefined) {
    if (hasCredential(dirs.credential)) throw new UsageError(`${dirs.credential} already holds a credential: this node has joined a cluster; start it without --join`);
    const token = parseToken(o.join);
    if (token.role !== "node") throw new FerryError("ERR_TOKEN", "this token is for a client (ferry login), not a node");
    if (token.name !== undefined && token.name !== o.name) throw new FerryError("ERR_TOKEN", `this token is for node ${token.name}, not ${o.name}`);
    const keys = await newKeyPair();
    const answer = await redeemToken(token, { name: o.name, public_key_der: keys.public_key_der, hosts: hostsOf(o.host) });
    const credential = { ca_pem: answer.ca_pem, cert_pem: answer.cert_pem, key_pem: keys.key_pem };
    const tls = new ClusterTls(credential);
    writeCredential(dirs.credential, credential);
    return { tls, authority: null, peers: answer.peers, joined: true, note: `joined the cluster through ${token.address}; credential kept in ${dirs.credential}` };
  }
  if (o.init) {
    if (hasCredential(dirs.credential) || fs.existsSync(dirs.authority)) throw new UsageError(`${o.data_dir} already belongs to a cluster: start it without --init`);
    const authority = await createAuthority(o.name);
    writeAuthority(dirs.authority, authority);
    const issued = await issue(authority, { role: "node", name: o.name, hosts: hostsOf(o.host) });
    const credential = { ca_pem: authority.cert_pem, cert_pem: issued.cert_pem, key_pem: issued.key_pem as string };
    writeCredential(dirs.credential, credential);
    return { tls: new ClusterTls(credential), authority, peers: [], joined: false, note: `new cluster: CA in ${dirs.authority}; let others in with \`ferry token create\`` };
  }
  if (hasCredential(dirs.credential)) {
    const credential = readCredential(dirs.credential);
    return { tls: new ClusterTls(credential), authority: authorityFrom(credential.ca_pem), peers: [], joined: false, note: `credential from ${dirs.credential}` };
  }
  throw new UsageError(
    `node ${o.name} has no credential in ${dirs.credential}: start the first node of a cluster with --init, join one with --join TOKEN (ferry token create on a member), or give --ca, --cert and --key (or --insecure, with no authentication at all)`,
  );
}

/** The local cluster of `ferry up`: its CA (made on first use) and a certificate for each node. */
export async function localCluster(authority_dir: string): Promise<{ authority: KeyPairPem; created: boolean }> {
  const existing = readAuthority(authority_dir);
  if (existing !== null) return { authority: existing, created: false };
  const authority = await createAuthority("local");
  writeAuthority(authority_dir, authority);
  return { authority, created: true };
}

/** A node certificate of the local cluster; kept in `data_dir`'s `tls/` too when given (as a node started by hand keeps it). */
export async function localNode(authority: KeyPairPem, name: string, host: string, data_dir?: string): Promise<ClusterTls> {
  const issued = await issue(authority, { role: "node", name, hosts: hostsOf(host) });
  const credential = { ca_pem: authority.cert_pem, cert_pem: issued.cert_pem, key_pem: issued.key_pem as string };
  if (data_dir !== undefined) writeCredential(nodeTlsDirs(data_dir).credential, credential);
  return new ClusterTls(credential);
}

/**
 * Makes sure `dir` holds a client credential of the cluster of
 * `authority`; writes a new one if it holds none or one of another cluster.
 * Returns what it did.
 */
export async function ensureClient(authority: KeyPairPem, dir: string, name: string): Promise<"kept" | "written" | "replaced"> {
  let had = false;
  if (hasCredential(dir)) {
    had = true;
    try {
      const tls = new ClusterTls(readCredential(dir));
      if (tls.ca_fingerprint === fingerprint(authority.cert_pem) && tls.identity.role === "client") return "kept";
    } catch {
      // Unreadable or expired: replaced below, and the operator is told.
    }
  }
  const issued = await issue(authority, { role: "client", name });
  writeCredential(dir, { ca_pem: authority.cert_pem, cert_pem: issued.cert_pem, key_pem: issued.key_pem as string });
  return had ? "replaced" : "written";
}

/** This account's name as a certificate may carry it (the default name of its client credential). */
export function localUserName(): string {
  return os.userInfo().username.replace(/[^A-Za-z0-9_.@-]/g, "_").slice(0, 64) || "client";
}

function hostsOf(host: string): string[] {
  return [...new Set([host, "localhost", "127.0.0.1"].filter((h) => h !== "" && h !== "0.0.0.0" && h !== "::"))];
}
