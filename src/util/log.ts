/** Log levels of SPEC §1, most severe first. */
export const logLevels = ["error", "warn", "info", "debug", "trace"] as const;
export type LogLevel = typeof logLevels[number];

/** A leveled logger. Messages must never contain secrets, tokens or stored values. */
export interface Logger {
  error(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  debug(message: string, fields?: Record<string, unknown>): void;
  enabled(level: LogLevel): boolean;
}

/** Options of {@linkcode createLogger}. */
export interface LoggerOptions {
  level: LogLevel;
  /** Where a finished line goes. @default console.error */
  write?: (line: string) => void;
}

/** A logger that prints `LEVEL message key=value...` lines at or above `level`. */
export function createLogger(options: LoggerOptions): Logger {
  const threshold = logLevels.indexOf(options.level);
  const write = options.write ?? ((line: string) => console.error(line));
  const emit = (level: LogLevel, message: string, fields?: Record<string, unknown>) => {
    if (logLevels.indexOf(level) > threshold) return;
    const suffix = fields === undefined
      ? ""
      : Object.entries(fields).map(([name, value]) => ` ${name}=${JSON.stringify(value)}`).join("");
    write(`${new Date().toISOString()} ${level.toUpperCase()} ${message}${suffix}`);
  };
  return {
    error: (message, fields) => emit("error", message, fields),
    warn: (message, fields) => emit("warn", message, fields),
    info: (message, fields) => emit("info", message, fields),
    debug: (message, fields) => emit("debug", message, fields),
    enabled: (level) => logLevels.indexOf(level) <= threshold,
  };
}

/** A logger that drops everything; for unit tests. */
export const silentLogger: Logger = createLogger({ level: "error", write: () => {} });
