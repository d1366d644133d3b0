/** A one-line progress bar on a terminal; nothing when the output is not a TTY. */
export class ProgressBar {
  private readonly enabled: boolean;
  private lastDraw = 0;
  private readonly t0 = performance.now();

  constructor(
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream = process.stdout,
  ) {
    this.enabled = stream.isTTY;
  }

  update(done: number, total: number): void {
    if (!this.enabled) return;
    const now = performance.now();
    if (now - this.lastDraw < 100 && done < total) return;
    this.lastDraw = now;
    const width = 30;
    const frac = total > 0 ? done / total : 1;
    const filled = Math.round(frac * width);
    const mbps = done / 1e6 / Math.max((now - this.t0) / 1000, 1e-3);
    this.stream.write(
      `\r${this.label} [${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}%  ${mbps.toFixed(0)} MB/s`,
    );
  }

  done(): void {
    if (this.enabled) this.stream.write('\r\x1b[K');
  }
}
