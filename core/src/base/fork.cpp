#include "base/fork.hpp"

#include <pthread.h>

#if defined(__SANITIZE_ADDRESS__)
#include <dirent.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#endif

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace zmp::detail {
namespace {

constexpr std::size_t kMaxHandlers = 32;

struct Entry {
    ForkLayer layer;
    ForkHandlers handlers;
};

// A fixed table: registering never allocates, and the handlers read it without allocating either.
// The mutex is held from the first prepare to the last parent/child handler, so that a
// registration racing with fork() cannot leave the table half-written in the child.
struct Registry {
    std::mutex mutex;
    std::array<Entry, kMaxHandlers> entries{};
    std::size_t count = 0;
};

Registry& registry() {
    static Registry* made = new Registry;  // never destroyed: forks may happen during exit
    return *made;
}

std::atomic<std::uint64_t> generation{1};

#if defined(__SANITIZE_ADDRESS__)
// fork() under AddressSanitizer. GCC 12's ASan allocator has no fork handlers (glibc's malloc has):
// a child forked while another thread of its parent holds one of the allocator's locks inherits
// it held, and the child's first thread that allocates from that size class hangs for ever. zmp's
// background threads (the embedded broker, ZeroMQ's I/O threads) allocate while they work, so in
// ASan builds the last prepare step waits, for a bounded time, until every other thread of the
// process sleeps in a blocking system call. This narrows the window; nothing closes it.
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

#else
void wait_until_others_asleep() {}
#endif

// Highest layer first; within a layer, the latest registration first.
void run_prepare() {
    Registry& r = registry();
    r.mutex.lock();
    for (int layer = static_cast<int>(ForkLayer::service); layer >= 0; --layer)
        for (std::size_t i = r.count; i-- > 0;)
            if (static_cast<int>(r.entries[i].layer) == layer && r.entries[i].handlers.prepare)
                r.entries[i].handlers.prepare();
    wait_until_others_asleep();
}

// Lowest layer first; within a layer, in order of registration.
void run_after(void (*ForkHandlers::*which)()) {
    Registry& r = registry();
    for (int layer = 0; layer <= static_cast<int>(ForkLayer::service); ++layer)
        for (std::size_t i = 0; i < r.count; ++i)
            if (static_cast<int>(r.entries[i].layer) == layer && r.entries[i].handlers.*which)
                (r.entries[i].handlers.*which)();
    r.mutex.unlock();
}

void run_parent() { run_after(&ForkHandlers::parent); }
void run_child() {
    generation.fetch_add(1, std::memory_order_acq_rel);
    run_after(&ForkHandlers::child);
}

}  // namespace

void on_fork(ForkLayer layer, ForkHandlers handlers) {
    static const bool installed = ::pthread_atfork(run_prepare, run_parent, run_child) == 0;
    (void)installed;
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    if (r.count == kMaxHandlers) {
        std::fputs("zmp: too many fork handlers (raise kMaxHandlers in base/fork.cpp)\n", stderr);
        std::abort();
    }
    r.entries[r.count++] = Entry{layer, handlers};
}

std::uint64_t fork_generation() noexcept { return generation.load(std::memory_order_acquire); }

}  // namespace zmp::detail
