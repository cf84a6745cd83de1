#pragma once
// The root's handlers behind zmp::Handler (zmp/logging.hpp). handlers.cpp builds the writing ones
// on spdlog's sinks and its pattern formatter; this header keeps spdlog out of every other file.

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "zmp/logging.hpp"

namespace zmp::detail {

struct HandlerState {
    virtual ~HandlerState() = default;
    /// Writes one record. Thread-safe: each handler serialises its own writes (a line is written
    /// whole). Errors propagate to emit_to().
    virtual void emit(const LogRecord& record) = 0;
    virtual void flush() {}

    void set_format(std::string pattern) {
        use_format(pattern);
        std::lock_guard lock(format_mutex_);
        format_ = std::move(pattern);
    }
    std::string format() const {
        std::lock_guard lock(format_mutex_);
        return format_;
    }

    std::atomic<int> level{static_cast<int>(LogLevel::notset)};
    std::atomic<bool> failing{false};  // its last write failed (said once on stderr)

protected:
    /// Takes a new line format into use (a writing handler compiles it).
    virtual void use_format(const std::string&) {}

private:
    mutable std::mutex format_mutex_;
    std::string format_{kDefaultLogFormat};
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
