import { pino, type Logger } from 'pino';

export interface CapturedLog {
  logger: Logger;
  lines: Array<Record<string, unknown>>;
  text(): string;
}

/** A pino logger whose lines the test can read (and that keeps test output quiet). */
export function captureLogger(): CapturedLog {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { logger, lines, text: () => lines.map((l) => JSON.stringify(l)).join('\n') };
}
