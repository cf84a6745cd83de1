#pragma once
// zmp::Process: Python's multiprocessing.Process in C++.
//
// A Process runs a callable in a child process. It is a handle: copies refer to the same child,
// and destroying every handle neither kills nor detaches the child (the runtime still joins it,
// or terminates it if it is a daemon, when this process exits). Under the fork start method any
// callable works, lambdas with captures included; the child is a copy of the parent.
//
//     zmp::Process p([](int n) { std::printf("hello %d\n", n); }, 42);
//     p.start(); p.join();                       // p.exitcode() == 0
//
// Subclassing works as in Python: override run() and call start().
//
//     struct Worker : zmp::Process { void run() override { ... } };
//
// Exit codes: 0 when the target returns, N for zmp::exit(N), 1 for an uncaught exception (the
// child prints "Process <name>:" and the exception's type and text on its stderr), -N when a
// signal N ended it (-15 after terminate(), -9 after kill()).
//
// Threading: a Process may be used from any thread of the process that created it; start(),
// join(), terminate() and friends are internally synchronised. Only the creating process may
// start, join or signal it; other processes see it as a name and a pid.

#include <sys/types.h>

#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "zmp/errors.hpp"
#include "zmp/timeout.hpp"

namespace zmp {

namespace detail {
struct ProcessState;
struct ChildRecord;
}  // namespace detail

/// Options given at construction; both may also be set with set_name()/set_daemon() before start().
struct ProcessOptions {
    std::string name;             ///< empty: "Process-N" (nested children: "Process-N:M")
    std::optional<bool> daemon;   ///< empty: inherit the creating process's daemon flag
};

class Process {
public:
    /// A process whose run() does nothing; for subclasses that override run().
    Process();
    explicit Process(ProcessOptions options);

    /// A process that will call target(args...). Arguments are copied (decayed) now.
    template <class F, class... Args>
        requires std::is_invocable_v<std::decay_t<F>&, std::decay_t<Args>&...>
    explicit Process(F&& target, Args&&... args) : Process(ProcessOptions{}) {
        set_target(bind_target(std::forward<F>(target), std::forward<Args>(args)...));
    }

    template <class F, class... Args>
        requires std::is_invocable_v<std::decay_t<F>&, std::decay_t<Args>&...>
    Process(ProcessOptions options, F&& target, Args&&... args) : Process(std::move(options)) {
        set_target(bind_target(std::forward<F>(target), std::forward<Args>(args)...));
    }

    Process(const Process&) = default;
    Process& operator=(const Process&) = default;
    Process(Process&&) noexcept = default;
    Process& operator=(Process&&) noexcept = default;
    virtual ~Process();

    /// What the child runs. The default calls the target given at construction.
    virtual void run();

    /// Starts the child. Errors: ValueError if already started, closed, or not created by this
    /// process; OSError if the system cannot create a process.
    void start();

    /// Waits until the child ends. ValueError if it was never started or this is not its parent.
    void join();
    /// Waits at most `timeout`; true if the child has ended.
    bool join(Seconds timeout);

    /// True between start() and the child's end (true for current_process()).
    bool is_alive() const;
    /// Sends SIGTERM / SIGKILL; nothing happens if the child has already ended.
    void terminate();
    void kill();

    /// Empty while running or before start; see the exit-code table above.
    std::optional<int> exitcode() const;
    /// The child's pid once started (for current_process(): this process's pid).
    std::optional<pid_t> pid() const;
    const std::string& name() const;
    void set_name(std::string name);
    bool daemon() const;
    /// ValueError after start().
    void set_daemon(bool daemon);
    /// A file descriptor (a pidfd) that becomes readable when the child ends; ValueError before start.
    int sentinel() const;

    /// Releases the resources of an ended child. ValueError while it runs; afterwards every method
    /// except close() raises ValueError("process object is closed").
    void close();

    /// For the runtime: a handle on an existing state (current process, active children).
    explicit Process(std::shared_ptr<detail::ProcessState> state) : state_(std::move(state)) {}

private:
    friend std::ostream& operator<<(std::ostream& out, const Process& process);
    template <class F, class... Args>
    static std::function<void()> bind_target(F&& target, Args&&... args) {
        return [fn = std::decay_t<F>(std::forward<F>(target)),
                bound = std::make_tuple(std::decay_t<Args>(std::forward<Args>(args))...)]() mutable {
            std::apply(fn, bound);
        };
    }
    void set_target(std::function<void()> target);
    detail::ProcessState& state() const;

    std::shared_ptr<detail::ProcessState> state_;
};

/// Python's repr: <Process name='Process-1' pid=4242 parent=4241 started daemon>, with
/// "initial" before start and "stopped exitcode=-SIGTERM" (or "exitcode=N") after the end.
std::ostream& operator<<(std::ostream& out, const Process& process);

/// What a child knows of its parent: a name and a pid, and whether it still runs.
class ParentProcess {
public:
    pid_t pid() const noexcept { return pid_; }
    const std::string& name() const noexcept { return name_; }
    /// Tracks the parent's liveness (a pidfd opened when the child started).
    bool is_alive() const;
    /// Waits until the parent ends; true if it has.
    bool join(Timeout timeout = forever) const;

    ParentProcess(pid_t pid, std::string name, int pidfd) : pid_(pid), name_(std::move(name)), pidfd_(pidfd) {}

private:
    pid_t pid_;
    std::string name_;
    int pidfd_;  // owned by the runtime, never closed
};

/// The Process object describing this process ("MainProcess" in the root).
Process& current_process();
/// This process's parent; empty in the root.
std::optional<ParentProcess> parent_process();
/// The children of this process that are still running; reaps those that have ended.
std::vector<Process> active_children();
/// CPUs this process may run on (its affinity mask), at least 1.
int cpu_count();

/// Ends the calling process with `code`, like Python's sys.exit: inside a child's target it
/// unwinds the target (destructors run) and the child's exit code is `code`; elsewhere it runs
/// zmp's exit handling (daemon children terminated, others joined) and exits.
[[noreturn]] void exit(int code);

}  // namespace zmp
