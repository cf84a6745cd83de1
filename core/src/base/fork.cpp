#include "base/fork.hpp"

#include <pthread.h>

// clang's AddressSanitizer runtime: its allocator is locked across fork (see below). GCC's is a
// shared library that exports none of the calls this needs.
#if defined(__clang__) && defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ZMP_CLANG_ASAN 1
#endif
#endif
#ifndef ZMP_CLANG_ASAN
#define ZMP_CLANG_ASAN 0
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

#if ZMP_CLANG_ASAN
// fork() under clang 14's AddressSanitizer, whose runtime is linked statically into each program.
// Its allocator has no fork handlers of its own (later LLVM releases added them): a child forked
// while another thread of its parent held one of the allocator's locks (a size-class region, the
// thread registry, a bucket of the stack depot that records every allocation's stack) would inherit
// it held, and its first allocation needing it would hang for ever. zmp's background threads (the
// embedded broker, ZeroMQ's I/O threads) allocate while they work, so the last prepare step takes
// those locks, as LeakSanitizer does to stop the world, and the first parent/child step gives them
// back. Between the two this thread must not allocate: nothing runs there but fork itself.
}  // namespace
}  // namespace zmp::detail
namespace __lsan {
void LockThreadRegistry();
void UnlockThreadRegistry();
void LockAllocator();
void UnlockAllocator();
}  // namespace __lsan
namespace __sanitizer {
void StackDepotLockAll();
void StackDepotUnlockAll();
}  // namespace __sanitizer
namespace zmp::detail {
namespace {

void lock_sanitizer_allocator() {
    __lsan::LockThreadRegistry();
    __lsan::LockAllocator();
    __sanitizer::StackDepotLockAll();
}

void unlock_sanitizer_allocator() {
    __sanitizer::StackDepotUnlockAll();
    __lsan::UnlockAllocator();
    __lsan::UnlockThreadRegistry();
}

#else
void lock_sanitizer_allocator() {}
void unlock_sanitizer_allocator() {}
#endif

// Highest layer first; within a layer, the latest registration first.
void run_prepare() {
    Registry& r = registry();
    r.mutex.lock();
    for (int layer = static_cast<int>(ForkLayer::service); layer >= 0; --layer)
        for (std::size_t i = r.count; i-- > 0;)
            if (static_cast<int>(r.entries[i].layer) == layer && r.entries[i].handlers.prepare)
                r.entries[i].handlers.prepare();
    lock_sanitizer_allocator();
}

// Lowest layer first; within a layer, in order of registration.
void run_after(void (*ForkHandlers::*which)()) {
    unlock_sanitizer_allocator();
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
