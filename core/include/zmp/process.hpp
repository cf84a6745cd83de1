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
#include <typeinfo>
#include <utility>
#include <vector>

#include "zmp/authkey.hpp"
#include "zmp/errors.hpp"
#include "zmp/function.hpp"
#include "zmp/timeout.hpp"

namespace zmp {

class Process;

/// How a child process is made (see zmp/context.hpp).
enum class StartMethod { fork, spawn, forkserver };

namespace detail {
struct ProcessState;
struct ProcessAccess;

/// A target as it travels to a spawn or forkserver child: the function, its trampoline and its
/// arguments (packed when the child starts); or the reason it cannot travel.
struct TravelTarget {
    const void* function = nullptr;
    Trampoline trampoline = nullptr;
    std::function<void(msgpack::packer<msgpack::sbuffer>&)> pack_args;
    std::string cannot_travel;
};

/// How a registered Process subclass is rebuilt in a spawn or forkserver child.
struct ProcessType {
    std::function<std::unique_ptr<Process>()> make;
    std::function<void(const Process&, msgpack::packer<msgpack::sbuffer>&)> pack;
    std::function<void(Process&, const msgpack::object&)> unpack;
};
void register_process_type(const std::string& key, ProcessType type);
}  // namespace detail

/// Options given at construction; name and daemon may also be set before start().
struct ProcessOptions {
    std::string name;                   ///< empty: "Process-N" (nested children: "Process-N:M")
    std::optional<bool> daemon;         ///< empty: inherit the creating process's daemon flag
    std::optional<StartMethod> method;  ///< empty: the default start method when start() runs
};

class Process {
public:
    /// A process whose run() does nothing; for subclasses that override run().
    Process();
    explicit Process(ProcessOptions options);

    /// A process that will call target(args...). Arguments are copied (decayed) now. Under
    /// spawn and forkserver the target must travel (see zmp/function.hpp).
    template <class F, class... Args>
    requires std::is_invocable_v < std::decay_t<F>
    &, std::decay_t<Args>&... > explicit Process(F&& target, Args&&... args) : Process(ProcessOptions{}) {
        // Packed before bind_target moves the arguments (function arguments have no set order).
        detail::TravelTarget travel = make_travel_target(target, args...);
        set_target(std::move(travel), bind_target(std::forward<F>(target), std::forward<Args>(args)...));
    }

    template <class F, class... Args>
    requires std::is_invocable_v < std::decay_t<F>
    &, std::decay_t<Args>&... > Process(ProcessOptions options, F&& target, Args&&... args)
        : Process(std::move(options)) {
        // Packed before bind_target moves the arguments (function arguments have no set order).
        detail::TravelTarget travel = make_travel_target(target, args...);
        set_target(std::move(travel), bind_target(std::forward<F>(target), std::forward<Args>(args)...));
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

    /// The start method this process uses (or will use: the default, if none was given).
    StartMethod start_method() const;

    /// Empty while running or before start; see the exit-code table above.
    std::optional<int> exitcode() const;
    /// The child's pid once started (for current_process(): this process's pid).
    std::optional<pid_t> pid() const;
    /// Python's ident: the same as pid().
    std::optional<pid_t> ident() const { return pid(); }
    /// Python's authkey: the key this process runs with. A run has one key (zmp::current_authkey(),
    /// made by the root) and every child inherits it under every start method, so this is the
    /// same for every Process of the run; unlike Python's it cannot be set per process.
    /// ValueError after close().
    const Authkey& authkey() const;
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
    friend struct detail::ProcessAccess;
    template <class F, class... Args>
    static std::function<void()> bind_target(F&& target, Args&&... args) {
        return [fn = std::decay_t<F>(std::forward<F>(target)),
                bound = std::make_tuple(std::decay_t<Args>(std::forward<Args>(args))...)]() mutable {
            std::apply(fn, bound);
        };
    }
    template <class F, class... Args>
    static detail::TravelTarget make_travel_target(F& target, Args&... args) {
        using Callable = std::decay_t<F>;
        if constexpr (travels<F, Args...>) {
            auto function = +target;
            using Fn = decltype(function);
            using Params = typename detail::function_traits<Fn>::args;
            return {reinterpret_cast<const void*>(function),
                    detail::trampoline_for<Fn>(),
                    [params = Params(args...)](msgpack::packer<msgpack::sbuffer>& out) { out.pack(params); },
                    {}};
        } else if constexpr (!detail::plain_function_like<Callable>) {
            return {nullptr, nullptr, nullptr,
                    "the target (" + transport::type_name(typeid(Callable)) +
                        ") is a lambda with captures or another stateful callable; only plain functions and "
                        "capture-free lambdas travel to a spawn or forkserver child (fork takes any callable)"};
        } else {
            return {nullptr, nullptr, nullptr,
                    "an argument of the target cannot travel to a spawn or forkserver child: every parameter "
                    "needs msgpack adaptors (see zmp::is_packable)"};
        }
    }
    void set_target(detail::TravelTarget travel, std::function<void()> target);
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

/// Lets a Process subclass be started with spawn or forkserver: the child default-constructs a T
/// and fills it from the parent's object, which T describes with MSGPACK_DEFINE(members...).
/// Use at namespace scope: ZMP_REGISTER_PROCESS(MyWorker);
// T is a type name, which parentheses would break.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define ZMP_REGISTER_PROCESS(T)                                                                        \
    static const bool ZMP_REGISTER_CAT(zmp_process_type_, __LINE__) = [] {                             \
        ::zmp::detail::register_process_type(                                                          \
            typeid(T).name(),                                                                          \
            {[] { return std::unique_ptr<::zmp::Process>(new T()); },                                  \
             [](const ::zmp::Process& p, msgpack::packer<msgpack::sbuffer>& out) {                     \
                 out.pack(static_cast<const T&>(p));                                                   \
             },                                                                                        \
             [](::zmp::Process& p, const msgpack::object& obj) { obj.convert(static_cast<T&>(p)); }}); \
        return true;                                                                                   \
    }()
// NOLINTEND(bugprone-macro-parentheses)

/// Ends the calling process with `code`, like Python's sys.exit: inside a child's target it
/// unwinds the target (destructors run) and the child's exit code is `code`; elsewhere it runs
/// zmp's exit handling (daemon children terminated, others joined) and exits.
[[noreturn]] void exit(int code);

}  // namespace zmp
