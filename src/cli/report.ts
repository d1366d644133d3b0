import fs from 'node:fs';
import { FcUffdError } from '../errors.js';
import { readWorkingSet } from '../serve/working-set.js';
import { decodeTrace } from '../trace/format.js';
import { buildTraceReport } from '../report/model.js';
import { renderReportHtml } from '../report/html.js';
import { writeReportFile } from '../report/output.js';

export interface ReportFlags {
  output: string;
  workingSet?: string;
  force: boolean;
}

export function readTraceFile(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why =
      e.code === 'ENOENT' ? "no such file (serve --trace writes it when the VM ends; a running VM's is still <file>.partial)" : e.message;
    throw new FcUffdError('TRACE_OPEN', `cannot read trace ${file}: ${why}`);
  }
}

/** fc-uffd report TRACE [--working-set FILE] -o report.html */
export function reportCommand(traceFile: string, flags: ReportFlags): void {
  const t0 = performance.now();
  const trace = decodeTrace(readTraceFile(traceFile), traceFile);
  const ws = flags.workingSet !== undefined ? readWorkingSet(flags.workingSet) : undefined;
  const html = renderReportHtml(buildTraceReport(trace, traceFile, ws));
  writeReportFile(flags.output, html, flags.workingSet !== undefined ? [traceFile, flags.workingSet] : [traceFile], flags.force);
  process.stdout.write(
    `${flags.output}: report of ${trace.count} records (${(html.length / 1024).toFixed(0)} KiB) in ${((performance.now() - t0) / 1000).toFixed(2)} s\n`,
  );
}
