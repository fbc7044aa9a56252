/**
 * Mutual TLS with the cluster CA: the options a node serves with and dials
 * with, and who is at the other end of a connection.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { createSecureContext, type PeerCertificate, type TLSSocket, type ConnectionOptions, type SecureContext, type TlsOptions } from "node:tls";
import { FerryError } from "../errors.js";
import { certificateIdentity, fingerprint, identityFromAltNames, type Credential, type Identity, type Role } from "./pki.js";

/** TLS 1.3 only: no renegotiation, no legacy ciphers, one round trip less per handshake. */
const MIN_VERSION = "TLSv1.3";

/** What a dialer expects to find at the other end. */
export interface ExpectedPeer {
  role: Role;
  /** The name it must have; absent: any holder of that role. */
  name?: string;
}

/** A member's TLS credential, checked once when loaded. */
export class ClusterTls {
  /** Who this member is (from its certificate). */
  readonly identity: Identity;
  /** SHA-256 of the CA certificate, hex: the cluster's identity. */
  readonly ca_fingerprint: string;
  /** The CA certificate, PEM. */
  readonly ca_pem: string;
  /** This member's private key (it also signs images). */
  readonly private_key: KeyObject;
  readonly #credential: Credential;
  #client_context: SecureContext | undefined;

  /** Loads a credential; throws ERR_TLS_CONFIG unless the CA signed the certificate and the key matches it. */
  constructor(credential: Credential) {
    this.identity = certificateIdentity(credential.cert_pem, credential.ca_pem);
    try {
      this.private_key = createPrivateKey(credential.key_pem);
    } catch (err: unknown) {
      throw new FerryError("ERR_TLS_CONFIG", "the private key is not a PEM private key", { cause: err });
    }
    if (!new X509Certificate(credential.cert_pem).checkPrivateKey(this.private_key)) {
      throw new FerryError("ERR_TLS_CONFIG", "the private key does not belong to the certificate");
    }
    this.ca_fingerprint = fingerprint(credential.ca_pem);
    this.ca_pem = credential.ca_pem;
    this.#credential = credential;
  }

  /**
   * Options of a node's server: every client is asked for a certificate,
   * and the request handler decides what it may do (a joiner has none yet).
   * The CA goes with the certificate so a joiner can check it against its token.
   */
  serverOptions(): TlsOptions {
    return {
      ca: [this.#credential.ca_pem],
      cert: this.#credential.cert_pem + this.#credential.ca_pem,
      key: this.#credential.key_pem,
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: MIN_VERSION,
    };
  }

  /**
   * Options to dial a member: this member's certificate, the cluster CA
   * only, and the member found must be the one expected. Host names are not
   * checked: a member is named by its certificate, wherever it answers.
   */
  clientOptions(expect: ExpectedPeer): ConnectionOptions {
    // One context for every connection: making one parses the key, the certificate and the CA again (tens of ms on a busy machine, paid by each migration's connections).
    this.#client_context ??= createSecureContext({ ca: [this.#credential.ca_pem], cert: this.#credential.cert_pem, key: this.#credential.key_pem, minVersion: MIN_VERSION });
    return {
      secureContext: this.#client_context,
      minVersion: MIN_VERSION,
      rejectUnauthorized: true,
      checkServerIdentity: (_host: string, cert: PeerCertificate) => checkExpected(cert, expect),
    };
  }
}

/** Undefined if `cert` is the peer expected, else why not (as TLS wants it). */
export function checkExpected(cert: PeerCertificate, expect: ExpectedPeer): Error | undefined {
  const id = identityFromAltNames(cert.subjectaltname);
  if (id === null) return new FerryError("ERR_PEER_UNAUTHENTICATED", "the peer's certificate names no Ferry node or client");
  if (id.role !== expect.role) return new FerryError("ERR_PEER_UNAUTHENTICATED", `the peer is a ${id.role}, not a ${expect.role}`);
  if (expect.name !== undefined && id.name !== expect.name) {
    return new FerryError("ERR_PEER_UNAUTHENTICATED", `the peer is ${id.role} ${id.name}, not ${expect.name}`);
  }
  return undefined;
}

const identities = new WeakMap<object, Identity | null>();

/**
 * Who is at the other end of a TLS connection: the identity in a
 * certificate the cluster CA signed, or null (no certificate, another
 * cluster's, or not TLS at all).
 */
export function peerIdentity(socket: unknown): Identity | null {
  if (typeof socket !== "object" || socket === null) return null;
  const known = identities.get(socket);
  if (known !== undefined) return known;
  const tls = socket as Partial<TLSSocket>;
  let id: Identity | null = null;
  if (tls.encrypted === true && tls.authorized === true && typeof tls.getPeerCertificate === "function") {
    id = identityFromAltNames(tls.getPeerCertificate().subjectaltname);
  }
  identities.set(socket, id);
  return id;
}
