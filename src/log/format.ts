/**
 * A small formatter of pino's JSON lines for people at a terminal:
 * `12:03:04.567 WARN  n1 migration of n1-4 stalled pid=n1-4 stall_ms=30000`.
 * Pure (a line in, a line out), so it is tested without a terminal. Lines
 * that are not pino's JSON are passed through as they are.
 */

/** pino's numeric levels and the names shown for them. */
const LEVEL_NAMES: Readonly<Record<number, string>> = { 10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL" };

/** Fields every line has, shown in its head rather than among the rest. */
const HEAD_FIELDS = new Set(["level", "time", "msg", "node", "pid", "hostname"]);

/** Longest text of one extra field shown; a stack or a large value is cut, the JSON log keeps it whole. */
const FIELD_CHARS_MAX = 2000;

/** Formats one JSON log line (without its newline) for a terminal; `color` adds ANSI colours to the level. */
export function formatLogLine(line: string, color = false): string {
  let entry: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(line);
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return line;
    entry = parsed as Record<string, unknown>;
  } catch {
    // Not a log entry (something else wrote to the stream): shown as it is.
    return line;
  }
  const level = typeof entry["level"] === "number" ? (LEVEL_NAMES[entry["level"]] ?? String(entry["level"])) : "?";
  const time = typeof entry["time"] === "number" ? new Date(entry["time"]).toISOString().slice(11, 23) : "";
  const node = typeof entry["node"] === "string" ? ` ${entry["node"]}` : "";
  const msg = typeof entry["msg"] === "string" ? entry["msg"] : "";
  const extras: string[] = [];
  for (const [key, value] of Object.entries(entry)) {
    if (HEAD_FIELDS.has(key) || value === undefined) continue;
    extras.push(`${key}=${fieldText(value)}`);
  }
  const shown = color ? colorLevel(level) : level.padEnd(5);
  return `${time} ${shown}${node} ${msg}${extras.length > 0 ? ` ${extras.join(" ")}` : ""}`;
}

function fieldText(value: unknown): string {
  let text: string;
  if (typeof value === "string") text = /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
  else if (value !== null && typeof value === "object" && typeof (value as { message?: unknown }).message === "string") {
    // An error pino serialised: its type, code and message; the stack stays in the JSON log.
    const e = value as { type?: unknown; code?: unknown; message: string };
    text = JSON.stringify(`${typeof e.code === "string" ? `${e.code}: ` : typeof e.type === "string" ? `${e.type}: ` : ""}${e.message}`);
  } else text = JSON.stringify(value) ?? String(value);
  return text.length > FIELD_CHARS_MAX ? `${text.slice(0, FIELD_CHARS_MAX)}…` : text;
}

function colorLevel(level: string): string {
  const code = level === "ERROR" || level === "FATAL" ? 31 : level === "WARN" ? 33 : level === "INFO" ? 32 : 90;
  return `\u001b[${code}m${level.padEnd(5)}\u001b[0m`;
}
