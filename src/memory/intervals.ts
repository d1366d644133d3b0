/**
 * A set of half-open integer intervals [start, end), kept sorted, disjoint and coalesced. Sized by
 * the number of ranges, not their length: a balloon that frees gigabytes in a few madvise calls
 * costs a few entries.
 */
export class IntervalSet {
  // starts[i] < ends[i] <= starts[i + 1]; adjacent intervals are merged.
  private starts: number[] = [];
  private ends: number[] = [];

  get rangeCount(): number {
    return this.starts.length;
  }

  /** Total length covered. */
  get size(): number {
    let total = 0;
    for (let i = 0; i < this.starts.length; i++) total += this.ends[i]! - this.starts[i]!;
    return total;
  }

  /** Index of the first interval whose end is > x. */
  private firstEndingAfter(x: number): number {
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ends[mid]! > x) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  has(x: number): boolean {
    const i = this.firstEndingAfter(x);
    return i < this.starts.length && this.starts[i]! <= x;
  }

  /** True when any point of [start, end) is in the set. */
  intersects(start: number, end: number): boolean {
    const i = this.firstEndingAfter(start);
    return i < this.starts.length && this.starts[i]! < end;
  }

  add(start: number, end: number): void {
    if (end <= start) return;
    // Merge with every interval that overlaps or touches [start, end).
    const i = this.firstEndingAfter(start - 1);
    let j = i;
    while (j < this.starts.length && this.starts[j]! <= end) {
      start = Math.min(start, this.starts[j]!);
      end = Math.max(end, this.ends[j]!);
      j++;
    }
    this.starts.splice(i, j - i, start);
    this.ends.splice(i, j - i, end);
  }

  delete(start: number, end: number): void {
    if (end <= start) return;
    const i = this.firstEndingAfter(start);
    let j = i;
    const newStarts: number[] = [];
    const newEnds: number[] = [];
    while (j < this.starts.length && this.starts[j]! < end) {
      if (this.starts[j]! < start) {
        newStarts.push(this.starts[j]!);
        newEnds.push(start);
      }
      if (this.ends[j]! > end) {
        newStarts.push(end);
        newEnds.push(this.ends[j]!);
      }
      j++;
    }
    this.starts.splice(i, j - i, ...newStarts);
    this.ends.splice(i, j - i, ...newEnds);
  }

  toArray(): Array<[start: number, end: number]> {
    return this.starts.map((s, i) => [s, this.ends[i]!]);
  }
}
