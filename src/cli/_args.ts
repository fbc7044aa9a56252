/**
 * Command-line parsing for ferry's commands. Options come before the program;
 * everything from the program on belongs to the guest, so a guest's own
 * `--help` is never taken for ferry's.
 */
import { FerryError } from "../errors.js";

/** How one option is spelled and read. */
export interface OptionSpec {
  name: string;
  /** Takes a value (`--name V` or `--name=V`) or is a flag. */
  value: boolean;
  /** May be given more than once. */
  multiple?: boolean;
  short?: string;
}

/** Parsed command line. */
export interface Parsed {
  options: Map<string, string[]>;
  flags: Set<string>;
  positionals: string[];
}

/** A usage error: bad option, missing argument. Exit status 2. */
export class UsageError extends FerryError {
  constructor(message: string) {
    super("ERR_USAGE", message);
    this.name = "UsageError";
  }
}

/**
 * Parses `argv`. With `stop_at_positional`, parsing ends at the first
 * positional argument and the rest is returned verbatim.
 */
export function parseArgs(argv: readonly string[], specs: readonly OptionSpec[], stop_at_positional: boolean): Parsed {
  const options = new Map<string, string[]>();
  const flags = new Set<string>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i] as string;
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      if (stop_at_positional) {
        positionals.push(...argv.slice(i));
        break;
      }
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const key = eq >= 0 ? arg.slice(0, eq) : arg;
    const spec = specs.find((s) => `--${s.name}` === key || (s.short !== undefined && `-${s.short}` === key));
    if (spec === undefined) throw new UsageError(`unknown option ${key}`);
    if (!spec.value) {
      if (eq >= 0) throw new UsageError(`option --${spec.name} takes no value`);
      flags.add(spec.name);
      continue;
    }
    let value: string;
    if (eq >= 0) value = arg.slice(eq + 1);
    else {
      const next = argv[i + 1];
      if (next === undefined) throw new UsageError(`option --${spec.name} needs a value`);
      value = next;
      i += 1;
    }
    const list = options.get(spec.name) ?? [];
    if (list.length > 0 && spec.multiple !== true) throw new UsageError(`option --${spec.name} given twice`);
    list.push(value);
    options.set(spec.name, list);
  }
  return { options, flags, positionals };
}

/** The single value of an option, if given. */
export function optionValue(parsed: Parsed, name: string): string | undefined {
  return parsed.options.get(name)?.[0];
}

/** A non-negative integer option (milliseconds, counts). */
export function optionInt(parsed: Parsed, name: string): number | undefined {
  const raw = optionValue(parsed, name);
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw)) throw new UsageError(`option --${name} wants a whole number, not ${JSON.stringify(raw)}`);
  return Number(raw);
}

const SIZE_UNITS: Record<string, number> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** A size: bytes, or a whole number with K, M, G or T (binary: 64M is 64 MiB; KiB, MB... are read the same). */
export function parseSize(text: string): number | null {
  const m = /^(\d{1,16})\s*([kmgt]?)(?:i?b)?$/i.exec(text.trim());
  if (m === null) return null;
  const bytes = Number(m[1]) * (SIZE_UNITS[(m[2] as string).toLowerCase()] as number);
  return Number.isSafeInteger(bytes) ? bytes : null;
}

const DURATION_UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration: a whole number with ms, s, m, h or d (30s, 10m, 2h, 1d), in milliseconds. */
export function parseDuration(text: string): number | null {
  const m = /^(\d{1,9})(ms|s|m|h|d)$/.exec(text.trim());
  return m === null ? null : Number(m[1]) * (DURATION_UNIT_MS[m[2] as string] as number);
}

/** A duration option (see {@link parseDuration}). */
export function optionDuration(parsed: Parsed, name: string): number | undefined {
  const raw = optionValue(parsed, name);
  if (raw === undefined) return undefined;
  const ms = parseDuration(raw);
  if (ms === null) throw new UsageError(`option --${name} wants a duration such as 30s, 10m or 2h, not ${JSON.stringify(raw)}`);
  return ms;
}

/** A size option (see {@link parseSize}). */
export function optionSize(parsed: Parsed, name: string): number | undefined {
  const raw = optionValue(parsed, name);
  if (raw === undefined) return undefined;
  const bytes = parseSize(raw);
  if (bytes === null) throw new UsageError(`option --${name} wants a size such as 64M or 1G, not ${JSON.stringify(raw)}`);
  return bytes;
}
