#pragma once
// How zmp spells timeouts: any std::chrono duration converts to zmp::Seconds (so 100ms, 0.5s and
// 2min all work); zmp::forever means "no timeout" where a call accepts one. A negative timeout
// behaves like zero, as in Python.
//
//     p.join(250ms);             conn.poll(zmp::forever);

#include <chrono>
#include <optional>

namespace zmp {

using Seconds = std::chrono::duration<double>;
/// A timeout that may be absent: std::nullopt (zmp::forever) waits for ever.
using Timeout = std::optional<Seconds>;
inline constexpr std::nullopt_t forever = std::nullopt;

}  // namespace zmp
