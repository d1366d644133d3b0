// Ctrl-C (SIGINT) and SIGTERM for commands that can stop cleanly: the signal aborts the command's
// work through its AbortSignal (pack, unpack: no manifest, no output file, their temporary files
// removed by their own cleanup), then one line says so and the process exits 128 + signal.
import { FcUffdError } from '../errors.js';
import { handleSignalsWith, removeTrackedTemps } from '../temp-files.js';

const EXIT_CODES: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 130, SIGTERM: 143 };

/**
 * Runs `work` with a signal that SIGINT/SIGTERM aborts. When it was interrupted, and once `work`
 * has settled (its cleanup done), prints what was left and exits 128 + signal; a second signal
 * while it cleans up exits at once (the CLI's temp-file handler).
 */
export async function runInterruptible<T>(what: string, left: string, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  let caught: NodeJS.Signals | undefined;
  const release = handleSignalsWith((signal) => {
    caught = signal;
    controller.abort(new FcUffdError('ABORTED', `interrupted by ${signal}`));
  });
  try {
    return await work(controller.signal);
  } catch (err) {
    if (caught === undefined) throw err;
    process.stderr.write(`${process.stderr.isTTY ? '\n' : ''}fc-uffd: ${what} interrupted by ${caught}: ${left} [ABORTED]\n`);
    // Stores writes the abort stopped waiting for may still be under way: their temporary files go too.
    removeTrackedTemps();
    process.exit(EXIT_CODES[caught] ?? 1);
  } finally {
    release();
  }
}
