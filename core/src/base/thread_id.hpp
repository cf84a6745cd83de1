#pragma once
// The calling thread's kernel id (gettid), asked of the kernel once per thread and fork: a forked
// child's thread has a new id, so the cache is fork-local (fork.hpp). It names an RLock's owner at
// the broker and the thread of a log record.
//
//     const std::uint32_t tid = current_thread_id();

#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

#include "base/fork.hpp"

namespace zmp::detail {

inline std::uint32_t current_thread_id() {
    struct Cached {
        std::uint32_t tid = 0;
    };
    thread_local ForkLocal<Cached> cached;
    Cached& me = cached.get();
    if (me.tid == 0) me.tid = static_cast<std::uint32_t>(::syscall(SYS_gettid));
    return me.tid;
}

}  // namespace zmp::detail
