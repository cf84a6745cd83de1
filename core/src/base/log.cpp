// zmp's own records (log.hpp): a place for the logging component to plug into, so that every
// component can log without depending on what carries records to the root.

#include "base/log.hpp"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>

namespace zmp {
namespace detail {
namespace {

std::atomic<const LogBackend*> backend{nullptr};

}  // namespace

void set_log_backend(const LogBackend* plugged) noexcept { backend.store(plugged, std::memory_order_release); }

bool log_enabled(LogLevel level) noexcept {
    if (const LogBackend* b = backend.load(std::memory_order_acquire)) return b->enabled(level);
    return static_cast<int>(level) >= static_cast<int>(LogLevel::warning);  // the default level
}

void log_record(LogLevel level, std::string_view message, SourceLocation where) noexcept {
    if (const LogBackend* b = backend.load(std::memory_order_acquire)) {
        b->record(level, message, where.file_name(), where.line());
        return;
    }
    try {
        std::string line = "[";
        line += level_name(level);
        line += "/pid ";
        line += std::to_string(::getpid());
        line += "] ";
        line += message;
        line += '\n';
        write_text(2, line);
    } catch (...) {
    }
}

void write_text(int fd, std::string_view text) noexcept {
    while (!text.empty()) {
        const ssize_t n = ::write(fd, text.data(), text.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        text.remove_prefix(static_cast<std::size_t>(n));
    }
}

}  // namespace detail

std::string level_name(LogLevel level) {
    switch (level) {
        case LogLevel::notset:
            return "NOTSET";
        case LogLevel::subdebug:
            return "SUBDEBUG";
        case LogLevel::debug:
            return "DEBUG";
        case LogLevel::info:
            return "INFO";
        case LogLevel::subwarning:
            return "SUBWARNING";
        case LogLevel::warning:
            return "WARNING";
        case LogLevel::error:
            return "ERROR";
        case LogLevel::critical:
            return "CRITICAL";
    }
    return "Level " + std::to_string(static_cast<int>(level));  // Python's name for a level it does not know
}

}  // namespace zmp
