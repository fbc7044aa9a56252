/**
 * Schemas of joining a cluster (`_join.ts`, docs/cluster.md): the token
 * request, the join request a joiner sends without a certificate, and the
 * answer it gets back, checked like every other body.
 */
import * as v from "valibot";
import { HostPort } from "../process_spec.js";
import { IDENTITY_NAME, TOKEN_TTL_MS_MAX } from "../trust/mod.js";
import { base64, integer, list, text } from "../validate.js";

/** Host names and addresses a joiner may list for its certificate, at most. */
const JOIN_HOSTS_MAX = 16;
/** An ECDSA P-256 public key in SPKI DER is 91 bytes; room for any key a joiner could mean. */
const PUBLIC_KEY_BYTES_MAX = 512;
/** A PEM certificate is a few hundred bytes; a chain of a few KiB at most. */
const PEM_CHARS_MAX = 64 * 1024;
/** Peers a member names in a join answer. */
const JOIN_PEERS_MAX = 1024;

const Role = v.picklist(["node", "client", "scrape"], "must be node, client or scrape");
const IdentityName = v.pipe(v.string(), v.regex(IDENTITY_NAME, "must be 1-64 letters, digits, _ . @ -"));

/** `POST /v1/tokens`. */
export const TokenRequestSchema = v.object({
  role: v.optional(Role, "node"),
  name: v.optional(IdentityName),
  ttl_ms: v.optional(integer(1, TOKEN_TTL_MS_MAX)),
});

/** `POST /v1/join`. */
export const JoinRequestSchema = v.object({
  /** The token's secret (base64url of 32 bytes). */
  secret: text(64, 1),
  role: Role,
  name: IdentityName,
  /** The joiner's public key, SPKI DER, base64. */
  public_key: base64(PUBLIC_KEY_BYTES_MAX),
  /** Where it answers (nodes), for its certificate. */
  hosts: v.optional(list(v.pipe(v.string(), v.regex(/^[A-Za-z0-9.:_-]{1,253}$/, "must be a host name or address")), JOIN_HOSTS_MAX), []),
});

/** The answer to `POST /v1/join`. */
export const JoinAnswerSchema = v.object({
  cert_pem: text(PEM_CHARS_MAX, 1),
  ca_pem: text(PEM_CHARS_MAX, 1),
  /** Addresses of the cluster's nodes the member knows (itself first). */
  peers: list(HostPort, JOIN_PEERS_MAX),
});

/** `POST /v1/internal/peers`: a node that just joined says where it answers. */
export const PeerAnnounceSchema = v.object({ address: HostPort });
