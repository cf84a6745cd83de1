#pragma once
// The children this process started and has not yet joined, and what becomes of them when it
// exits (Python's _exit_function): daemonic children are terminated, then every child is joined.
// The runtime sees a child only through TrackedChild, which the process component implements, so
// that the arrows point down (process -> runtime). A forked child starts with no children: its
// parent's are not its to join.

#include <memory>
#include <string>
#include <vector>

namespace zmp::detail {

/// A started child, as this process's exit path sees it.
class TrackedChild {
public:
    virtual ~TrackedChild() = default;
    virtual bool is_daemon() const = 0;
    /// False once it has ended (reaping it).
    virtual bool is_alive() = 0;
    /// Sends SIGTERM unless it has ended.
    virtual void terminate() = 0;
    /// Waits until it has ended, then forgets it (forget_child()).
    virtual void join() = 0;
    /// Its name and pid, for log records: "Process-1 (pid 123)".
    virtual std::string describe() const = 0;
};

/// Tracks `child` until forget_child(); the first child arms the exit stage that finishes them.
void add_child(std::shared_ptr<TrackedChild> child);
/// The children still tracked (started, not yet joined and forgotten).
std::vector<std::shared_ptr<TrackedChild>> children();
void forget_child(const TrackedChild* child);

/// Terminates the daemonic children still running, then joins every child (each step an info
/// record, as Python's _exit_function logs them).
void finish_children();

}  // namespace zmp::detail
