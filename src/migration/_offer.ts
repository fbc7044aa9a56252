/**
 * The OFFER frame, checked at the edge: a destination acts on an offer (it
 * fetches a module, checks directories and files, instantiates a process)
 * before any image arrives, so every field is validated against a schema and
 * its limits first, not cast.
 */
import * as v from "valibot";
import { FerryError } from "../errors.js";
import { parseJson } from "./_wire.js";
import type { Offer } from "./source.js";

/** Longest string in an offer: paths, names and arguments are far shorter. */
const OFFER_STRING_CHARS_MAX = 4096;
/** Most items in one of an offer's lists (arguments, environment, directories, files, addresses). */
const OFFER_LIST_ITEMS_MAX = 4096;
/** wasm32 memories are at most 4 GiB. */
const MEMORY_BYTES_MAX = 4 * 1024 * 1024 * 1024;
/** The longest wait for a broken post-copy link a destination agrees to (the source's own cap). */
const RECOVER_MS_MAX = 600_000;
/** An SPKI DER public key of the algorithms images are signed with is under 100 bytes; base64 of far more is not a key. */
const SIGNING_KEY_CHARS_MAX = 1024;

const text = v.pipe(v.string(), v.maxLength(OFFER_STRING_CHARS_MAX));
const texts = v.pipe(v.array(text), v.maxLength(OFFER_LIST_ITEMS_MAX));

const OfferSchema = v.object({
  pid: v.pipe(v.string(), v.minLength(1), v.maxLength(255)),
  home: v.pipe(v.string(), v.minLength(1), v.maxLength(255)),
  module_sha256: v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/)),
  module_name: text,
  args: texts,
  env: texts,
  dirs: v.pipe(v.array(v.object({ host: text, guest: text })), v.maxLength(OFFER_LIST_ITEMS_MAX)),
  listen: v.optional(texts),
  open_files: texts,
  strategy: v.picklist(["stop-copy", "pre-copy", "post-copy", "hybrid"]),
  source: text,
  memory_bytes: v.pipe(v.number(), v.safeInteger(), v.minValue(0), v.maxValue(MEMORY_BYTES_MAX)),
  recover_ms: v.optional(v.pipe(v.number(), v.minValue(1), v.maxValue(RECOVER_MS_MAX))),
  signing_key: v.optional(v.pipe(v.string(), v.maxLength(SIGNING_KEY_CHARS_MAX), v.base64())),
});

// The schema's output must stay an Offer: a field added to one and not the other fails here.
const asOffer = (o: v.InferOutput<typeof OfferSchema>): Offer => o;

/** Parses and checks an OFFER payload; a bad one is ERR_MIGRATION_PROTOCOL naming the first bad field. */
export function parseOffer(payload: Uint8Array): Offer {
  const result = v.safeParse(OfferSchema, parseJson(payload));
  if (!result.success) {
    const issue = result.issues[0];
    const where = issue.path?.map((p) => String(p.key)).join(".") ?? "offer";
    throw new FerryError("ERR_MIGRATION_PROTOCOL", `malformed OFFER: ${where}: ${issue.message}`);
  }
  return asOffer(result.output);
}
