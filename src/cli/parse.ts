import { InvalidArgumentError } from 'commander';

/** Parses sizes such as 4096, 64k, 64KiB, 2m, 2MiB into bytes. */
export function parseBytes(text: string): number {
  const m = /^(\d+)\s*([kmg]?)(i?b)?$/i.exec(text.trim());
  if (!m) throw new InvalidArgumentError(`not a size: ${text} (examples: 4096, 64k, 2MiB)`);
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Number(m[1]) * unit;
}

export function parseInteger(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`not a non-negative integer: ${text}`);
  return n;
}
