#pragma once
// Logging across processes: Python's multiprocessing.get_logger() and log_to_stderr(), with the
// QueueHandler / QueueListener plumbing that Python leaves to its users built in.
//
//     auto& log = zmp::log_to_stderr(zmp::LogLevel::info);    // [INFO/MainProcess] ...
//     zmp::Process p([] { zmp::get_logger().info("worker {} started", 7); });   // [INFO/Process-1] worker 7 started
//
// Where records go. Every process has one logger (get_logger()) with a level; a record below it
// costs one atomic load and is never formatted. A record at or above it, logged in any process of
// the run — a child made by fork, spawn or forkserver, a pool worker, a grandchild — is sent to
// the root process, where one thread writes it to the root's handlers: lines of different
// processes never mix within a line, and records keep the order of cause and effect (a record
// logged before start() of a child comes before all of that child's records, one logged after
// join() after all of them). Handlers (stderr, a file, a rotating file, a callback) belong to the
// root; until it has any, records are written to the root's stderr in the default format.
//
// Levels are Python's numbers: subdebug 5, debug 10, info 20, subwarning 25, warning 30, error 40,
// critical 50. The default level is warning, as Python's multiprocessing logger is quiet. A child
// starts with the level its parent had when it started it (Python's children inherit it too).
//
// Messages use {}-placeholders ({fmt}'s syntax: "{}", "{:>8}", "{:.2f}", "{0}"): arithmetic values,
// strings, pointers, and any type with an operator<< (a zmp::Process, for one). With no arguments
// the text is the message as it is, braces included. A format string that does not match its
// arguments raises ValueError from the logging call.
//
// Line format (Handler::set_format) uses spdlog's pattern flags, with zmp's record fields:
//     %l  level name (Python's %(levelname)s: "INFO"; "stdout"/"stderr" for captured output)
//     %n  process name (%(processName)s)      %P  pid of the process that logged (%(process)d)
//     %N  host name                            %t  thread id (%(thread)d)
//     %v  message (%(message)s)                %s %# %g  source file, line, full path
//     %Y-%m-%d %H:%M:%S,%e  local time (Python's %(asctime)s); %E seconds since the epoch
// The default, kDefaultLogFormat, is Python's "[%(levelname)s/%(processName)s] %(message)s".
//
// Errors: ValueError for a bad format string in a logging call, for handler operations outside
// the root, and for bad handler arguments; OSError when a file handler cannot open its file.
// Sending a record never raises: a child whose root is gone writes its records to its own
// stderr, after a one-line note saying so.
//
// Threading: everything here may be called from any thread. Handlers are called from the root's
// logging thread (or, before the root has started any child, from the thread that logs), one
// record at a time.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "zmp/detail/source_location.hpp"
#include "zmp/log_level.hpp"

namespace zmp {

/// Where a record's message came from: a logging call, or a line a process wrote to its stdout
/// or stderr while its output was captured (capture_output()).
enum class LogOrigin : std::uint8_t { logger, captured_stdout, captured_stderr };

/// One record, as the root's handlers receive it.
struct LogRecord {
    std::chrono::system_clock::time_point time;  // when it was logged, in the process that logged it
    LogLevel level = LogLevel::info;             // captured output: info for stdout, warning for stderr
    LogOrigin origin = LogOrigin::logger;
    std::string process_name;  // "MainProcess", "Process-1", a pool worker's name...
    int pid = 0;
    std::string host;
    std::uint64_t thread_id = 0;  // the kernel's thread id
    std::string message;          // without a trailing newline
    std::string file;             // source file of the logging call; empty for captured output
    std::uint32_t line = 0;
};

/// Python's default multiprocessing format, "[%(levelname)s/%(processName)s] %(message)s".
inline constexpr std::string_view kDefaultLogFormat = "[%l/%n] %v";

/// The line `record` makes under `pattern` (see the top of this file), without a newline.
///     format_record(r) == "[INFO/Process-1] worker 7 started"
std::string format_record(const LogRecord& record, std::string_view pattern = kDefaultLogFormat);

namespace detail {

struct HandlerState;

/// A format string and where the logging call is; made implicitly from any string.
struct FormatString {
    template <class S>
    requires std::is_convertible_v<const S&, std::string_view> FormatString(
        const S& format, SourceLocation where = SourceLocation::current())  // NOLINT: implicit
        : text(format), file(where.file_name()), line(where.line()) {}
    std::string_view text;
    const char* file;
    std::uint32_t line;
};

/// One logging argument, its type erased (formatting happens in the library).
struct FormatArg {
    enum class Kind : std::uint8_t { boolean, character, signed_int, unsigned_int, floating, text, pointer };
    Kind kind = Kind::text;
    union {
        bool boolean;
        char character;
        long long signed_int;
        unsigned long long unsigned_int;
        double floating;
        const void* pointer;
    } value{};
    std::string_view text;  // Kind::text: a view of the argument, or of `owned`
    std::string owned;      // what operator<< made of an argument of another type

    FormatArg() = default;
    FormatArg(const FormatArg&) = delete;
    FormatArg& operator=(const FormatArg&) = delete;
};

template <class>
inline constexpr bool always_false = false;

template <class T>
void make_format_arg(FormatArg& arg, const T& value) {
    using U = std::remove_cvref_t<T>;
    using Kind = FormatArg::Kind;
    if constexpr (std::is_same_v<U, bool>) {
        arg.kind = Kind::boolean, arg.value.boolean = value;
    } else if constexpr (std::is_same_v<U, char>) {
        arg.kind = Kind::character, arg.value.character = value;
    } else if constexpr (std::is_integral_v<U> && std::is_signed_v<U>) {
        arg.kind = Kind::signed_int, arg.value.signed_int = value;
    } else if constexpr (std::is_integral_v<U>) {
        arg.kind = Kind::unsigned_int, arg.value.unsigned_int = value;
    } else if constexpr (std::is_floating_point_v<U>) {
        arg.kind = Kind::floating, arg.value.floating = static_cast<double>(value);
    } else if constexpr (std::is_same_v<U, char*> || std::is_same_v<U, const char*>) {
        arg.kind = Kind::text, arg.text = value != nullptr ? std::string_view(value) : std::string_view("(null)");
    } else if constexpr (std::is_convertible_v<const U&, std::string_view>) {
        arg.kind = Kind::text, arg.text = std::string_view(value);
    } else if constexpr (std::is_pointer_v<U> || std::is_null_pointer_v<U>) {
        arg.kind = Kind::pointer, arg.value.pointer = static_cast<const void*>(value);
    } else if constexpr (requires(std::ostream & out, const U& v) { out << v; }) {
        std::ostringstream out;
        out << value;
        arg.kind = Kind::text, arg.owned = std::move(out).str(), arg.text = arg.owned;
    } else if constexpr (std::is_enum_v<U>) {
        make_format_arg(arg, static_cast<std::underlying_type_t<U>>(value));
    } else {
        static_assert(always_false<U>, "zmp logging: this argument cannot be formatted; give its type an operator<<");
    }
}

}  // namespace detail

/// Where a record is written in the root (Python's logging.Handler): a handle, copies share the
/// handler. Made in any process; added to the root's logger with Logger::add_handler().
class Handler {
public:
    /// Records below `level` are not written by this handler (default: notset, every record).
    void set_level(LogLevel level);
    LogLevel level() const;
    /// The line format (spdlog's pattern syntax, zmp's flags: see the top of this file).
    void set_format(std::string pattern);
    std::string format() const;
    /// Writes out what the handler buffers (a file handler's lines).
    void flush();

    bool operator==(const Handler& other) const { return state_ == other.state_; }
    const std::shared_ptr<detail::HandlerState>& state() const { return state_; }

protected:
    explicit Handler(std::shared_ptr<detail::HandlerState> state) : state_(std::move(state)) {}

private:
    std::shared_ptr<detail::HandlerState> state_;
};

/// The standard stream a StreamHandler writes to.
enum class StdStream { out, err };

/// Python's StreamHandler: lines to this process's stderr (the default) or stdout.
///     zmp::get_logger().add_handler(zmp::StreamHandler(zmp::StdStream::out));
class StreamHandler : public Handler {
public:
    explicit StreamHandler(StdStream stream = StdStream::err);
};

/// Python's FileHandler: lines appended to a file (mode "a"), or to a file emptied first (mode
/// "w"). Lines are flushed whenever the logging thread runs out of records, on flush(), and at
/// exit. ValueError for another mode; OSError if the file cannot be opened.
///     zmp::get_logger().add_handler(zmp::FileHandler("run.log"));
class FileHandler : public Handler {
public:
    explicit FileHandler(const std::string& path, std::string_view mode = "a");
};

/// Python's RotatingFileHandler: when the next line would take the file past max_bytes, the file
/// becomes a backup and a new one starts; backup_count backups are kept. spdlog names them
/// app.1.log, app.2.log (Python: app.log.1). With max_bytes or backup_count 0 the file never
/// rotates, as in Python. OSError if the file cannot be opened.
///     zmp::RotatingFileHandler("app.log", 1 << 20, 5)
class RotatingFileHandler : public Handler {
public:
    RotatingFileHandler(const std::string& path, std::size_t max_bytes, std::size_t backup_count);
};

/// A handler that calls `callback` with each record (Python: a Handler subclass's emit()). Calls
/// are one at a time, on the root's logging thread; an exception the callback throws is reported
/// on stderr and the record dropped. A record the callback logs itself is sent like any other.
///     zmp::CallbackHandler([&](const zmp::LogRecord& r) { seen.push_back(r.message); })
class CallbackHandler : public Handler {
public:
    explicit CallbackHandler(std::function<void(const LogRecord&)> callback);
};

/// The logger of this process (Python's multiprocessing logger). Get it with get_logger().
class Logger {
public:
    template <class... Args>
    void subdebug(detail::FormatString format, const Args&... args) {
        log(LogLevel::subdebug, format, args...);
    }
    template <class... Args>
    void debug(detail::FormatString format, const Args&... args) {
        log(LogLevel::debug, format, args...);
    }
    template <class... Args>
    void info(detail::FormatString format, const Args&... args) {
        log(LogLevel::info, format, args...);
    }
    template <class... Args>
    void subwarning(detail::FormatString format, const Args&... args) {
        log(LogLevel::subwarning, format, args...);
    }
    template <class... Args>
    void warning(detail::FormatString format, const Args&... args) {
        log(LogLevel::warning, format, args...);
    }
    template <class... Args>
    void error(detail::FormatString format, const Args&... args) {
        log(LogLevel::error, format, args...);
    }
    template <class... Args>
    void critical(detail::FormatString format, const Args&... args) {
        log(LogLevel::critical, format, args...);
    }
    /// Logs at `level`; nothing happens (the arguments are not formatted) below this logger's level.
    template <class... Args>
    void log(LogLevel level, detail::FormatString format, const Args&... args) {
        if (!is_enabled_for(level)) return;
        if constexpr (sizeof...(Args) == 0) {
            emit(level, format, nullptr, 0);
        } else {
            detail::FormatArg packed[sizeof...(Args)];
            std::size_t i = 0;
            (detail::make_format_arg(packed[i++], args), ...);
            emit(level, format, packed, sizeof...(Args));
        }
    }

    /// Python's isEnabledFor(): whether a record at `level` would be sent.
    bool is_enabled_for(LogLevel level) const {
        int current = level_.load(std::memory_order_relaxed);
        if (current < 0) current = resolve_level();
        return static_cast<int>(level) >= current;
    }
    /// This process's level (Python's setLevel); children started afterwards take it.
    void set_level(LogLevel level);
    LogLevel level() const;

    /// Handlers live in the root process; elsewhere these raise ValueError. Adding a handler that
    /// is already there does nothing; removing one flushes it.
    void add_handler(const Handler& handler);
    void remove_handler(const Handler& handler);
    std::vector<Handler> handlers() const;

    /// In the root: returns once every record that had reached the root when it was called is
    /// written, and the handlers are flushed. In a child: returns once this process's records
    /// are at the root (they are written soon after).
    void flush();

    Logger(const Logger&) = delete;
    Logger& operator=(const Logger&) = delete;

private:
    friend Logger& get_logger();
    Logger() = default;
    int resolve_level() const;
    void emit(LogLevel level, const detail::FormatString& format, const detail::FormatArg* args, std::size_t count);

    mutable std::atomic<int> level_{-1};  // -1: not known yet in this process (a spawned child reads its parent's)
};

/// Python's multiprocessing.get_logger(): this process's logger.
///     zmp::get_logger().warning("disk {} is {:.0f}% full", disk, percent);
Logger& get_logger();

/// Python's multiprocessing.log_to_stderr(level): in the root, adds a StreamHandler on stderr with
/// the default format (once: later calls add no second one); sets the level when one is given;
/// returns the logger. In a child it only sets the level (its records go to the root's handlers).
///     zmp::log_to_stderr(zmp::LogLevel::info).info("ready");
Logger& log_to_stderr(std::optional<LogLevel> level = std::nullopt);

/// In a child: from now on (until capture_output(false) or exit), every line this process writes
/// to its stdout or stderr — printf, std::cout, write(1, ...), programs it runs that inherit them
/// — reaches the root's handlers as a record tagged with this process's name ("[stdout/Process-1]
/// text"), whatever the logger's level. A last line without a newline is sent at exit. Processes
/// this one starts afterwards inherit the captured descriptors: their lines carry this process's
/// name unless they capture their own. ValueError in the root (its handlers write to its stdio).
///     zmp::Process p([] { zmp::capture_output(); std::puts("hello"); });   // [stdout/Process-1] hello
void capture_output(bool on = true);

/// In any process: every child it starts from now on — whatever its start method, pool workers
/// included — captures its stdout and stderr from before its target's first line, as if the
/// target began with capture_output(); so do the children those start. Lines reach the root's
/// handlers tagged with the child's name. capture_children_output(false): children started
/// afterwards write to the stdout and stderr they inherit, as before. A child that cannot capture
/// (no descriptors left) says so on its stderr and runs uncaptured.
///     zmp::capture_children_output();
///     zmp::Process p({.name = "printer"}, [] { std::puts("hi"); });   // [stdout/printer] hi
void capture_children_output(bool on = true);

}  // namespace zmp
