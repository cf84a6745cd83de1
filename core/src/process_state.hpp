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

/// A child made by fork() in this process: watched through a pidfd, reaped with waitpid.
class ForkPopen final : public Popen {
public:
    explicit ForkPopen(pid_t pid);
    ~ForkPopen() override;
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

struct ProcessState {
    enum class Role { child, current };

    mutable std::mutex mutex;
    Role role = Role::child;
    pid_t creator = 0;             // the process that may start, join and signal it
    std::string name;
    bool daemon = false;
    std::vector<int> identity;
    std::function<void()> target;  // dropped after start()
    std::unique_ptr<Popen> popen;  // set by start()
    std::optional<int> exitcode;   // cached once known
    bool closed = false;

    /// Exit code if ended; reaps. Caller holds `mutex`.
    std::optional<int> poll_locked();
};

}  // namespace zmp::detail
