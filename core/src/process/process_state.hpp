#pragma once
// The shared state behind zmp::Process handles, and Popen: how a started child is watched,
// reaped and signalled. Each start method supplies its own Popen.

#include <sys/types.h>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "zmp/process.hpp"
#include "zmp/timeout.hpp"

namespace zmp::detail {

/// A started child as its parent sees it.
class Popen {
public:
    virtual ~Popen() = default;
    virtual pid_t pid() const = 0;
    /// A descriptor that becomes readable when the child has ended.
    virtual int sentinel() const = 0;
    /// The exit code if the child has ended (reaping it), without blocking.
    virtual std::optional<int> poll() = 0;
    /// Sends `signal` unless the child has already ended.
    virtual void send_signal(int signal) = 0;
};

/// A direct child of this process (made by fork or spawn): watched through a pidfd, reaped with
/// waitpid.
class WaitpidPopen final : public Popen {
public:
    explicit WaitpidPopen(pid_t pid);
    ~WaitpidPopen() override;
    pid_t pid() const override { return pid_; }
    int sentinel() const override { return pidfd_; }
    std::optional<int> poll() override;
    void send_signal(int signal) override;

private:
    pid_t pid_;
    int pidfd_;
    std::optional<int> exitcode_;
};

/// Converts a waitpid status to Python's exitcode: N for exit(N), -N for signal N.
int exitcode_from_status(int status);

/// zmp::exit() inside a child's target unwinds to the bootstrap with this; it is not a
/// std::exception, so that `catch (const std::exception&)` in user code does not swallow it.
struct SystemExit {
    int code;
};

/// What the start methods need of a Process beyond its public face.
struct ProcessAccess {
    /// Sets the callable a rebuilt process runs (spawn and forkserver children).
    static void set_local_target(Process& process, std::function<void()> target);
    /// Runs the process's run() as a child's whole life and exits with its exit code.
    [[noreturn]] static void run_child(Process& process);
    /// True on the main thread of this process.
    static bool on_main_thread();
};

struct ProcessState {
    enum class Role { child, current };

    mutable std::mutex mutex;
    Role role = Role::child;
    pid_t creator = 0;  // the process that may start, join and signal it
    std::string name;
    bool daemon = false;
    std::vector<int> identity;
    std::optional<StartMethod> method;  // empty: the default, decided by start()
    std::function<void()> target;       // dropped after start()
    TravelTarget travel;                // how the target reaches a spawn or forkserver child
    std::unique_ptr<Popen> popen;       // set by start()
    std::optional<int> exitcode;        // cached once known
    bool closed = false;

    /// Exit code if ended; reaps. Caller holds `mutex`.
    std::optional<int> poll_locked();
};

}  // namespace zmp::detail
