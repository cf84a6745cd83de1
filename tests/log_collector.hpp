#pragma once
// A handler that collects what reaches the root's handlers, for the logging tests.

#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "zmp/logging.hpp"

namespace test_util {

using zmp::LogLevel;
using zmp::LogRecord;

// Collects what reaches the root's handlers; removes its handler (and restores the level) when
// the test ends, since the generated runs of a test share one process.
class Collector {
public:
    explicit Collector(LogLevel level = LogLevel::info)
        : previous_(zmp::get_logger().level()), handler_([this](const LogRecord& r) {
              std::lock_guard lock(mutex_);
              records_.push_back(r);
          }) {
        zmp::get_logger().set_level(level);
        zmp::get_logger().add_handler(handler_);
    }
    ~Collector() {
        zmp::get_logger().remove_handler(handler_);
        zmp::get_logger().set_level(previous_);
    }
    /// Everything that has reached the root so far, once written.
    std::vector<LogRecord> records() {
        zmp::get_logger().flush();
        std::lock_guard lock(mutex_);
        return records_;
    }
    std::vector<std::string> messages() {
        std::vector<std::string> out;
        for (const auto& r : records()) out.push_back(r.message);
        return out;
    }
    zmp::CallbackHandler& handler() { return handler_; }
    /// The first record whose message contains `text`, waited for up to 60 s (a record another
    /// thread logs — the broker's, a dispatcher's — may come a moment after the event it tells of).
    std::optional<LogRecord> wait_for(const std::string& text) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        do {
            for (const auto& r : records())
                if (r.message.find(text) != std::string::npos) return r;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        } while (std::chrono::steady_clock::now() < until);
        return std::nullopt;
    }
    /// The messages so far that contain `text`.
    std::vector<std::string> messages_with(const std::string& text) {
        std::vector<std::string> out;
        for (const auto& r : records())
            if (r.message.find(text) != std::string::npos) out.push_back(r.message);
        return out;
    }

private:
    LogLevel previous_;
    std::mutex mutex_;
    std::vector<LogRecord> records_;
    zmp::CallbackHandler handler_;
};

}  // namespace test_util
