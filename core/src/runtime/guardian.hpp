#pragma once
// The guardian of a run directory: a small process that outlives its root only to clean up after
// it. The root starts it when it makes its run directory; it waits on the root's pidfd, and once
// the root has ended — normally, or SIGKILLed, or killed by Ctrl-C — it removes the run directory
// and every shared-memory segment recorded there (runtime/leftovers.hpp), then exits. After a
// normal exit the root has removed all of it already, and the guardian just exits.
//
// It is a fresh run of this binary (/proc/self/exe), taken over before any of the program's own
// static initialisers run: it holds no ZeroMQ context, no thread, no descriptor of the root's but
// the pidfd, and none of the root's memory. It lives in a session of its own (Ctrl-C and a signal
// to the root's process group do not reach it) and is nobody's child (an intermediate process
// ends at once): the root's wait() never sees it. Its command line is "zmp-guardian <run dir>".
//
// Named segments, not memfds, because handles to them travel as bytes (through queues, to spawned
// children) and are opened by name; the guardian removes the names within moments of the root's
// end, which is what a memfd would have given.

#include <string>

namespace zmp::detail {

/// Starts the guardian of run directory `dir`, which this process made, watching `self_pidfd` (a
/// pidfd on this process). False if it could not be started; the next root's sweep of stale run
/// directories is then the backstop.
bool start_guardian(const std::string& dir, int self_pidfd);

}  // namespace zmp::detail
