// Threads that wait in epoll_wait (the fault loops, the acceptor) cannot be stopped by Node while
// they wait: process.exit() terminates every worker and joins its thread, and a thread blocked in
// a syscall never returns to JavaScript to see the termination, so the join never ends. Measured
// before this module: process.exit() with a server running hung forever (a library user exiting
// on an error, the demo's Ctrl-C once its restore had begun). Each such thread registers how to
// ask it to stop; on 'exit' every one is asked, its loop ends, and the join completes.

const stoppers = new Set<() => void>();
let installed = false;

/** Calls `stop` (synchronously: post a stop message and signal the thread's eventfd) if the process exits first; returns the unregistration. */
export function stopOnProcessExit(stop: () => void): () => void {
  if (!installed) {
    installed = true;
    process.on('exit', () => {
      for (const s of stoppers) s();
    });
  }
  stoppers.add(stop);
  return () => {
    stoppers.delete(stop);
  };
}
