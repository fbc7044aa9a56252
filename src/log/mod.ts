/** Structured logging (pino) for every layer: the one logger of this OS process, and its terminal format. */
export { configureLogging, errorField, isLogLevel, logger, LOG_LEVEL_DEFAULT, LOG_LEVELS, type LogLevel, type LogOptions, type Logger } from "./logger.js";
export { formatLogLine } from "./format.js";
