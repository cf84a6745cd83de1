#pragma once
// zmp's own records (a worker died, a lock was freed after its owner died...): the internal way
// into the run's logging, for any component. It pulls in no logging library: callers build the
// message themselves, and only when log_enabled() says the record would be sent.
//
//     if (detail::log_enabled(LogLevel::info)) detail::log_record(LogLevel::info, "worker " + name + " replaced");
//
// log_record() never throws and never waits for anything but a queue push: it is safe on any
// thread (a dispatcher, the broker's), during exit, in a process that has no zmp state yet.

#include <source_location>
#include <string_view>

#include "zmp/logging.hpp"

namespace zmp::detail {

/// Whether a record at `level` from this process would be sent: one atomic load.
inline bool log_enabled(LogLevel level) noexcept {
    try {
        return get_logger().is_enabled_for(level);
    } catch (...) {
        return false;
    }
}

/// Sends one record of this process's logger, as Logger::log() does with a finished message.
void log_record(LogLevel level, std::string_view message,
                std::source_location where = std::source_location::current()) noexcept;

}  // namespace zmp::detail
