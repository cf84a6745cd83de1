// Logging across the processes of a run (zmp/logging.hpp): every record goes to the root, where
// one thread writes it to the handlers.
//
// The carrier is a zmp::Queue made by the root — what Python users build by hand with
// QueueHandler -> multiprocessing.Queue -> QueueListener, here built in:
//  - it already does what a log carrier must: a record is a message, so lines cannot tear; each
//    record arrives exactly once; each process's records arrive in the order it logged them;
//    a put costs no round trip (the process's feeder thread sends batches); and a process that
//    exits right after logging still delivers, because every process waits for its feeder at
//    exit. A SIGKILLed child loses only what its feeder had not sent.
//  - its handle reaches every process the way other handles do: it is kept as the runtime
//    service "log.queue", which forked children inherit and spawn and forkserver children are
//    handed; pool workers are children like the others. The root makes the queue just before
//    its first child starts (a runtime start hook), so no child exists without it.
//  - the root's own records go through the same queue once it exists, so that one thread writes
//    every record; and a process flushes its records to the queue before it starts a child. So
//    records keep causal order: logged before start() of a child, they come before all of the
//    child's; logged after its join(), after all of them.
//    Before the first child (and after the logging thread has stopped at exit) the root writes
//    its records itself, under the handlers' own locks.
// A child whose root is gone cannot deliver; it notices through a pidfd on the root (looked at
// no more than every 10 ms) and writes its records to its own stderr after a one-line note.

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <msgpack.hpp>

#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/fork.hpp"
#include "base/thread_id.hpp"
#include "logging/carrier.hpp"
#include "logging/format.hpp"
#include "logging/handlers.hpp"
#include "base/log.hpp"
#include "runtime/hooks.hpp"
#include "runtime/identity.hpp"
#include "runtime/pidfd.hpp"
#include "runtime/run.hpp"
#include "runtime/startup.hpp"
#include "zmp/errors.hpp"
#include "zmp/queue.hpp"
#include "zmp/transport/codec.hpp"

namespace zmp {
namespace detail {
namespace {

constexpr const char* kQueueService = "log.queue";
constexpr const char* kLevelService = "log.level";
constexpr int kDefaultLevel = static_cast<int>(LogLevel::warning);
constexpr std::chrono::milliseconds kRootCheckInterval{10};

// What travels on the log queue: records, and the root's own control items.
enum class WireKind : std::uint8_t { record = 0, stop = 1, mark = 2, hello = 3 };

// One item of the log queue: sent with views of the sender's data (packed without copies),
// received with strings of its own.
template <class Text>
struct Wire {
    std::uint8_t kind = 0;
    std::int64_t time_ns = 0;
    std::int32_t level = 0;
    std::uint8_t origin = 0;
    Text process_name;
    std::int32_t pid = 0;
    Text host;
    std::uint64_t thread_id = 0;
    Text message;
    Text file;
    std::uint32_t line = 0;
    std::uint64_t mark = 0;
    MSGPACK_DEFINE(kind, time_ns, level, origin, process_name, pid, host, thread_id, message, file, line, mark)
};
using WireOut = Wire<std::string_view>;
using WireIn = Wire<std::string>;

using Clock = std::chrono::system_clock;

// ---- what every record says about the process and thread that logged it ------------------------

const std::string& host_name() {
    static const std::string name = [] {
        char buffer[256] = {};
        if (::gethostname(buffer, sizeof buffer - 1) != 0) return std::string("localhost");
        return std::string(buffer);
    }();
    return name;
}

std::uint64_t current_tid() { return current_thread_id(); }

std::int64_t to_ns(Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// A record as this process would send it, owning its strings (for the root and the fallbacks).
LogRecord make_record(LogLevel level, LogOrigin origin, std::string_view message, std::string_view file,
                      std::uint32_t line) {
    LogRecord r;
    r.time = Clock::now();
    r.level = level;
    r.origin = origin;
    r.message = message;
    r.file = file;
    r.line = line;
    r.host = host_name();
    r.thread_id = current_tid();
    if (awaiting_init()) {
        // A spawned child before zmp::init(): it does not know its name yet.
        r.pid = static_cast<int>(::getpid());
        r.process_name = "pid " + std::to_string(r.pid);
    } else {
        r.pid = static_cast<int>(this_process().pid());
        r.process_name = this_process().name();
    }
    return r;
}

LogRecord from_wire(WireIn&& w) {
    LogRecord r;
    r.time = Clock::time_point(std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(w.time_ns)));
    r.level = static_cast<LogLevel>(w.level);
    r.origin = w.origin <= static_cast<std::uint8_t>(LogOrigin::captured_stderr) ? static_cast<LogOrigin>(w.origin)
                                                                                 : LogOrigin::logger;
    r.process_name = std::move(w.process_name);
    r.pid = w.pid;
    r.host = std::move(w.host);
    r.thread_id = w.thread_id;
    r.message = std::move(w.message);
    r.file = std::move(w.file);
    r.line = w.line;
    return r;
}

WireOut to_wire(const LogRecord& r) {
    WireOut w;
    w.time_ns = to_ns(r.time);
    w.level = static_cast<std::int32_t>(r.level);
    w.origin = static_cast<std::uint8_t>(r.origin);
    w.process_name = r.process_name;
    w.pid = r.pid;
    w.host = r.host;
    w.thread_id = r.thread_id;
    w.message = r.message;
    w.file = r.file;
    w.line = r.line;
    return w;
}

void note(const std::string& text) noexcept { write_text(2, "zmp: " + text + "\n"); }

// Set by the sentinel's destructor, which runs with the thread's other thread_locals; itself
// trivially destructible, so readable to the very end of the thread.
thread_local bool locals_gone = false;
struct LocalsSentinel {
    volatile bool alive = true;
    ~LocalsSentinel() { locals_gone = true; }
};
thread_local LocalsSentinel locals_sentinel;

// Queue<T>::put packs into a per-thread buffer; once the thread's thread_locals are gone (exit
// hooks on the thread that called exit()), the item is packed here instead.
template <class Item>
void put_item(const Queue<Item>& queue, const WireOut& item) {
    if (thread_locals_gone()) {
        Queue<AnyValue>(queue.core()).put(AnyValue(item));
    } else {
        queue.put(item);
    }
}

// ---- the root: handlers and the logging thread ---------------------------------------------------

using HandlerList = std::vector<std::shared_ptr<HandlerState>>;

// Set while this thread writes records to the handlers: a record logged meanwhile (by a callback)
// must not wait for locks the thread holds.
thread_local bool writing_records = false;

class Root {
public:
    static Root& get() {
        static Root* root = new Root();  // never destroyed: records may be logged during exit
        return *root;
    }

    // -- handlers
    void add(std::shared_ptr<HandlerState> handler) {
        std::lock_guard lock(handlers_mutex_);
        for (const auto& h : *handlers_)
            if (h == handler) return;
        auto list = std::make_shared<HandlerList>(*handlers_);
        list->push_back(std::move(handler));
        handlers_ = std::move(list);
    }
    void remove(const std::shared_ptr<HandlerState>& handler) {
        {
            std::lock_guard lock(handlers_mutex_);
            auto list = std::make_shared<HandlerList>(*handlers_);
            std::erase(*list, handler);
            handlers_ = std::move(list);
        }
        try {
            handler->flush();
        } catch (...) {
        }
    }
    std::shared_ptr<const HandlerList> handlers() const {
        std::lock_guard lock(handlers_mutex_);
        return handlers_;
    }
    void add_stderr_handler() {
        std::shared_ptr<HandlerState> handler;
        {
            std::lock_guard lock(handlers_mutex_);
            if (!stderr_handler_) stderr_handler_ = make_stderr_handler();
            handler = stderr_handler_;
        }
        add(std::move(handler));
    }

    // Writes one record to the handlers, or to stderr while there are none.
    void write(const LogRecord& record) noexcept {
        if (writing_records) {  // logged by a handler: the handlers are busy on this thread
            write_record_to_fd(2, record);
            return;
        }
        writing_records = true;
        const auto list = handlers();
        if (list->empty()) {
            emit_to(last_resort(), record);
        } else {
            for (const auto& handler : *list) emit_to(*handler, record);
        }
        writing_records = false;
    }

    void flush_handlers() noexcept {
        const auto list = handlers();
        for (const auto& handler : *list) {
            try {
                handler->flush();
            } catch (...) {
            }
        }
    }

    // -- records of the root itself
    void submit(LogRecord&& record) noexcept {
        {
            std::lock_guard lock(submit_mutex_);
            if (listening_) {
                try {
                    put_item(*out_, to_wire(record));
                    return;
                } catch (...) {
                    // the queue is gone (the broker stopped): written here instead
                }
            }
        }
        write(record);
        flush_handlers();  // written by the caller: at once, as Python's handlers do
    }

    // -- the carrier and its logging thread (started just before the first child)
    void ensure_started() {
        std::lock_guard lock(start_mutex_);
        if (started_) return;
        started_ = true;  // tried once: a failure is said, and children write to their own stderr
        try {
            Queue<WireIn> in;
            Queue<WireOut> out(in.core());
            // The root's feeder must exist before stop() is registered as an exit hook: hooks run
            // in the reverse order of registration, so the logging thread is stopped while the
            // feeder still delivers the stop item.
            put_item(out, WireOut{.kind = static_cast<std::uint8_t>(WireKind::hello)});
            const msgpack::sbuffer handle = transport::encode(in);
            in_ = std::move(in);
            out_ = std::move(out);
            this_run().set_service(kQueueService, std::string(handle.data(), handle.size()));
            // The thread takes no signals: they are the program's, for its own threads.
            sigset_t all, previous;
            ::sigfillset(&all);
            ::pthread_sigmask(SIG_SETMASK, &all, &previous);
            listener_ = std::thread([this] { listen(); });
            ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
            listener_id_ = listener_.get_id();
            owner_ = ::getpid();
            {
                std::lock_guard submit(submit_mutex_);
                listening_ = true;
            }
            add_exit_hook([] { Root::get().stop(); });
        } catch (const std::exception& e) {
            note(std::string("cannot make the queue that carries log records to the root (") + e.what() +
                 "): children write their records to their own stderr");
        }
    }

    // Waits until the root's own records sent so far are on the queue.
    void flush_sent() noexcept {
        try {
            std::unique_lock lock(submit_mutex_);
            if (!listening_) return;
            lock.unlock();
            out_->join_thread();
        } catch (...) {
        }
    }

    // In the root: returns once every record that had reached the queue is written and flushed.
    void flush() {
        if (std::this_thread::get_id() == listener_id_) return flush_handlers();
        std::uint64_t mark;
        {
            std::lock_guard lock(submit_mutex_);
            if (!listening_) {
                flush_handlers();
                return;
            }
            mark = ++marks_sent_;
            put_item(*out_, WireOut{.kind = static_cast<std::uint8_t>(WireKind::mark), .mark = mark});
        }
        out_->join_thread();
        std::unique_lock lock(marks_mutex_);
        marks_done_cv_.wait(lock, [&] { return marks_done_ >= mark || listener_done_; });
    }

private:
    Root() : handlers_(std::make_shared<HandlerList>()) {}

    HandlerState& last_resort() {
        std::lock_guard lock(handlers_mutex_);
        if (!last_resort_) last_resort_ = make_stderr_handler();
        return *last_resort_;
    }

    // The logging thread: takes records off the queue and writes them; when it runs out, it
    // flushes the handlers (a file's lines are then in the file) and waits for more.
    void listen() {
        for (;;) {
            WireIn item;
            try {
                try {
                    item = in_->get_nowait();
                } catch (const Empty&) {
                    flush_handlers();
                    item = in_->get();
                }
            } catch (const ProtocolError& e) {
                note(std::string("an item on the log queue is not a log record; dropped: ") + e.what());
                continue;
            } catch (const std::exception& e) {
                note(std::string("the logging thread stops: ") + e.what());
                break;
            }
            const auto kind = static_cast<WireKind>(item.kind);
            if (kind == WireKind::record) {
                write(from_wire(std::move(item)));
            } else if (kind == WireKind::mark) {
                flush_handlers();
                std::lock_guard lock(marks_mutex_);
                marks_done_ = std::max(marks_done_, item.mark);
                marks_done_cv_.notify_all();
            } else if (kind == WireKind::stop) {
                break;
            }  // hello, and kinds this version does not know: nothing to write
        }
        flush_handlers();
        std::lock_guard lock(marks_mutex_);
        listener_done_ = true;
        marks_done_cv_.notify_all();
    }

    // At exit (the children are finished, so their records are all on the queue): the logging
    // thread writes what is left, then stops; later records are written directly.
    void stop() {
        if (::getpid() != owner_) return;  // a forked child inherits the exit hook, not the thread
        {
            std::lock_guard lock(submit_mutex_);
            if (!listening_) return;
            listening_ = false;
        }
        if (std::this_thread::get_id() == listener_id_) {  // exit() called by a handler
            listener_.detach();
            return;
        }
        try {
            put_item(*out_, WireOut{.kind = static_cast<std::uint8_t>(WireKind::stop)});
            out_->join_thread();
        } catch (...) {
            listener_.detach();  // it cannot be reached; the process ends anyway
            return;
        }
        listener_.join();
        flush_handlers();
    }

    mutable std::mutex handlers_mutex_;
    std::shared_ptr<const HandlerList> handlers_;  // copied on change: writers read without the lock
    std::shared_ptr<HandlerState> stderr_handler_;
    std::shared_ptr<HandlerState> last_resort_;

    std::mutex start_mutex_;
    bool started_ = false;
    std::optional<Queue<WireIn>> in_;
    std::optional<Queue<WireOut>> out_;
    std::thread listener_;
    std::thread::id listener_id_;
    pid_t owner_ = 0;  // the root, which runs the logging thread

    std::mutex submit_mutex_;  // orders "is the logging thread listening?" with the put
    bool listening_ = false;
    std::uint64_t marks_sent_ = 0;

    std::mutex marks_mutex_;
    std::condition_variable marks_done_cv_;
    std::uint64_t marks_done_ = 0;
    bool listener_done_ = false;
};

// ---- this process's link to the root --------------------------------------------------------------

// Made once per process (per fork generation): a forked child makes its own from the services
// it inherited. Never destroyed (a forked child's copy of its parent's is left alone).
struct Link {
    std::uint64_t generation = 0;
    bool root = false;
    std::optional<Queue<WireOut>> carrier;  // in children: the root's log queue
    int root_pidfd = -1;
    std::atomic<std::int64_t> next_root_check{0};
    std::atomic<bool> root_gone{false};
    std::atomic<bool> noted{false};
};

std::atomic<Link*> current_link{nullptr};
std::mutex link_mutex;  // held across fork(), so that a child never inherits it locked

void lock_link() { link_mutex.lock(); }
void unlock_link() { link_mutex.unlock(); }
void forget_parent_link() {
    // The parent's pidfd on the root is no use here; this process opens its own.
    if (Link* parent = current_link.load(std::memory_order_relaxed); parent != nullptr && parent->root_pidfd >= 0) {
        ::close(parent->root_pidfd);
        parent->root_pidfd = -1;
    }
    link_mutex.unlock();
}

// nullptr before zmp::init() in a process made by spawn or the fork server.
Link* link() {
    Link* l = current_link.load(std::memory_order_acquire);
    const std::uint64_t generation = fork_generation();
    if (l != nullptr && l->generation == generation) return l;
    if (awaiting_init()) return nullptr;
    ThisRun& run = this_run();
    std::lock_guard lock(link_mutex);
    l = current_link.load(std::memory_order_acquire);
    if (l != nullptr && l->generation == generation) return l;
    auto fresh = std::make_unique<Link>();
    fresh->generation = generation;
    fresh->root = run.is_root();
    if (!fresh->root) {
        const std::string handle = run.service(kQueueService);
        if (!handle.empty()) {
            try {
                fresh->carrier.emplace(transport::decode_as<Queue<WireIn>>(handle.data(), handle.size()).core());
            } catch (const std::exception& e) {
                note(std::string("this process cannot use the root's log queue (") + e.what() +
                     "): its records go to its own stderr");
            }
        }
        fresh->root_pidfd = open_pidfd(run.root_pid());
        if (fresh->root_pidfd < 0) fresh->root_gone.store(true);
    }
    current_link.store(fresh.get(), std::memory_order_release);
    return fresh.release();
}

bool root_is_gone(Link& l) {
    if (l.root_gone.load(std::memory_order_relaxed)) return true;
    const std::int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
    if (now < l.next_root_check.load(std::memory_order_relaxed)) return false;
    l.next_root_check.store(
        now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(kRootCheckInterval).count(),
        std::memory_order_relaxed);
    if (!wait_fd_readable(l.root_pidfd, Deadline::now())) return false;
    l.root_gone.store(true);
    return true;
}

void note_root_gone(Link& l) noexcept {
    if (l.noted.exchange(true)) return;
    try {
        note("the root process (pid " + std::to_string(this_run().root_pid()) + ") is gone: " + this_process().name() +
             " (pid " + std::to_string(this_process().pid()) +
             ") writes its log records to its own stderr from now on");
    } catch (...) {
    }
}

// Each process that starts a child (and so each parent of a spawned one) hands it its level;
// the root makes the log queue before its first child. The records this process sent so far are
// put on the queue first, so that they come before any of the child's.
void before_child_starts() {
    this_run().set_service(kLevelService, std::to_string(static_cast<int>(get_logger().level())));
    if (this_run().is_root()) {
        Root::get().ensure_started();
        Root::get().flush_sent();
    } else {
        flush_link();
    }
}

// Registering makes no part of the runtime (runtime/hooks.hpp), so a static initialiser may do it.
const bool hooks_installed = [] {
    add_start_hook(before_child_starts);
    on_fork(ForkLayer::service, {lock_link, unlock_link, forget_parent_link});
    return true;
}();

Root& require_root(const char* what) {
    Link* l = link();
    if (l == nullptr || !l->root) {
        throw ValueError(std::string(what) +
                         ": log handlers belong to the root process, whose handlers write the records of every "
                         "process of the run");
    }
    return Root::get();
}

}  // namespace

bool thread_locals_gone() noexcept {
    if (locals_gone) return true;
    return !locals_sentinel.alive;  // makes the sentinel on this thread, so that it will tell
}

bool in_root_process() noexcept {
    try {
        Link* l = link();
        return l != nullptr && l->root;
    } catch (...) {
        return false;
    }
}

bool deliver(LogLevel level, LogOrigin origin, std::string_view message, std::string_view file,
             std::uint32_t line) noexcept {
    (void)hooks_installed;
    try {
        Link* l = link();
        if (l == nullptr) return false;
        if (l->root) {
            Root::get().submit(make_record(level, origin, message, file, line));
            return true;
        }
        if (!l->carrier) return false;
        if (root_is_gone(*l)) {
            note_root_gone(*l);
            return false;
        }
        WireOut w;
        w.time_ns = to_ns(Clock::now());
        w.level = static_cast<std::int32_t>(level);
        w.origin = static_cast<std::uint8_t>(origin);
        w.process_name = this_process().name();
        w.pid = static_cast<std::int32_t>(this_process().pid());
        w.host = host_name();
        w.thread_id = current_tid();
        w.message = message;
        w.file = file;
        w.line = line;
        put_item(*l->carrier, w);
        return true;
    } catch (const std::exception& e) {
        note(std::string("a log record could not be sent: ") + e.what());
        return false;
    } catch (...) {
        return false;
    }
}

bool prime_link() noexcept {
    try {
        Link* l = link();
        if (l == nullptr || l->root || !l->carrier || root_is_gone(*l)) return false;
        put_item(*l->carrier, WireOut{.kind = static_cast<std::uint8_t>(WireKind::hello)});
        return true;
    } catch (...) {
        return false;
    }
}

void flush_link() noexcept {
    try {
        Link* l = link();
        if (l != nullptr && !l->root && l->carrier && !root_is_gone(*l)) l->carrier->join_thread();
    } catch (...) {
    }
}

namespace {

bool backend_enabled(LogLevel level) noexcept { return get_logger().is_enabled_for(level); }

void backend_record(LogLevel level, std::string_view message, std::string_view file, std::uint32_t line) noexcept {
    if (deliver(level, LogOrigin::logger, message, file, line)) return;
    try {
        write_record_to_fd(2, make_record(level, LogOrigin::logger, message, file, line));
    } catch (...) {
    }
}

constexpr LogBackend kBackend{backend_enabled, backend_record};
[[maybe_unused]] const bool backend_plugged = (set_log_backend(&kBackend), true);

}  // namespace

}  // namespace detail

Logger& get_logger() {
    static Logger* logger = new Logger();  // never destroyed: records may be logged during exit
    return *logger;
}

Logger& log_to_stderr(std::optional<LogLevel> level) {
    Logger& logger = get_logger();
    if (detail::in_root_process()) detail::Root::get().add_stderr_handler();
    if (level) logger.set_level(*level);
    return logger;
}

int Logger::resolve_level() const {
    // A spawned child takes its parent's level, handed over as a service; a forked child has it
    // already (and so does the root, once anything asked).
    if (detail::awaiting_init()) return detail::kDefaultLevel;
    int level = detail::kDefaultLevel;
    try {
        const std::string text = detail::this_run().service(detail::kLevelService);
        int parsed = 0;
        const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), parsed);
        if (!text.empty() && error == std::errc() && end == text.data() + text.size() && parsed >= 0) level = parsed;
    } catch (...) {
    }
    int expected = -1;
    level_.compare_exchange_strong(expected, level, std::memory_order_relaxed);
    return level_.load(std::memory_order_relaxed);
}

void Logger::set_level(LogLevel level) {
    if (static_cast<int>(level) < 0) throw ValueError("a log level is 0 or more");
    level_.store(static_cast<int>(level), std::memory_order_relaxed);
}

LogLevel Logger::level() const {
    int current = level_.load(std::memory_order_relaxed);
    if (current < 0) current = resolve_level();
    return static_cast<LogLevel>(current);
}

void Logger::emit(LogLevel level, const detail::FormatString& format, const detail::FormatArg* args,
                  std::size_t count) {
    const std::string message =
        count == 0 ? std::string(format.text) : detail::format_message(format.text, args, count);
    if (detail::deliver(level, LogOrigin::logger, message, format.file, format.line)) return;
    detail::write_record_to_fd(2, detail::make_record(level, LogOrigin::logger, message, format.file, format.line));
}

// Records logged before the change are written as they would have been at once (as in Python,
// where handlers are called by the logging call itself): the queue is flushed first.
void Logger::add_handler(const Handler& handler) {
    detail::Root& root = detail::require_root("add_handler");
    root.flush();
    root.add(handler.state());
}

void Logger::remove_handler(const Handler& handler) {
    detail::Root& root = detail::require_root("remove_handler");
    root.flush();
    root.remove(handler.state());
}

std::vector<Handler> Logger::handlers() const {
    struct Rebuilt : Handler {
        explicit Rebuilt(std::shared_ptr<detail::HandlerState> state) : Handler(std::move(state)) {}
    };
    std::vector<Handler> out;
    for (const auto& state : *detail::require_root("handlers").handlers()) out.push_back(Rebuilt(state));
    return out;
}

void Logger::flush() {
    if (detail::in_root_process()) return detail::Root::get().flush();
    detail::flush_link();
}

}  // namespace zmp
