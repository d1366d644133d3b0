import { pino, type Logger } from 'pino';

/** The handler's logs: JSON lines on stderr (stdout is for command output). */
export function createLogger(level = 'info'): Logger {
  return pino({ level, base: { name: 'fc-uffd' } }, pino.destination({ fd: 2, sync: true }));
}

/**
 * Process warnings (Node's, or a dependency's such as the AWS SDK's Node-version notice) as log
 * lines instead of Node's multi-line text on stderr, which would break the JSON stream. For the
 * CLI only: a library must not take over its host's warnings.
 */
export function logProcessWarnings(logger: Logger): void {
  process.removeAllListeners('warning');
  process.on('warning', (w) => logger.warn({ warning: w.name }, w.message));
}
