/**
 * Cluster identity (DESIGN.md: "only authenticated nodes and clients are
 * served; a node cannot act as another"): the cluster CA, node and client
 * certificates, mutual TLS options, join tokens and credential files. This
 * is the folder's only public entry.
 */
export { certificateIdentity, createAuthority, fingerprint, identityFromAltNames, identityUri, issue, newKeyPair, IDENTITY_NAME, type Credential, type Identity, type IssueRequest, type KeyPairPem, type Role } from "./pki.js";
export { ClusterTls, checkExpected, peerIdentity, type ExpectedPeer } from "./tls.js";
export { formatToken, parseToken, TokenStore, TOKEN_TTL_MS_DEFAULT, TOKEN_TTL_MS_MAX, type JoinToken } from "./tokens.js";
export { clientCredentialDir, hasCredential, localAuthorityDir, readAuthority, readCredential, readPem, writeAuthority, writeCredential } from "./files.js";
