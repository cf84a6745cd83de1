#pragma once
// zmp's own records (a worker died, a lock was freed after its owner died...): the internal way
// into the run's logging, for any component: it lives in base, the lowest. It depends on nothing but base
// and pulls in no logging library: callers build the message themselves, and only when
// log_enabled() says the record would be sent.
//
//     if (detail::log_enabled(LogLevel::info)) detail::log_record(LogLevel::info, "worker " + name + " replaced");
//
// The rest of the logging component (logging.cpp, which sends records to the root) plugs itself
// in when a program uses zmp/logging.hpp; a program that never does pays nothing for it, and its
// processes write zmp's own records of warning and above to their own stderr.
//
// log_record() never throws and never waits for anything but a queue push: it is safe on any
// thread (a dispatcher, the broker's), during exit, in a process that has no zmp state yet. Not
// from code that a log record passes through (the queue feeder's delivery of the log queue's
// items, say): a record about a failure there would come back to the same failure.

#include <cstdint>
#include "zmp/detail/source_location.hpp"
#include <string_view>

#include "zmp/log_level.hpp"

namespace zmp::detail {

/// Whether a record at `level` from this process would be sent.
bool log_enabled(LogLevel level) noexcept;

/// Sends one record of this process's logger, as Logger::log() does with a finished message.
void log_record(LogLevel level, std::string_view message, SourceLocation where = SourceLocation::current()) noexcept;

/// What the logging component plugs in (logging.cpp).
struct LogBackend {
    bool (*enabled)(LogLevel level) noexcept;
    void (*record)(LogLevel level, std::string_view message, std::string_view file, std::uint32_t line) noexcept;
};
void set_log_backend(const LogBackend* backend) noexcept;

/// Writes all of `text` to `fd` (EINTR and short writes retried); gives up silently on an error.
void write_text(int fd, std::string_view text) noexcept;

}  // namespace zmp::detail
