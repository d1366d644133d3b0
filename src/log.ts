import { pino, type Logger } from 'pino';

/** The handler's logs: JSON lines on stderr (stdout is for command output). */
export function createLogger(level = 'info'): Logger {
  return pino({ level, base: { name: 'fc-uffd' } }, pino.destination({ fd: 2, sync: true }));
}
