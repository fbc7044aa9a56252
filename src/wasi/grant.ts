/**
 * Which host directories a restored process gets. An image records the
 * preopens the process had, host paths included, but a host path from an
 * image is never opened: whoever can write an image file (or recompute its
 * checksums) could point a preopen at /etc. The resuming side grants
 * directories again, and they are matched to the image's by guest path; the
 * image's host paths serve only in messages.
 */

import { RestoreError } from "../errors.js";
import type { Preopen } from "./deps.js";

/** What the resuming side grants a restored process. */
export type RestoreGrant = {
  /** Host directories for the image's preopens, matched to them by guest path. */
  readonly preopens: readonly Preopen[];
};

/** How an image's preopens meet the directories granted for its restore. */
export type PreopenMatch =
  /** Every recorded preopen has a grant, in the image's order (fd 3, 4, ...). */
  | { kind: "granted"; preopens: Preopen[] }
  /** `missing`: recorded preopens with no grant. `unused`: grants the image has no preopen for. */
  | { kind: "mismatch"; missing: Preopen[]; unused: Preopen[] };

/**
 * Matches `granted` to `recorded` by guest path. A guest path the image has
 * several times takes the grants for it in order, first to first. Extra
 * grants are a mismatch too: a mistyped guest path would otherwise go
 * unnoticed until the guest fails to find its directory.
 */
export function match_preopens(recorded: readonly Preopen[], granted: readonly Preopen[]): PreopenMatch {
  const left = granted.map((g) => ({ ...g }));
  const preopens: Preopen[] = [];
  const missing: Preopen[] = [];
  for (const want of recorded) {
    const at = left.findIndex((g) => g.guest_path === want.guest_path);
    if (at < 0) {
      missing.push({ ...want });
      continue;
    }
    const [grant] = left.splice(at, 1) as [Preopen];
    preopens.push({ host_path: grant.host_path, guest_path: want.guest_path });
  }
  if (missing.length > 0 || left.length > 0) return { kind: "mismatch", missing, unused: left };
  return { kind: "granted", preopens };
}

/**
 * The preopens a restore uses: `granted`, in the order the image recorded
 * them. Throws RestoreError ERR_RESTORE_PREOPEN naming every directory that
 * has no grant, or every grant the image does not use.
 */
export function grant_preopens(recorded: readonly Preopen[], granted: readonly Preopen[]): Preopen[] {
  const match = match_preopens(recorded, granted);
  if (match.kind === "granted") return match.preopens;
  throw new RestoreError("ERR_RESTORE_PREOPEN", describe_mismatch(match));
}

/** What is wrong with a mismatch, for a person: the guest paths, and the host paths the image recorded. */
function describe_mismatch(match: Extract<PreopenMatch, { kind: "mismatch" }>): string {
  const parts: string[] = [];
  for (const p of match.missing) parts.push(`directory ${p.guest_path} is not granted (the image recorded host ${p.host_path}; it is not reused)`);
  for (const p of match.unused) parts.push(`the image has no directory ${p.guest_path} (granted ${p.host_path})`);
  return parts.join("; ");
}
