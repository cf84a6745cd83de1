#include "runtime/pidfd.hpp"

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "zmp/errors.hpp"

namespace zmp::detail {

int open_pidfd(pid_t pid) {
    // pidfds are always close-on-exec.
    return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

bool wait_fd_readable(int fd, const Deadline& deadline) {
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        const int rc = ::poll(&p, 1, deadline.poll_ms());
        if (rc > 0) return true;
        if (rc == 0) {
            if (deadline.passed()) return false;
            continue;
        }
        if (errno != EINTR) throw_os_error("poll", errno);
    }
}

}  // namespace zmp::detail
