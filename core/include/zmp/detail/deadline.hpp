#pragma once
// zmp::detail::Deadline: the one way zmp turns a timeout into a point in time and back. Every
// blocking call takes one deadline when it starts, so a wait that is interrupted and resumed (a
// signal, a spurious wake-up, a reply for someone else) keeps its bound.
//
// Arithmetic saturates: a timeout too large to represent (an hour or 10^18 ns alike, or
// zmp::forever) is "never", a negative one is "now", as in Python. Nothing here overflows, so a
// hostile "wait for ever" request cannot wrap around into "answer at once".
//
//     const auto deadline = detail::Deadline::after(timeout);   // once, when the call starts
//     while (!ready()) if (!wait_until(deadline)) return false;
//
// Part of zmp's vocabulary (self-contained; any layer may use it). Not a public API.

#include <chrono>
#include <climits>
#include <cstdint>
#include <ctime>
#include <optional>

#include "zmp/timeout.hpp"

namespace zmp::detail {

class Deadline {
public:
    using Clock = std::chrono::steady_clock;

    /// A deadline that never passes.
    static constexpr Deadline never() noexcept { return Deadline(); }
    /// `timeout` from now: zmp::forever (nullopt) is never; negative is now.
    static Deadline after(const Timeout& timeout) noexcept {
        if (!timeout) return never();
        return after_ns(nanoseconds_of(*timeout), Clock::now());
    }
    /// `ns` nanoseconds after `from` (negative: `from`), saturating to never.
    static Deadline after_ns(std::int64_t ns, Clock::time_point from = Clock::now()) noexcept {
        if (ns <= 0) return Deadline(from);
        const auto room = Clock::time_point::max() - from;
        if (std::chrono::nanoseconds(ns) >= room) return never();
        return Deadline(from + std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(ns)));
    }
    /// A deadline that has passed already (a wait that only looks).
    static Deadline now() noexcept { return Deadline(Clock::now()); }
    /// A deadline at an absolute time.
    static constexpr Deadline at(Clock::time_point when) noexcept { return Deadline(when); }

    /// A duration in seconds as whole nanoseconds, saturating at INT64_MAX (and 0 for negatives
    /// and NaN): the one conversion from zmp::Seconds.
    static std::int64_t nanoseconds_of(Seconds timeout) noexcept {
        const double ns = timeout.count() * 1e9;
        if (!(ns > 0)) return 0;
        if (ns >= 9.2e18) return INT64_MAX;
        return static_cast<std::int64_t>(ns);
    }

    constexpr bool is_never() const noexcept { return !when_; }
    /// The point in time, or nullopt for never (futex_wait and condition variables take this).
    constexpr const std::optional<Clock::time_point>& time() const noexcept { return when_; }
    /// The point in time; Clock::time_point::max() for never (for ordering timers).
    constexpr Clock::time_point time_or_max() const noexcept { return when_.value_or(Clock::time_point::max()); }
    bool passed(Clock::time_point now = Clock::now()) const noexcept { return when_ && now >= *when_; }
    /// What is left, never negative; Clock::duration::max() for never.
    Clock::duration remaining(Clock::time_point now = Clock::now()) const noexcept {
        if (!when_) return Clock::duration::max();
        return *when_ > now ? *when_ - now : Clock::duration::zero();
    }
    /// What is left as a poll(2)/zmq_poll timeout: milliseconds rounded up (so a wait does not
    /// wake 1 ms early and spin), -1 for never, at most INT_MAX.
    int poll_ms(Clock::time_point now = Clock::now()) const noexcept {
        if (!when_) return -1;
        if (*when_ <= now) return 0;
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(*when_ - now).count();
        const auto ms = ns / 1'000'000 + (ns % 1'000'000 != 0 ? 1 : 0);
        return ms >= INT_MAX ? INT_MAX : static_cast<int>(ms);
    }

    /// The point in time as a CLOCK_MONOTONIC timespec (steady_clock's clock on Linux), for
    /// futex(2) and pthread_mutex_clocklock; only for a deadline that is not never.
    timespec monotonic_timespec() const noexcept {
        const auto since_epoch = when_.value_or(Clock::time_point::max()).time_since_epoch();
        const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
        return timespec{static_cast<time_t>(secs.count()),
                        static_cast<long>(std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - secs).count())};
    }

    friend constexpr bool operator==(const Deadline&, const Deadline&) = default;

private:
    constexpr Deadline() = default;
    constexpr explicit Deadline(Clock::time_point when) : when_(when) {}

    std::optional<Clock::time_point> when_;
};

}  // namespace zmp::detail
