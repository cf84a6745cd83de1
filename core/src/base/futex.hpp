#pragma once
// futex(2) on words in shared memory (never FUTEX_PRIVATE: the waiters are other processes).
// Deadlines are absolute steady_clock (CLOCK_MONOTONIC) times, so a wait that is interrupted and
// resumed keeps one deadline.

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <optional>

#include "zmp/detail/deadline.hpp"

namespace zmp::detail {

enum class FutexWait { woken, timed_out };

/// `deadline` as futex(2) takes it: `at` is nullptr for never, else points at `ts`. False when it
/// has passed already.
inline bool futex_deadline(const Deadline& deadline, timespec& ts, timespec*& at) {
    at = nullptr;
    if (const auto& when = deadline.time()) {
        if (when->time_since_epoch().count() <= 0) return false;
        ts = deadline.monotonic_timespec();
        at = &ts;
    }
    return true;
}

/// Sleeps while `word` holds `expected`, until woken or `deadline`. Returns woken also when the
/// word had already changed or a signal interrupted the sleep: the caller looks again.
inline FutexWait futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected, const Deadline& deadline) {
    timespec ts{};
    timespec* at = nullptr;
    if (!futex_deadline(deadline, ts, at)) return FutexWait::timed_out;
    // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time (steady_clock's clock on Linux).
    const long rc = ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_BITSET, expected, at,
                              nullptr, FUTEX_BITSET_MATCH_ANY);
    if (rc != 0 && errno == ETIMEDOUT) return FutexWait::timed_out;
    return FutexWait::woken;
}

/// futex_wait() on two words at once (futex_waitv, Linux 5.16 and later): sleeps while `word` holds
/// `expected` and `other` holds `other_expected`, until either is woken, or `deadline`. Returns
/// nothing if the kernel has no futex_waitv.
inline std::optional<FutexWait> futex_wait_either(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                                                  std::atomic<std::uint32_t>& other, std::uint32_t other_expected,
                                                  const Deadline& deadline) {
    timespec ts{};
    timespec* at = nullptr;
    if (!futex_deadline(deadline, ts, at)) return FutexWait::timed_out;
    struct futex_waitv waits[2] = {};
    waits[0].val = expected;
    waits[0].uaddr = reinterpret_cast<std::uintptr_t>(&word);
    waits[0].flags = FUTEX_32;
    waits[1].val = other_expected;
    waits[1].uaddr = reinterpret_cast<std::uintptr_t>(&other);
    waits[1].flags = FUTEX_32;
    if (::syscall(SYS_futex_waitv, waits, 2, 0, at, CLOCK_MONOTONIC) >= 0) return FutexWait::woken;
    if (errno == ENOSYS) return std::nullopt;
    return errno == ETIMEDOUT ? FutexWait::timed_out : FutexWait::woken;
}

/// Wakes up to `n` sleepers on `word`.
inline void futex_wake(std::atomic<std::uint32_t>& word, int n = INT_MAX) {
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, n, nullptr, nullptr, 0);
}

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t) &&
                  std::atomic<std::uint32_t>::is_always_lock_free,
              "futex words must be plain 32-bit words");

}  // namespace zmp::detail
