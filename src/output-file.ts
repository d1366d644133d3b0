import fs from 'node:fs';
import path from 'node:path';
import { FcUffdError } from './errors.js';

/**
 * Rules for files the tool writes for an operator: an existing file is never replaced unless asked
 * (--force), an input is never written over (same file by device + inode, whatever the path
 * spelling), and the directory must exist before any work starts.
 */
export function checkOutputPath(flag: string, output: string, o: { force: boolean; inputs?: string[] }): void {
  const dir = path.dirname(path.resolve(output));
  let dirStat: fs.Stats;
  try {
    dirStat = fs.statSync(dir);
  } catch {
    throw new FcUffdError('CONFIG_INVALID', `${flag} ${output}: directory ${dir} does not exist; create it first`);
  }
  if (!dirStat.isDirectory()) throw new FcUffdError('CONFIG_INVALID', `${flag} ${output}: ${dir} is not a directory`);
  let st: fs.Stats;
  try {
    st = fs.statSync(output);
  } catch {
    return;
  }
  for (const input of o.inputs ?? []) {
    const inStat = fs.statSync(input, { throwIfNoEntry: false });
    if (inStat && inStat.dev === st.dev && inStat.ino === st.ino)
      throw new FcUffdError('CONFIG_OUTPUT_EXISTS', `${flag} ${output} is one of the inputs (${input}); write the result to another file`);
  }
  if (st.isDirectory()) throw new FcUffdError('CONFIG_INVALID', `${flag} ${output} is a directory; give a file path`);
  if (!o.force)
    throw new FcUffdError(
      'CONFIG_OUTPUT_EXISTS',
      `${flag} ${output} exists; remove it, choose another path, or pass --force to replace it`,
    );
}
