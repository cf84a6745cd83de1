// zmp::detail::Deadline: the one timeout arithmetic of zmp saturates instead of overflowing.
#include <catch2/catch.hpp>

#include <climits>
#include <cmath>
#include <limits>

#include "broker/protocol.hpp"
#include "zmp/detail/deadline.hpp"

using namespace std::chrono_literals;
using zmp::detail::Deadline;

TEST_CASE("forever and timeouts too large to represent are never, negative and NaN are now") {
    CHECK(Deadline::after(zmp::forever).is_never());
    CHECK(Deadline::after(zmp::Seconds(1e30)).is_never());
    CHECK(Deadline::after(zmp::Seconds(std::numeric_limits<double>::infinity())).is_never());
    CHECK(Deadline::after_ns(INT64_MAX).is_never());
    CHECK(Deadline::after_ns(INT64_MAX - 1).is_never());
    CHECK_FALSE(Deadline::after(zmp::Seconds(-5)).is_never());
    CHECK(Deadline::after(zmp::Seconds(-5)).passed());
    CHECK(Deadline::after(zmp::Seconds(std::nan(""))).passed());
    CHECK(Deadline::after(0s).passed());
    CHECK(Deadline::now().passed());
}

TEST_CASE("a deadline in an hour has not passed, and its poll timeout is rounded up and never negative") {
    const auto now = Deadline::Clock::now();
    const Deadline hour = Deadline::after_ns(3'600'000'000'000, now);
    CHECK_FALSE(hour.passed(now));
    CHECK(hour.poll_ms(now) == 3'600'000);
    CHECK(Deadline::after_ns(1, now).poll_ms(now) == 1);  // 1 ns left: wait 1 ms, not 0 (no spinning)
    CHECK(Deadline::after_ns(1, now).poll_ms(now + 1h) == 0);
    CHECK(Deadline::never().poll_ms() == -1);
    CHECK(Deadline::never().remaining() == Deadline::Clock::duration::max());
    CHECK(Deadline::after_ns(0, now).remaining(now + 1s) == Deadline::Clock::duration::zero());
}

TEST_CASE("nanoseconds_of saturates at INT64_MAX and never goes negative") {
    CHECK(Deadline::nanoseconds_of(zmp::Seconds(1.5)) == 1'500'000'000);
    CHECK(Deadline::nanoseconds_of(zmp::Seconds(1e300)) == INT64_MAX);
    CHECK(Deadline::nanoseconds_of(zmp::Seconds(-1)) == 0);
    CHECK(Deadline::nanoseconds_of(zmp::Seconds(std::nan(""))) == 0);
}

TEST_CASE("the broker's timeout encoding: forever and huge values decode to never, not to the past") {
    using namespace zmp::detail::broker;
    const auto now = Deadline::Clock::now();
    CHECK(decode_timeout(kForever, now).is_never());
    CHECK(decode_timeout(INT64_MAX, now).is_never());
    CHECK(decode_timeout(INT64_MAX - 1, now).is_never());
    CHECK(decode_timeout(0, now).passed(now));
    CHECK(encode_timeout(zmp::forever) == kForever);
    CHECK(encode_timeout(zmp::Seconds(1e300)) == INT64_MAX);
    CHECK(encode_timeout(Deadline::never()) == kForever);
    CHECK(encode_timeout(Deadline::after_ns(0, now)) == 0);
}
