/**
 * A safe integer power of two from 1 to 1 GiB: the shape of every page size (4 KiB base pages,
 * 2 MiB and 1 GiB hugepages) and fault-around window. The bound also keeps `n & (n - 1)` within
 * the 32 bits JavaScript's bit operators see.
 */
export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && n <= 2 ** 30 && (n & (n - 1)) === 0;
}
