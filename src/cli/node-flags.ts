// The Node.js flags the `fc-uffd` executable runs with: its first line is
// `#!/usr/bin/env -S node <these>` (a unit test keeps the two equal), and the benchmarks start the
// CLI with them so that they measure what users run.
//
// --v8-pool-size=1: V8 compiles optimized code, and helps its GC, on a pool of background threads,
// four by default. In a fresh handler the fault path is compiled while the first VM restores, and
// four compile threads on a small host took CPUs from the fault-loop thread and the vCPUs it
// serves, in the p99 fault latency of that first restore (bench suite `adaptive`). The handler's
// code is small: one thread compiles it soon enough.
export const CLI_NODE_FLAGS: readonly string[] = ['--v8-pool-size=1'];
