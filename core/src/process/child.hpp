#pragma once
// A child's life, whichever start method made it: it takes on its identity and its parent's start
// method, runs its target the way Python's _bootstrap does, and exits with the target's exit code
// (0, N for zmp::exit(N), 1 for an uncaught exception, which it prints).

#include "runtime/identity.hpp"
#include "zmp/process.hpp"

namespace zmp::detail {

/// zmp::exit() inside a child's target (or a pool task) unwinds to the bootstrap with this; it is
/// not a std::exception, so that `catch (const std::exception&)` in user code does not swallow it.
struct SystemExit {
    int code;
};

/// In a freshly started child: takes on the identity `who`, and `method` (its parent's) as its
/// default start method.
void become_child(const ChildIdentity& who, StartMethod method);
/// Runs `process` as this child's whole life and exits with its exit code. Never returns.
[[noreturn]] void run_child(Process& process);

/// True on the thread that runs this child's target, while it runs.
bool on_target_thread();

}  // namespace zmp::detail
