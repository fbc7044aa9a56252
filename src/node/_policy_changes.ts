/**
 * `ferry policy set KEY=VALUE...` as values: what a node's load policy
 * becomes, checked whole before anything applies (a bad key or value is
 * ERR_BAD_REQUEST and changes nothing).
 */
import { FerryError } from "../errors.js";
import { policyParams, type PolicyParams } from "../policy/mod.js";

/** The settings a change may touch. */
export interface PolicySettings {
  readonly params: PolicyParams;
  /** Whether the balancer runs. */
  readonly balance: boolean;
  /** Guests computing at once. */
  readonly cpus: number;
}

/**
 * `current` with `set` applied: any number of {@link PolicyParams} (not the
 * cost model), `mode`, `colocate` (true/false), `balance` (on/off) and
 * `cpus`. Values come as the CLI read them (strings) or typed (JSON).
 */
export function applyPolicyChanges(current: PolicySettings, set: Readonly<Record<string, string | number | boolean>>): PolicySettings {
  const changes: Record<string, unknown> = {};
  let balance = current.balance;
  let cpus = current.cpus;
  for (const [key, raw] of Object.entries(set)) {
    const value = typeof raw === "string" ? raw.trim() : raw;
    if (key === "balance") {
      if (value !== "on" && value !== "off" && typeof value !== "boolean") throw bad(`balance is on or off, not ${String(raw)}`);
      balance = value === "on" || value === true;
    } else if (key === "cpus") {
      cpus = Number(value);
      if (typeof value === "boolean" || !(Number.isInteger(cpus) && cpus >= 1)) throw bad(`cpus must be a whole number >= 1, not ${String(raw)}`);
    } else if (key === "mode") {
      changes[key] = value;
    } else if (key === "colocate") {
      if (value !== "true" && value !== "false" && typeof value !== "boolean") throw bad(`colocate is true or false, not ${String(raw)}`);
      changes[key] = value === true || value === "true";
    } else if (Object.hasOwn(current.params, key) && key !== "model") {
      const n = Number(value);
      if (typeof value === "boolean" || value === "" || !Number.isFinite(n)) throw bad(`${key} must be a number, not ${String(raw)}`);
      changes[key] = n;
    } else {
      throw bad(`no policy parameter ${key} (ferry policy lists them)`);
    }
  }
  try {
    return { params: policyParams(changes as Partial<PolicyParams>, current.params), balance, cpus };
  } catch (err: unknown) {
    throw new FerryError("ERR_BAD_REQUEST", err instanceof Error ? err.message : String(err), { cause: err });
  }
}

function bad(message: string): FerryError {
  return new FerryError("ERR_BAD_REQUEST", message);
}
