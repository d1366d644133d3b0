import fs from 'node:fs';
import path from 'node:path';
import { FcUffdError } from '../errors.js';

function sameFile(a: string, b: string): boolean {
  try {
    const sa = fs.statSync(a);
    const sb = fs.statSync(b);
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return path.resolve(a) === path.resolve(b);
  }
}

/**
 * Writes a report: never over one of its inputs (even with `force`), over an existing file only
 * with `force`, and whole or not at all (a temporary file in the same directory, renamed).
 */
export function writeReportFile(output: string, html: string, inputs: string[], force: boolean): void {
  for (const input of inputs)
    if (sameFile(output, input))
      throw new FcUffdError('CONFIG', `refusing to write the report over its input ${input}: choose another output file`);
  if (fs.existsSync(output) && !force) throw new FcUffdError('CONFIG', `${output} exists: pass --force to replace it`);
  const dir = path.dirname(path.resolve(output));
  if (!fs.existsSync(dir)) throw new FcUffdError('CONFIG', `cannot write ${output}: directory ${dir} does not exist`);
  const tmp = path.join(dir, `.${path.basename(output)}.${process.pid}.tmp`);
  try {
    fs.writeFileSync(tmp, html);
    fs.renameSync(tmp, output);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw new FcUffdError('CONFIG', `cannot write ${output}: ${(err as Error).message}`);
  }
}
