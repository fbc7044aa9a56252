/**
 * The SIGNATURE section: which key signed an image, and its signature over a
 * SHA-256 digest of every byte before the section. The encoder and decoder
 * compute the digest as the bytes stream past (images are GiBs and never sit
 * in memory whole); this file builds, parses and checks the section itself.
 */
import { createHash, createPublicKey, sign, verify, type KeyObject } from "node:crypto";
import { ImageError, ImageErrorCodes } from "../errors.js";
import { Reader, Writer, malformed } from "./_bytes.js";
import { ImageLimits, SIGNATURE_HEAD_BYTES, SignatureAlgorithm, type SignatureAlgorithmCode } from "./format.js";

/** Signs the images an encoder writes: a private key, Ed25519 or ECDSA P-256. */
export interface ImageSigner {
  key: KeyObject;
}

/**
 * The keys a reader trusts: given the key id an image names (SHA-256 of a
 * public key's SPKI DER, see {@link imageKeyId}), the public key to verify it
 * with, or undefined for a key the reader does not trust.
 */
export type ImageTrust = (key_id: Uint8Array) => KeyObject | undefined;

/** Bytes of a key id: a SHA-256. */
export const KEY_ID_BYTES = 32;

/** Bytes of an Ed25519 or ECDSA P-256 (r ‖ s) signature. */
const SIGNATURE_BYTES = 64;

/**
 * What is signed is this context, then the 32-byte digest. The context keeps
 * an image signature from ever being mistaken for a signature made with the
 * same key for another purpose: the node signs with the key of its TLS
 * certificate, and TLS signs its own context-prefixed transcripts with it.
 */
const SIGNATURE_CONTEXT = Buffer.from("Ferry process image v2 signature\0", "latin1");

/** A signer checked once per image: its key, algorithm and key id. */
export interface PreparedSigner {
  key: KeyObject;
  algorithm: SignatureAlgorithmCode;
  key_id: Uint8Array;
}

/** A parsed SIGNATURE payload. */
export interface SignatureRecord {
  key_id: Uint8Array;
  algorithm: number;
  signature: Uint8Array;
}

function signatureError(message: string, cause?: unknown): ImageError {
  return new ImageError(ImageErrorCodes.signature, `image signature: ${message}`, cause === undefined ? undefined : { cause });
}

/** The public half of a key (a public key as it is). */
function publicOf(key: KeyObject): KeyObject {
  return key.type === "private" ? createPublicKey(key) : key;
}

/** The algorithm a key signs with, or undefined if images cannot be signed with it. */
function algorithmOf(key: KeyObject): SignatureAlgorithmCode | undefined {
  if (key.asymmetricKeyType === "ed25519") return SignatureAlgorithm.ed25519;
  if (key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1") return SignatureAlgorithm.ecdsa_p256_sha256;
  return undefined;
}

function describeKey(key: KeyObject): string {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  return `${key.asymmetricKeyType ?? key.type}${curve === undefined ? "" : ` (${curve})`}`;
}

/**
 * The key id images name a key by: SHA-256 of its public key's SPKI DER
 * encoding (of a private key: of its public half). The same id a TLS
 * certificate's key has, so a node can trust its peers' certificate keys.
 */
export function imageKeyId(key: KeyObject): Uint8Array {
  if (key.type === "secret") throw new TypeError("a key id is of a public or private key, not a secret one");
  let id = key_ids.get(key);
  if (id === undefined) {
    const der = publicOf(key).export({ type: "spki", format: "der" });
    id = createHash("sha256").update(der).digest();
    key_ids.set(key, id);
  }
  // A copy: the one kept is never handed out to be changed.
  return Uint8Array.from(id);
}

/**
 * Key ids worked out, by key (a KeyObject never changes): exporting a public
 * key and hashing it took 110-130 µs here, which every image a destination
 * checks paid inside a migration's downtime.
 */
const key_ids = new WeakMap<KeyObject, Uint8Array>();

/**
 * A trust function that trusts exactly `keys` (public or private halves; a
 * private key is trusted as its public half).
 */
export function trustKeys(keys: Iterable<KeyObject>): ImageTrust {
  const by_id = new Map<string, KeyObject>();
  for (const key of keys) by_id.set(Buffer.from(imageKeyId(key)).toString("hex"), publicOf(key));
  return (key_id) => by_id.get(Buffer.from(key_id).toString("hex"));
}

/**
 * Checks a signer before anything is encoded, so a key that cannot sign
 * fails before the first byte: TypeError for what is not a private key,
 * ERR_IMAGE_SIGNATURE for a key of another kind (RSA, another curve).
 */
export function prepareSigner(signer: ImageSigner): PreparedSigner {
  const key = signer.key;
  if (typeof key !== "object" || key === null || key.type !== "private") {
    throw new TypeError("an image signer needs a private KeyObject (node:crypto)");
  }
  const known = prepared.get(key);
  if (known !== undefined) return known;
  const algorithm = algorithmOf(key);
  if (algorithm === undefined) {
    throw signatureError(`cannot sign with a ${describeKey(key)} key: images are signed with Ed25519 or ECDSA P-256 keys`);
  }
  const out: PreparedSigner = { key, algorithm, key_id: imageKeyId(key) };
  prepared.set(key, out);
  return out;
}

/**
 * Signers already checked, by key (a KeyObject never changes): a node signs
 * every image with one key, and working out its id (exporting the public
 * half, hashing it) is a tenth of a millisecond of a migration's downtime.
 */
const prepared = new WeakMap<KeyObject, PreparedSigner>();

function signedMessage(digest: Uint8Array): Buffer {
  return Buffer.concat([SIGNATURE_CONTEXT, digest]);
}

/** The SIGNATURE payload for an image whose bytes before the section have SHA-256 `digest`. */
export function encodeSignature(signer: PreparedSigner, digest: Uint8Array): Uint8Array {
  const message = signedMessage(digest);
  const signature =
    signer.algorithm === SignatureAlgorithm.ed25519
      ? sign(null, message, signer.key)
      : sign("sha256", message, { key: signer.key, dsaEncoding: "ieee-p1363" });
  const w = new Writer(SIGNATURE_HEAD_BYTES + signature.length);
  w.raw(signer.key_id);
  w.u16(signer.algorithm);
  w.u16(0);
  w.u32(signature.length);
  w.raw(signature);
  return w.done();
}

/** Parses a SIGNATURE payload (its CRC passed); says nothing yet of whether it verifies. */
export function parseSignature(payload: Uint8Array): SignatureRecord {
  const r = new Reader(payload, "SIGNATURE");
  const key_id = r.bytes(KEY_ID_BYTES, "key id").slice();
  const algorithm = r.u16("algorithm");
  if (r.u16("reserved") !== 0) throw malformed("the SIGNATURE section's reserved field is not zero");
  const signature = r.sized(ImageLimits.signature_bytes_max, "signature").slice();
  r.end();
  return { key_id, algorithm, signature };
}

/**
 * Verifies a parsed signature against the digest of the bytes before it,
 * with the key `trust` gives for its key id. Every way it can fail is
 * ERR_IMAGE_SIGNATURE: a key the reader does not trust, an algorithm that
 * does not match the key, a signature that does not verify.
 */
export function verifySignature(record: SignatureRecord, digest: Uint8Array, trust: ImageTrust): void {
  const id_hex = Buffer.from(record.key_id).toString("hex");
  const trusted = trust(record.key_id);
  if (trusted === undefined) {
    throw signatureError(`signed by key ${id_hex}, which this reader does not trust: it was written elsewhere (another user, machine or node); resume it where it was written`);
  }
  const key = publicOf(trusted);
  if (Buffer.compare(imageKeyId(key), record.key_id) !== 0) {
    throw signatureError(`the trusted key for ${id_hex} has another key id; the trust list is wrong`);
  }
  const algorithm = algorithmOf(key);
  if (algorithm === undefined || algorithm !== record.algorithm) {
    throw signatureError(`algorithm ${record.algorithm} does not match the trusted ${describeKey(key)} key ${id_hex}`);
  }
  if (record.signature.length !== SIGNATURE_BYTES) {
    throw signatureError(`a signature of ${record.signature.length} bytes; this algorithm's are ${SIGNATURE_BYTES}`);
  }
  const message = signedMessage(digest);
  let ok: boolean;
  try {
    ok =
      algorithm === SignatureAlgorithm.ed25519
        ? verify(null, message, key, record.signature)
        : verify("sha256", message, { key, dsaEncoding: "ieee-p1363" }, record.signature);
  } catch (cause: unknown) {
    throw signatureError("the signature cannot be checked", cause);
  }
  if (!ok) throw signatureError(`the image was changed after key ${id_hex} signed it; it cannot be trusted`);
}

/** ERR_IMAGE_SIGNATURE for an image that reached END without a SIGNATURE section. */
export function unsignedError(what: string): ImageError {
  return signatureError(`${what} is not signed; this reader restores only signed images`);
}
