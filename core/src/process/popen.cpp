#include "process/popen.hpp"

#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "runtime/pidfd.hpp"
#include "zmp/errors.hpp"

namespace zmp::detail {

int exitcode_from_status(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return -WTERMSIG(status);
    return 1;
}

void signal_through_pidfd(int pidfd, int signal) {
    if (::syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0) != 0 && errno != ESRCH) {
        throw_os_error("pidfd_send_signal", errno);
    }
}

WaitpidPopen::WaitpidPopen(pid_t pid) : pid_(pid), pidfd_(open_pidfd(pid)) {}

WaitpidPopen::~WaitpidPopen() {
    if (pidfd_ >= 0) ::close(pidfd_);
}

std::optional<int> WaitpidPopen::poll() {
    if (exitcode_) return exitcode_;
    int status = 0;
    pid_t rc;
    do {
        rc = ::waitpid(pid_, &status, WNOHANG);
    } while (rc < 0 && errno == EINTR);
    if (rc == pid_)
        exitcode_ = exitcode_from_status(status);
    else if (rc < 0)
        throw_os_error("waitpid", errno);
    return exitcode_;
}

void WaitpidPopen::send_signal(int signal) {
    if (exitcode_) return;
    signal_through_pidfd(pidfd_, signal);
}

}  // namespace zmp::detail
