// Headless Chromium (Debian's `chromium` package) as a person's browser: the DOM after the page's
// scripts ran, what its console said, and a screenshot.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

export function chromiumPath(): string | undefined {
  for (const bin of ['chromium', 'chromium-browser']) {
    const r = spawnSync('which', [bin], { encoding: 'utf8' });
    if (r.status === 0) return r.stdout.trim();
  }
  return undefined;
}

const BASE = ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--no-first-run', '--enable-logging=stderr', '--v=0'];

export interface Rendered {
  dom: string;
  /** Console messages the page logged (Chromium's CONSOLE log lines). */
  console: string[];
}

function consoleLines(stderr: string): string[] {
  // Chromium 120+ logs `INFO:CONSOLE:<line>] "message", source: ...`; older ones `CONSOLE(<line>)`.
  return stderr.split('\n').filter((l) => /:CONSOLE(:\d+|\(\d+\))\]/.test(l));
}

/** Loads `file` and returns the DOM once its scripts ran. */
export function dumpDom(chromium: string, file: string, userDataDir: string): Rendered {
  const r = spawnSync(chromium, [...BASE, `--user-data-dir=${userDataDir}`, '--dump-dom', pathToFileURL(path.resolve(file)).href], {
    encoding: 'utf8',
    timeout: 60000,
  });
  if (r.status !== 0) throw new Error(`chromium --dump-dom exited ${r.status}: ${r.stderr}`);
  return { dom: r.stdout, console: consoleLines(r.stderr) };
}

export function screenshot(chromium: string, file: string, png: string, width: number, height: number, userDataDir: string): void {
  const r = spawnSync(
    chromium,
    [
      ...BASE,
      `--user-data-dir=${userDataDir}`,
      `--screenshot=${png}`,
      `--window-size=${width},${height}`,
      pathToFileURL(path.resolve(file)).href,
    ],
    {
      encoding: 'utf8',
      timeout: 60000,
    },
  );
  if (r.status !== 0) throw new Error(`chromium --screenshot exited ${r.status}: ${r.stderr}`);
}

/** The attributes of <body> in a DOM dump. */
export function bodyAttributes(dom: string): Record<string, string> {
  const m = /<body([^>]*)>/.exec(dom);
  const out: Record<string, string> = {};
  if (!m) return out;
  for (const a of m[1]!.matchAll(/([\w-]+)="([^"]*)"/g)) out[a[1]!] = a[2]!;
  return out;
}
