/**
 * Validation at the edge (DESIGN.md: bad input yields a typed error and
 * changes nothing). Every body, query and frame that arrives from outside is
 * checked against a valibot schema by {@link parse} before anything acts on
 * it; the schemas themselves sit beside the code that reads each protocol.
 * This file also holds the small building blocks they share.
 */
import * as v from "valibot";
import { FerryError, type ErrorCode } from "./errors.js";

/** Issues named in one error message: the first few say enough, and the message stays short. */
const ISSUES_REPORTED_MAX = 3;

/** Characters of an offending value quoted in a message. */
const QUOTED_CHARS_MAX = 40;

/** Any valibot schema (synchronous). */
export type Schema = v.GenericSchema;

/** Options of {@link parse}. */
export interface ParseOptions {
  /** The code of the error thrown (default ERR_BAD_REQUEST; ERR_MIGRATION_PROTOCOL for a frame, ...). */
  code?: ErrorCode;
}

/**
 * Checks `value` against `schema` and returns it typed (with defaults filled
 * in and unknown keys dropped); throws FerryError with `options.code` naming
 * `what` and the path of each offending field otherwise.
 */
export function parse<S extends Schema>(schema: S, value: unknown, what: string, options: ParseOptions = {}): v.InferOutput<S> {
  const result = v.safeParse(schema, value);
  if (result.success) return result.output;
  const issues = result.issues.slice(0, ISSUES_REPORTED_MAX).map(describe);
  const more = result.issues.length > ISSUES_REPORTED_MAX ? ` (and ${result.issues.length - ISSUES_REPORTED_MAX} more)` : "";
  throw new FerryError(options.code ?? "ERR_BAD_REQUEST", `${what}: ${issues.join("; ")}${more}`);
}

/** Parses JSON text (a body, a frame) and checks it against `schema`; bad JSON is the same error as a bad shape. */
export function parseJson<S extends Schema>(schema: S, bytes: Uint8Array | string, what: string, options: ParseOptions = {}): v.InferOutput<S> {
  let value: unknown;
  try {
    value = JSON.parse(typeof bytes === "string" ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("utf8"));
  } catch (err: unknown) {
    throw new FerryError(options.code ?? "ERR_BAD_REQUEST", `${what} is not JSON`, { cause: err });
  }
  return parse(schema, value, what, options);
}

function describe(issue: v.BaseIssue<unknown>): string {
  const where = v.getDotPath(issue);
  const got = issue.received.length > QUOTED_CHARS_MAX ? `${issue.received.slice(0, QUOTED_CHARS_MAX)}...` : issue.received;
  const message = issue.kind === "schema" ? `want ${issue.expected ?? issue.type}, got ${got}` : issue.message;
  return where === null ? message : `${where}: ${message}`;
}

/** An integer in [min, max] (JSON numbers: NaN, infinities and fractions are refused). */
export function integer(min: number, max: number): v.SchemaWithPipe<readonly [v.NumberSchema<undefined>, v.IntegerAction<number, string>, v.MinValueAction<number, number, string>, v.MaxValueAction<number, number, string>]> {
  return v.pipe(
    v.number(),
    v.integer("must be a whole number"),
    v.minValue(min, `must be at least ${min}`),
    v.maxValue(max, `must be at most ${max}`),
  );
}

/** A byte offset or count: a whole number from 0 to 2^53 - 1 (exact as a JSON number). */
export const Uint = integer(0, Number.MAX_SAFE_INTEGER);

/** A string of at most `max` characters, none of them NUL (which no path, argument or name may hold). */
export function text(max: number, min = 0): v.SchemaWithPipe<readonly [v.StringSchema<undefined>, v.MinLengthAction<string, number, string>, v.MaxLengthAction<string, number, string>, v.CheckAction<string, string>]> {
  return v.pipe(
    v.string(),
    v.minLength(min, `must have at least ${min} characters`),
    v.maxLength(max, `must have at most ${max} characters`),
    v.check((s) => !s.includes("\0"), "must not contain NUL"),
  );
}

/** A list of at most `max` items. */
export function list<S extends Schema>(item: S, max: number): v.SchemaWithPipe<readonly [v.ArraySchema<S, undefined>, v.MaxLengthAction<v.InferInput<S>[], number, string>]> {
  return v.pipe(v.array(item), v.maxLength(max, `must have at most ${max} items`));
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Base64 text of at most `max_bytes` decoded bytes (Buffer.from would silently skip anything else). */
export function base64(max_bytes: number): v.SchemaWithPipe<readonly [v.StringSchema<undefined>, v.MaxLengthAction<string, number, string>, v.RegexAction<string, string>]> {
  return v.pipe(v.string(), v.maxLength(Math.ceil(max_bytes / 3) * 4, `must decode to at most ${max_bytes} bytes`), v.regex(BASE64, "must be base64"));
}

/** A decimal whole number in a query string ("12"; not "1.5", "-1", "1e3" or " 1"), as a number in [0, max]. */
export function queryUint(max: number): v.SchemaWithPipe<readonly [v.StringSchema<undefined>, v.RegexAction<string, string>, v.TransformAction<string, number>, v.MaxValueAction<number, number, string>]> {
  return v.pipe(
    v.string(),
    v.regex(/^\d{1,16}$/, "must be a whole number of bytes"),
    v.transform(Number),
    v.maxValue(max, `must be at most ${max}`),
  );
}
