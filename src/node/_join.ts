/**
 * Joining a cluster with a one-time token (README, "Trust"): a member that
 * holds the cluster CA issues tokens (`POST /v1/tokens`), and a new node or
 * client redeems one (`POST /v1/join`) for a certificate of its own key,
 * which never leaves the joiner.
 */
import { createHash, X509Certificate } from "node:crypto";
import type http from "node:http";
import https from "node:https";
import tls from "node:tls";
import { FerryError, knownCode } from "../errors.js";
import type * as v from "valibot";
import { checkExpected, issue, type JoinToken } from "../trust/mod.js";
import { parse } from "../validate.js";
import type { FerryNode } from "./node.js";
import { splitHostPort } from "./_dialer.js";
import { readRequest, sendJson, PEER_TIMEOUT_MS } from "./_http.js";
import { JoinAnswerSchema, JoinRequestSchema, TokenRequestSchema } from "./_join_schemas.js";

/** Largest join answer read (two certificates and a peer list). */
const JOIN_ANSWER_BYTES_MAX = 256 * 1024;

/** `POST /v1/tokens {role, name?, ttl_ms?}`: a one-time join token, from a node that holds the CA. */
export async function createToken(node: FerryNode, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const { role, name, ttl_ms } = await readRequest(req, TokenRequestSchema);
  if (node.tls === null) throw new FerryError("ERR_NO_AUTHORITY", `node ${node.name} runs without TLS: there is no cluster to join`);
  if (node.authority === null) {
    throw new FerryError("ERR_NO_AUTHORITY", `node ${node.name} does not hold the cluster CA's key: ask a node that does (started by ferry up, with --init, or with --ca-key)`);
  }
  const made = node.tokens.create(role, {
    address: node.address,
    ca_fingerprint: node.tls.ca_fingerprint,
    ...(ttl_ms !== undefined ? { ttl_ms } : {}),
    ...(name !== undefined ? { name } : {}),
  });
  sendJson(res, 201, { token: made.token, role, name: name ?? null, expires_unix_ms: made.expires_unix_ms, node: node.name });
}

/** What a joiner gets back. */
export type JoinAnswer = v.InferOutput<typeof JoinAnswerSchema>;

/** `POST /v1/join`: redeems a token for a certificate. Served without a client certificate. */
export async function join(node: FerryNode, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const request = await readRequest(req, JoinRequestSchema);
  if (node.tls === null || node.authority === null) throw new FerryError("ERR_NO_AUTHORITY", `node ${node.name} cannot issue certificates`);
  if (request.role === "node") {
    const taken = request.name === node.name || (await node.peerInfos()).some((p) => p.up && p.name === request.name);
    if (taken) throw new FerryError("ERR_TOKEN", `a node called ${request.name} is already in this cluster: pick another --name`);
  }
  // The token is spent only by a join that can succeed.
  node.tokens.redeem(request.secret, request.role, request.name);
  const issued = await issue(node.authority, {
    role: request.role,
    name: request.name,
    hosts: request.hosts,
    public_key_der: Buffer.from(request.public_key, "base64"),
  });
  const answer: JoinAnswer = { cert_pem: issued.cert_pem, ca_pem: node.tls.ca_pem, peers: [node.address, ...node.peers] };
  sendJson(res, 201, answer);
}

/**
 * Longest a join's redemption may take, answer included: the node checks
 * the token and issues a certificate, which takes milliseconds; five times
 * the small calls' deadline leaves room for a node busy starting up.
 */
const JOIN_TIMEOUT_MS = PEER_TIMEOUT_MS * 5;

/**
 * The CA certificate the node at `address` presents, checked against the
 * token's fingerprint: nothing secret is sent to a node before this passes.
 */
function fetchCa(token: JoinToken): Promise<string> {
  const { host, port } = splitHostPort(token.address);
  return new Promise((resolve, reject) => {
    // Unverified on purpose: this connection only reads the chain, then the fingerprint decides.
    const socket = tls.connect({ host, port, rejectUnauthorized: false, minVersion: "TLSv1.3" });
    const deadline = setTimeout(() => socket.destroy(new Error(`no handshake within ${PEER_TIMEOUT_MS} ms`)), PEER_TIMEOUT_MS);
    socket.once("close", () => clearTimeout(deadline));
    socket.once("secureConnect", () => {
      const leaf = socket.getPeerCertificate(true);
      socket.destroy();
      const ca = leaf.issuerCertificate as tls.DetailedPeerCertificate | undefined;
      if (ca === undefined || ca.raw === undefined || createHash("sha256").update(ca.raw).digest("hex") !== token.ca_fingerprint) {
        reject(new FerryError("ERR_PEER_UNAUTHENTICATED", `${token.address} is not a node of the cluster this token is for (its CA does not match)`));
        return;
      }
      resolve(new X509Certificate(ca.raw).toString());
    });
    socket.once("error", (err) => reject(new FerryError("ERR_PEER_UNREACHABLE", `cannot reach ${token.address} to join: ${err.message}`, { cause: err })));
  });
}

/** Redeems `token` at the node it names for a certificate of `public_key_der`, as `name`. */
export async function redeemToken(token: JoinToken, request: { name: string; public_key_der: Uint8Array; hosts?: string[] }): Promise<JoinAnswer> {
  const ca_pem = await fetchCa(token);
  const payload = Buffer.from(
    JSON.stringify({ secret: token.secret, role: token.role, name: request.name, public_key: Buffer.from(request.public_key_der).toString("base64"), hosts: request.hosts ?? [] }),
  );
  const { host, port } = splitHostPort(token.address);
  const { status, body } = await new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
    const req = https.request(
      {
        host,
        port,
        method: "POST",
        path: "/v1/join",
        agent: false,
        ca: [ca_pem],
        minVersion: "TLSv1.3",
        checkServerIdentity: (_h, cert) => checkExpected(cert, { role: "node" }),
        headers: { "content-type": "application/json", "content-length": payload.length },
      },
      (res) => {
        const parts: Buffer[] = [];
        let total = 0;
        res.on("data", (c: Buffer) => {
          total += c.length;
          if (total > JOIN_ANSWER_BYTES_MAX) res.destroy(new Error("answer too large"));
          else parts.push(c);
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
        res.on("error", reject);
      },
    );
    // A total deadline, not an idle one: a node that trickles its answer is as stuck as a silent one.
    const deadline = setTimeout(() => req.destroy(new Error(`no whole answer within ${JOIN_TIMEOUT_MS} ms`)), JOIN_TIMEOUT_MS);
    req.on("close", () => clearTimeout(deadline));
    req.on("error", (err) => reject(new FerryError("ERR_PEER_UNREACHABLE", `joining through ${token.address} failed: ${err.message}`, { cause: err })));
    req.end(payload);
  });
  let value: unknown;
  try {
    value = JSON.parse(body.toString("utf8"));
  } catch (err: unknown) {
    throw new FerryError("ERR_PEER", `${token.address} answered the join with something that is not JSON`, { cause: err });
  }
  if (status >= 400) {
    const e = (value as { error?: { code?: unknown; message?: unknown } } | null)?.error;
    throw new FerryError(knownCode(typeof e?.code === "string" ? e.code : undefined, "ERR_PEER"), typeof e?.message === "string" ? e.message : `the join was refused (HTTP ${status})`);
  }
  const a = parse(JoinAnswerSchema, value, `${token.address}'s answer to the join`, { code: "ERR_PEER" });
  if (a.ca_pem !== ca_pem) throw new FerryError("ERR_PEER", `${token.address} answered the join with another CA than it presented`);
  return a;
}

