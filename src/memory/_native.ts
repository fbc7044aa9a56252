/**
 * The native addon (native/, built by `npm ci` through scripts/build-native.mjs):
 * loaded once, shared by the kernel tracker and the missing-page mode.
 */
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** Bytes registered from a memory's base: the whole wasm32 reservation, so grown pages are covered too. */
export const REGISTERED_BYTES = 4 * 1024 * 1024 * 1024;

/** What the addon exports. */
export interface NativeAddon {
  populate(view: Uint8Array, bytes: number): void;
  create(view: Uint8Array, registered_bytes: number): unknown;
  scan(handle: unknown, size_bytes: number): Uint32Array;
  close(handle: unknown): void;
  missingOpen(view: Uint8Array, registered_bytes: number, on_fault: (page: number) => void): unknown;
  missingDrop(handle: unknown, bytes: number): void;
  missingCopy(handle: unknown, byte_offset: number, data: Uint8Array): number;
  missingClose(handle: unknown): void;
}

let loaded: { addon: NativeAddon } | { reason: string } | undefined;

/** The addon, or why it cannot be had. */
export function nativeAddon(): { addon: NativeAddon } | { reason: string } {
  if (loaded !== undefined) return loaded;
  const file = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "native", "build", "Release", "ferry_uffd.node");
  try {
    loaded = { addon: createRequire(import.meta.url)(file) as NativeAddon };
  } catch (err: unknown) {
    loaded = { reason: `the native addon is not built (${(err as Error).message.split("\n")[0]}); run npm run build:native` };
  }
  return loaded;
}
