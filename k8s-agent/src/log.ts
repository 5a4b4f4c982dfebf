// Structured logs: one JSON object per line on stdout, for the cluster's log pipeline.
export type LogLevel = "debug" | "info" | "warn" | "error";
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  log(level: LogLevel, msg: string, fields?: Record<string, unknown>): void;
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export function createLogger(
  level: LogLevel = "info",
  base: Record<string, unknown> = {},
  write: (line: string) => void = (line) => process.stdout.write(line),
): Logger {
  const min = RANK[level];
  const log = (lvl: LogLevel, msg: string, fields: Record<string, unknown> = {}) => {
    if (RANK[lvl] < min) return;
    write(`${JSON.stringify({ ts: new Date().toISOString(), level: lvl, msg, ...base, ...fields })}\n`);
  };
  return {
    log,
    debug: (m, f) => log("debug", m, f),
    info: (m, f) => log("info", m, f),
    warn: (m, f) => log("warn", m, f),
    error: (m, f) => log("error", m, f),
  };
}

/**
 * At most `max` lines per `ms` of one kind of warning, counting the ones left out: a peer that
 * repeats what is refused cannot flood the log, and the next line says how much was left out.
 */
export class LogLimit {
  private since = Number.NEGATIVE_INFINITY;
  private lines = 0;
  private left = 0;

  constructor(
    private readonly max: number,
    private readonly ms: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Undefined: leave this line out. Else log it, with how many were left out since the last one. */
  take(): number | undefined {
    const now = this.now();
    if (now - this.since >= this.ms) {
      this.since = now;
      this.lines = 0;
    }
    if (this.lines >= this.max) {
      this.left++;
      return undefined;
    }
    this.lines++;
    const left = this.left;
    this.left = 0;
    return left;
  }
}
