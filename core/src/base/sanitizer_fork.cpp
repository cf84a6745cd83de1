#include "base/sanitizer_fork.hpp"

#if defined(__SANITIZE_ADDRESS__)

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace zmp::detail {
namespace {

// System calls a thread sleeps in while it holds no allocator lock.
bool blocking_call(long nr) {
    switch (nr) {
        case SYS_epoll_wait:
        case SYS_epoll_pwait:
        case SYS_poll:
        case SYS_ppoll:
        case SYS_futex:
        case SYS_nanosleep:
        case SYS_clock_nanosleep:
        case SYS_read:
        case SYS_recvmsg:
        case SYS_wait4:
        case SYS_waitid:
            return true;
        default:
            return false;
    }
}

// True if every other thread of this process is asleep in a blocking call.
bool others_asleep() {
    const long self = ::syscall(SYS_gettid);
    DIR* tasks = ::opendir("/proc/self/task");
    if (tasks == nullptr) return true;
    bool asleep = true;
    while (dirent* entry = ::readdir(tasks)) {
        if (entry->d_name[0] == '.') continue;
        const long tid = std::strtol(entry->d_name, nullptr, 10);
        if (tid == self) continue;
        char path[64];
        std::snprintf(path, sizeof path, "/proc/self/task/%ld/syscall", tid);
        const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;  // it just ended
        char text[32] = {};
        const ssize_t n = ::read(fd, text, sizeof text - 1);
        ::close(fd);
        // "running", or the number of the system call it is in.
        if (n <= 0 || text[0] < '0' || text[0] > '9' || !blocking_call(std::strtol(text, nullptr, 10))) {
            asleep = false;
            break;
        }
    }
    ::closedir(tasks);
    return asleep;
}

void wait_until_others_asleep() {
    for (int i = 0; i < 4000 && !others_asleep(); ++i) ::usleep(250);  // at most about a second
}

}  // namespace

void install_sanitizer_fork_guard() {
    static const bool installed = ::pthread_atfork(wait_until_others_asleep, nullptr, nullptr) == 0;
    (void)installed;
}

}  // namespace zmp::detail

#else

namespace zmp::detail {
void install_sanitizer_fork_guard() {}
}  // namespace zmp::detail

#endif
