// The handlers the root writes records with, built on spdlog: its sinks (stderr/stdout with a
// console lock, files, rotation) and its pattern formatter, to which zmp adds the flags of its
// own record fields (%l level name, %P pid, %N host). spdlog is compiled into zmp header-only,
// with {fmt} header-only too, so that programs linking zmp inherit neither.

#include <unistd.h>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <cerrno>
#include <cstdio>
#include <mutex>
#include <string>
#include <utility>

#include "logging/carrier.hpp"
#include "logging/handlers.hpp"
#include "base/log.hpp"
#include "zmp/errors.hpp"

namespace zmp {
namespace detail {
namespace {

// The record being formatted on this thread: spdlog's log_msg has no room for zmp's fields, so
// the flags read them here.
thread_local const LogRecord* formatting = nullptr;

struct Formatting {
    explicit Formatting(const LogRecord& record) : previous(std::exchange(formatting, &record)) {}
    ~Formatting() { formatting = previous; }
    const LogRecord* previous;
};

std::string record_level_text(const LogRecord& record) {
    switch (record.origin) {
        case LogOrigin::captured_stdout:
            return "stdout";
        case LogOrigin::captured_stderr:
            return "stderr";
        case LogOrigin::logger:
            break;
    }
    return level_name(record.level);
}

// One of zmp's pattern flags; padding ("%-8l") works as for spdlog's own.
class RecordFlag final : public spdlog::custom_flag_formatter {
public:
    enum class Field { level, pid, host };
    explicit RecordFlag(Field field) : field_(field) {}

    void format(const spdlog::details::log_msg&, const std::tm&, spdlog::memory_buf_t& dest) override {
        if (formatting == nullptr) return;
        std::string text;
        switch (field_) {
            case Field::level:
                text = record_level_text(*formatting);
                break;
            case Field::pid:
                text = std::to_string(formatting->pid);
                break;
            case Field::host:
                text = formatting->host;
                break;
        }
        spdlog::details::scoped_padder padder(text.size(), padinfo_, dest);
        spdlog::details::fmt_helper::append_string_view(text, dest);
    }

    std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<RecordFlag>(field_); }

private:
    Field field_;
};

std::unique_ptr<spdlog::pattern_formatter> make_formatter(const std::string& pattern, std::string eol = "\n") {
    auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::local, std::move(eol));
    formatter->add_flag<RecordFlag>('l', RecordFlag::Field::level);
    formatter->add_flag<RecordFlag>('P', RecordFlag::Field::pid);
    formatter->add_flag<RecordFlag>('N', RecordFlag::Field::host);
    formatter->set_pattern(pattern);
    return formatter;
}

spdlog::level::level_enum spdlog_level(LogLevel level) {
    const int n = static_cast<int>(level);
    if (n >= static_cast<int>(LogLevel::critical)) return spdlog::level::critical;
    if (n >= static_cast<int>(LogLevel::error)) return spdlog::level::err;
    if (n >= static_cast<int>(LogLevel::warning)) return spdlog::level::warn;
    if (n >= static_cast<int>(LogLevel::info)) return spdlog::level::info;
    if (n >= static_cast<int>(LogLevel::debug)) return spdlog::level::debug;
    return spdlog::level::trace;
}

// spdlog's view of a record: it refers to the record's strings.
spdlog::details::log_msg to_msg(const LogRecord& record) {
    spdlog::details::log_msg msg(record.time,
                                 spdlog::source_loc{record.file.c_str(), static_cast<int>(record.line), nullptr},
                                 record.process_name, spdlog_level(record.level), record.message);
    msg.thread_id = static_cast<std::size_t>(record.thread_id);
    return msg;
}

// A handler that writes through an spdlog sink (which locks around each line).
class SinkHandler final : public HandlerState {
public:
    explicit SinkHandler(std::shared_ptr<spdlog::sinks::sink> sink) : sink_(std::move(sink)) {
        use_format(std::string(kDefaultLogFormat));
    }

    void emit(const LogRecord& record) override {
        Formatting scope(record);
        sink_->log(to_msg(record));
    }
    void flush() override { sink_->flush(); }

protected:
    void use_format(const std::string& pattern) override { sink_->set_formatter(make_formatter(pattern)); }

private:
    std::shared_ptr<spdlog::sinks::sink> sink_;
};

// Its format is kept for the callback's own use (handler.format()).
class CallbackHandlerState final : public HandlerState {
public:
    explicit CallbackHandlerState(std::function<void(const LogRecord&)> callback) : callback_(std::move(callback)) {
        if (!callback_) throw ValueError("CallbackHandler needs a callable");
    }

    void emit(const LogRecord& record) override {
        std::lock_guard lock(call_mutex_);
        callback_(record);
    }

private:
    std::function<void(const LogRecord&)> callback_;
    std::mutex call_mutex_;
};

// spdlog reports a file it cannot open with its own exception, which carries the errno.
template <class Make>
std::shared_ptr<spdlog::sinks::sink> open_file_sink(const std::string& path, Make&& make) {
    try {
        return make();
    } catch (const spdlog::spdlog_ex& e) {
        throw OSError("cannot open log file " + path + ": " + e.what(), errno);
    }
}

}  // namespace

void emit_to(HandlerState& handler, const LogRecord& record) noexcept {
    if (static_cast<int>(record.level) < handler.level.load(std::memory_order_relaxed)) return;
    std::string failure;
    try {
        handler.emit(record);
        handler.failing.store(false, std::memory_order_relaxed);
        return;
    } catch (const std::exception& e) {
        failure = e.what();
    } catch (...) {
        failure = "an exception that is not a std::exception";
    }
    if (!handler.failing.exchange(true)) {
        try {
            write_text(2,
                       "zmp: a log handler failed (" + failure + "); its records are dropped until it works again\n");
        } catch (...) {
        }
    }
}

std::shared_ptr<HandlerState> make_stderr_handler() {
    return std::make_shared<SinkHandler>(std::make_shared<spdlog::sinks::stderr_sink_mt>());
}

void write_record_to_fd(int fd, const LogRecord& record) noexcept {
    try {
        write_text(fd, format_record(record) + "\n");
    } catch (...) {
    }
}

}  // namespace detail

std::string format_record(const LogRecord& record, std::string_view pattern) {
    auto format = [&](spdlog::pattern_formatter& formatter) {
        spdlog::memory_buf_t out;
        detail::Formatting scope(record);
        formatter.format(detail::to_msg(record), out);
        return std::string(out.data(), out.size());
    };
    if (detail::thread_locals_gone()) return format(*detail::make_formatter(std::string(pattern), ""));
    // Compiling a pattern costs more than formatting with it: each thread keeps its last one.
    thread_local std::string last_pattern;
    thread_local std::unique_ptr<spdlog::pattern_formatter> formatter;
    if (!formatter || last_pattern != pattern) {
        formatter = detail::make_formatter(std::string(pattern), "");
        last_pattern = pattern;
    }
    return format(*formatter);
}

void Handler::set_level(LogLevel level) { state_->level.store(static_cast<int>(level), std::memory_order_relaxed); }

LogLevel Handler::level() const { return static_cast<LogLevel>(state_->level.load(std::memory_order_relaxed)); }

void Handler::set_format(std::string pattern) { state_->set_format(std::move(pattern)); }

std::string Handler::format() const { return state_->format(); }

void Handler::flush() { state_->flush(); }

StreamHandler::StreamHandler(StdStream stream)
    : Handler(stream == StdStream::err
                  ? detail::make_stderr_handler()
                  : std::make_shared<detail::SinkHandler>(std::make_shared<spdlog::sinks::stdout_sink_mt>())) {}

namespace {
std::shared_ptr<detail::HandlerState> make_file_handler(const std::string& path, std::string_view mode) {
    if (mode != "a" && mode != "w")
        throw ValueError("FileHandler mode must be \"a\" or \"w\", not \"" + std::string(mode) + "\"");
    if (path.empty()) throw ValueError("FileHandler needs a file name");
    return std::make_shared<detail::SinkHandler>(detail::open_file_sink(
        path, [&] { return std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, mode == "w"); }));
}
}  // namespace

FileHandler::FileHandler(const std::string& path, std::string_view mode) : Handler(make_file_handler(path, mode)) {}

namespace {
std::shared_ptr<detail::HandlerState> make_rotating_handler(const std::string& path, std::size_t max_bytes,
                                                            std::size_t backup_count) {
    if (max_bytes == 0 || backup_count == 0) return make_file_handler(path, "a");  // Python: never rotates
    // spdlog keeps at most 200000 files: more than that is surely a mistake.
    if (backup_count > 200000) throw ValueError("RotatingFileHandler keeps at most 200000 backups");
    if (path.empty()) throw ValueError("RotatingFileHandler needs a file name");
    return std::make_shared<detail::SinkHandler>(detail::open_file_sink(
        path, [&] { return std::make_shared<spdlog::sinks::rotating_file_sink_mt>(path, max_bytes, backup_count); }));
}
}  // namespace

RotatingFileHandler::RotatingFileHandler(const std::string& path, std::size_t max_bytes, std::size_t backup_count)
    : Handler(make_rotating_handler(path, max_bytes, backup_count)) {}

CallbackHandler::CallbackHandler(std::function<void(const LogRecord&)> callback)
    : Handler(std::make_shared<detail::CallbackHandlerState>(std::move(callback))) {}

}  // namespace zmp
