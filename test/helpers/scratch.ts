import fs from 'node:fs';
import { tempDir } from './files.js';
import { captureLogger, type CapturedLog } from './logger.js';

/**
 * Runs a test body with a fresh temporary directory and a captured logger; on failure the last
 * log lines are printed (what the handler said is usually the diagnosis), and the directory is
 * always removed.
 */
export async function withScratch(body: (dir: string, log: CapturedLog) => Promise<void>): Promise<void> {
  const dir = tempDir();
  const log = captureLogger();
  try {
    await body(dir, log);
  } catch (err) {
    console.error(log.text().slice(-4000));
    throw err;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
