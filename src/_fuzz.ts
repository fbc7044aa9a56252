/**
 * Settings shared by the property tests (fast-check): a fixed seed, so a
 * failure replays exactly, and a time budget per property that CI affords.
 * FERRY_FUZZ_SEED and FERRY_FUZZ_MS override them for a longer run at home.
 * Test support only: imported by *_test.ts files, never by the product.
 */
import * as fc from "fast-check";

/** The seed every property starts from unless FERRY_FUZZ_SEED says otherwise. */
export const FUZZ_SEED_DEFAULT = 0x5eed_f00d;

/** Wall-clock budget of one property: the runs left when it is spent are skipped, not failed. */
export const FUZZ_PROPERTY_MS_DEFAULT = 2500;

function fromEnv(name: string, fallback: number): number {
  const given = process.env[name];
  const n = given === undefined || given === "" ? NaN : Number(given);
  return Number.isFinite(n) ? n : fallback;
}

/** fast-check parameters: the fixed seed, at most `runs` runs, within the time budget. */
export function fuzzParameters<T>(runs: number): fc.Parameters<T> {
  return {
    seed: fromEnv("FERRY_FUZZ_SEED", FUZZ_SEED_DEFAULT),
    numRuns: runs,
    plugins: [fc.interruptAfterTimeLimit(fromEnv("FERRY_FUZZ_MS", FUZZ_PROPERTY_MS_DEFAULT))],
  };
}

/** Sizes to cut a byte stream into (cycled): single bytes, small and large pieces. */
export const chunkSizes: fc.Arbitrary<number[]> = fc.array(fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 70_000 })), {
  minLength: 1,
  maxLength: 16,
});

/** `bytes` cut at the sizes given (cycled), every piece a view. */
export function cut(bytes: Uint8Array, sizes: readonly number[]): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  let i = 0;
  for (let at = 0; at < bytes.length; i += 1) {
    const n = sizes[i % sizes.length] ?? 1;
    pieces.push(bytes.subarray(at, at + n));
    at += n;
  }
  return pieces;
}

/**
 * Runs `fn` and returns what it threw, or undefined if it returned. The
 * properties then say which errors may escape: a parser of untrusted bytes
 * may throw only its own typed errors.
 */
export function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error: unknown) {
    return error;
  }
  return undefined;
}
