#pragma once
// The root's handlers behind zmp::Handler (zmp/logging.hpp). handlers.cpp builds the writing ones
// on spdlog's sinks and its pattern formatter; this header keeps spdlog out of every other file.

#include <atomic>
#include <memory>
#include <string>

#include "zmp/logging.hpp"

namespace zmp::detail {

struct HandlerState {
    virtual ~HandlerState() = default;
    /// Writes one record. Thread-safe: each handler serialises its own writes (a line is written
    /// whole). Errors propagate to emit_to().
    virtual void emit(const LogRecord& record) = 0;
    virtual void flush() {}
    virtual void set_format(std::string pattern) = 0;
    virtual std::string format() const = 0;

    std::atomic<int> level{static_cast<int>(LogLevel::notset)};
    std::atomic<bool> failing{false};  // its last write failed (said once on stderr)
};

/// Writes `record` through `handler` if the handler's level lets it pass. A handler that fails
/// (a full disk, a callback that throws) is reported on stderr once, until it works again.
void emit_to(HandlerState& handler, const LogRecord& record) noexcept;

/// A StreamHandler on stderr in the default format: log_to_stderr()'s, and the root's writer
/// while it has no handler.
std::shared_ptr<HandlerState> make_stderr_handler();

/// Writes `record` to file descriptor `fd` in the default format, in one write(2): for records
/// that have no handler to go to (a child whose root is gone, a record logged by a handler).
void write_record_to_fd(int fd, const LogRecord& record) noexcept;

}  // namespace zmp::detail
