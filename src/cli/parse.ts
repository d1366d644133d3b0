import { InvalidArgumentError, type Command } from 'commander';

/** Parses sizes such as 4096, 64k, 64KiB, 2m, 2MiB into bytes. */
export function parseBytes(text: string): number {
  const m = /^(\d+)\s*([kmg]?)(i?b)?$/i.exec(text.trim());
  if (!m) throw new InvalidArgumentError(`not a size: ${text} (examples: 4096, 64k, 2MiB)`);
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  const bytes = Number(m[1]) * unit;
  if (!Number.isSafeInteger(bytes)) throw new InvalidArgumentError(`not a size: ${text} is more bytes than this handler counts`);
  return bytes;
}

/** --fault-around: a size (checked as a power of two with the other options) or `adaptive`. */
export function parseFaultAround(text: string): number | 'adaptive' {
  if (text.trim().toLowerCase() === 'adaptive') return 'adaptive';
  if (!/^\d/.test(text.trim())) throw new InvalidArgumentError(`not a size or adaptive: ${text} (examples: 4k, 256k, 2m, adaptive)`);
  return parseBytes(text);
}

export function parseInteger(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`not a non-negative integer: ${text}`);
  return n;
}

/** Socket permission bits in octal (0600, 660); the range is checked with the other options. */
export function parseOctalMode(text: string): number {
  if (!/^0?[0-7]{1,6}$/.test(text.trim())) throw new InvalidArgumentError(`not octal permission bits: ${text} (examples: 0600, 0660)`);
  return parseInt(text, 8);
}

/** --min-runs: a count, or `all` (pages seen in every run). */
export function parseMinRuns(text: string): number | 'all' {
  if (text === 'all') return 'all';
  const n = parseInteger(text);
  if (n < 1) throw new InvalidArgumentError('at least 1 (1 = union; all = intersection)');
  return n;
}

/**
 * Commander checks required options before unknown ones, so a mistyped `--sockt` was reported as a
 * missing `--socket`. These are checked after (in preAction), so the typo is what the user sees.
 */
export function requireOptions(cmd: Command, ...names: string[]): Command {
  return cmd.hook('preAction', (c) => {
    for (const name of names) {
      const opt = c.options.find((o) => o.attributeName() === name)!;
      if (c.getOptionValue(name) === undefined) c.error(`error: required option '${opt.flags}' not specified`);
    }
  });
}
