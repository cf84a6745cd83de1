#pragma once
// Popen: a started child as its parent watches it (Python's Popen objects): its pid, a descriptor
// that becomes readable when it ends, its exit code, signals. Each start method supplies one.

#include <sys/types.h>

#include <optional>

namespace zmp::detail {

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

/// Sends `signal` through `pidfd`, so that a recycled pid can never receive it. Nothing happens if
/// the process is gone; OSError for other failures.
void signal_through_pidfd(int pidfd, int signal);

}  // namespace zmp::detail
