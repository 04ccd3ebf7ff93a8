/** Log levels of SPEC §1, most severe first. */
export const logLevels = ["error", "warn", "info", "debug", "trace"] as const;
export type LogLevel = typeof logLevels[number];

/** How a log line is written: `text` for people, `json` (one object per line) for log shippers. */
export const logFormats = ["text", "json"] as const;
export type LogFormat = typeof logFormats[number];

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
  /** @default "text" */
  format?: LogFormat;
  /** Where a finished line goes. @default console.error */
  write?: (line: string) => void;
}

/**
 * A logger that writes one line per event at or above `level`: `TIME LEVEL message key=value...` in the
 * text format, `{"time","level","msg",...fields}` in the json format (a field named like one of the first
 * three is dropped rather than let it overwrite them).
 */
export function createLogger(options: LoggerOptions): Logger {
  const threshold = logLevels.indexOf(options.level);
  const write = options.write ?? ((line: string) => console.error(line));
  const format = options.format === "json" ? jsonLine : textLine;
  const emit = (level: LogLevel, message: string, fields?: Record<string, unknown>) => {
    if (logLevels.indexOf(level) > threshold) return;
    write(format(new Date().toISOString(), level, message, fields));
  };
  return {
    error: (message, fields) => emit("error", message, fields),
    warn: (message, fields) => emit("warn", message, fields),
    info: (message, fields) => emit("info", message, fields),
    debug: (message, fields) => emit("debug", message, fields),
    enabled: (level) => logLevels.indexOf(level) <= threshold,
  };
}

type LineFormat = (
  time: string,
  level: LogLevel,
  message: string,
  fields?: Record<string, unknown>,
) => string;

const textLine: LineFormat = (time, level, message, fields) => {
  const suffix = fields === undefined
    ? ""
    : Object.entries(fields).map(([name, value]) => ` ${name}=${JSON.stringify(value)}`).join("");
  return `${time} ${level.toUpperCase()} ${message}${suffix}`;
};

const jsonLine: LineFormat = (time, level, message, fields) => {
  const line: Record<string, unknown> = { time, level, msg: message };
  for (const [name, value] of Object.entries(fields ?? {})) if (!(name in line)) line[name] = value;
  return JSON.stringify(line);
};

/** A logger that drops everything; for unit tests. */
export const silentLogger: Logger = createLogger({ level: "error", write: () => {} });
