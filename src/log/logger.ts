/**
 * Ferry's structured log (pino): one JSON object per line, with a level, a
 * time and a message, on stderr; on a terminal, the same entries formatted
 * for people (`format.ts`). One logger per OS process, configured once by
 * the command that runs (`ferry node start --log-level`); code everywhere
 * takes a child of it with its context (`logger().child({ node, pid })`).
 *
 * Until configured, the logger writes warnings and worse only: a library
 * use (tests that run nodes in-process) is not flooded with info lines.
 */
import { pino, type Logger, type DestinationStream } from "pino";
import { formatLogLine } from "./format.js";

export type { Logger } from "pino";

/** The levels `--log-level` takes, quietest last. */
export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;

/** One of {@link LOG_LEVELS}. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The level of a node started without `--log-level`. */
export const LOG_LEVEL_DEFAULT: LogLevel = "info";

/** The level before anything configures the log (see the module's comment). */
const UNCONFIGURED_LEVEL: LogLevel = "warn";

/** Whether `text` is a level name. */
export function isLogLevel(text: string): text is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(text);
}

/** Options of {@link configureLogging}. */
export interface LogOptions {
  level: LogLevel;
  /** Where lines go (default: stderr). */
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Human-readable lines instead of JSON (default: when the stream is a terminal). */
  pretty?: boolean;
  /** Fields on every line (e.g. the node's name). */
  base?: Record<string, unknown>;
}

let current: Logger = make({ level: UNCONFIGURED_LEVEL });

function make(options: LogOptions): Logger {
  const stream = options.stream ?? process.stderr;
  const pretty = options.pretty ?? stream.isTTY === true;
  // Synchronous writes: a node that crashes right after logging why still has the line out.
  const destination: DestinationStream = pretty
    ? {
        write(line: string): void {
          const color = stream.isTTY === true && process.env["NO_COLOR"] === undefined;
          stream.write(`${line.split("\n").filter((l) => l !== "").map((l) => formatLogLine(l, color)).join("\n")}\n`);
        },
      }
    : stream === process.stdout || stream === process.stderr
      ? pino.destination({ dest: stream === process.stdout ? 1 : 2, sync: true })
      : (stream as DestinationStream);
  return pino({ level: options.level, base: options.base ?? {}, formatters: { level: (_label, number) => ({ level: number }) } }, destination);
}

/** Sets up this OS process's log; the logger {@link logger} returns from then on. */
export function configureLogging(options: LogOptions): Logger {
  current = make(options);
  return current;
}

/** This OS process's logger. */
export function logger(): Logger {
  return current;
}

/**
 * An error as a log field, for `log.warn({ err: errorField(e) }, ...)`: an
 * Error as it is (pino writes its type, message, stack and code), anything
 * else thrown as its text.
 */
export function errorField(err: unknown): Error | { message: string } {
  return err instanceof Error ? err : { message: String(err) };
}
