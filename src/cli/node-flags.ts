// The Node.js flags the `fc-uffd` executable runs with: its first line is
// `#!/usr/bin/env -S node <these>` (a unit test keeps the two equal), and the benchmarks start the
// CLI with them so that they measure what users run.
//
// --v8-pool-size=1: V8 compiles optimized code, and helps its GC, on a pool of background threads,
// four by default. In a fresh handler the fault path is compiled while the first VM restores, and
// four compile threads on a small host took CPUs from the fault-loop thread and the vCPUs it
// serves, in the p99 fault latency of that first restore (bench suite `adaptive`). The handler's
// code is small: one thread compiles it soon enough.
//
// --wasm-tiering-budget=1000000000: the only WebAssembly in the process is undici's HTTP parser
// (llhttp), which the stores drive once per socket read. Node 20's V8 recompiles it with its
// optimizing compiler after 1.8 M "bytes executed", a few MB into a fresh handler's first remote
// restore: about 130 ms of CPU on the background thread (perf: Pipeline::GenerateCodeForWasmFunction),
// taken from that restore's fault path and codec threads on a small host. The baseline code parses
// headers and steps over bodies as fast on the main thread: the remote bench's receive table
// (bench/results/remote.receive.md, every chunk GET of the benchmark guest at once, with and without
// these flags) shows the same main-thread time and ~180 -> ~25 ms on the other threads. Node 22 and
// 24 default to 13 M; the flag makes all three alike.
export const CLI_NODE_FLAGS: readonly string[] = ['--v8-pool-size=1', '--wasm-tiering-budget=1000000000'];
