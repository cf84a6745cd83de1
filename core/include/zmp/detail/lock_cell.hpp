#pragma once
// The state of a zmp::ValueLock as it lies in shared memory, and the thread tokens that name its
// holder. ValueLock's lock() and unlock() are inline: a lock already held is taken again without a
// call. The process-shared mutex itself is opaque here — bytes that core/src/shm/sharedctypes.cpp
// treats as a robust, process-shared pthread mutex (it checks their size and alignment) — so the
// public headers carry no pthread type.
//
// Not a public API: zmp/sharedctypes.hpp's inline code needs it, so it is installed with the headers.

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace zmp::detail {

/// Room for glibc's pthread_mutex_t on this architecture (sharedctypes.cpp checks it fits).
#if defined(__x86_64__)
inline constexpr std::size_t kMutexBytes = 40;
#else
inline constexpr std::size_t kMutexBytes = 48;
#endif

/// A ValueLock's state, inside the shared segment.
struct LockCell {
    alignas(8) unsigned char mutex[kMutexBytes];  // robust, process-shared, not recursive (recursion is counted here)
    std::uint64_t owner;                          // thread_token() of the holding thread; 0 when free
    std::int32_t owner_pid;                       // the holder's process; 0 when free
    std::uint32_t depth;                          // how many times the holder has taken it
    std::uint32_t owner_died;
};

/// A random number naming the calling thread while it lives, so that "this thread holds the
/// lock" survives pid and tid reuse (a dead holder's token, left in the cell, is nobody else's).
/// A forked child's thread gets a new one: its parent's holds are not its own.
extern constinit thread_local std::uint64_t current_thread_token;
std::uint64_t new_thread_token();
inline std::uint64_t thread_token() { return current_thread_token != 0 ? current_thread_token : new_thread_token(); }
inline std::atomic_ref<std::uint64_t> owner_of(LockCell& cell) { return std::atomic_ref<std::uint64_t>(cell.owner); }

}  // namespace zmp::detail
