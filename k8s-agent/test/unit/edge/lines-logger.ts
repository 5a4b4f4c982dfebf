import type { Logger } from "../../../src/log.ts";

/** A Logger that keeps each line as `<level> <message>` (debug dropped), for tests of what is said. */
export function linesLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const log: Logger = {
    log: (level, msg) => void lines.push(`${level} ${msg}`),
    info: (msg) => void lines.push(`info ${msg}`),
    warn: (msg) => void lines.push(`warn ${msg}`),
    error: (msg) => void lines.push(`error ${msg}`),
    debug: () => {},
  };
  return { log, lines };
}
