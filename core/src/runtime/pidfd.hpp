#pragma once
// pidfds, and waiting for a descriptor to become readable (a pidfd does when its process ends).

#include <sys/types.h>

#include "zmp/detail/deadline.hpp"

namespace zmp::detail {

/// Opens a pidfd (close-on-exec) for `pid`, or returns -1 if the process is already gone.
int open_pidfd(pid_t pid);

/// Waits until `fd` is readable; false once `deadline` passes. EINTR is retried; other poll(2)
/// errors raise OSError.
bool wait_fd_readable(int fd, const Deadline& deadline);

}  // namespace zmp::detail
