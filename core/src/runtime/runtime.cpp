#include "runtime/runtime.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <ext/stdio_sync_filebuf.h>
#include <stdio_ext.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>
#include <unordered_map>

#include "base/fork.hpp"
#include "process/process_state.hpp"
#include "zmp/errors.hpp"
#include "zmp/process.hpp"

namespace zmp::detail {
namespace {

std::string choose_run_base() {
    for (const char* var : {"TMPDIR", "TEMP", "TMP"}) {
        const char* value = std::getenv(var);
        // Leave room for "/zmp-<pid>-XXXXXX/<endpoint>" within the 107-byte ipc limit.
        if (value != nullptr && *value == '/' && std::strlen(value) < 48) return value;
    }
    return "/tmp";
}

// Segment names are recorded as files in <run dir>/shm; '/' cannot appear in a file name.
std::string segment_marker(const std::string& dir, const std::string& name) {
    std::string file = name;
    for (char& c : file)
        if (c == '/') c = '%';
    return dir + "/shm/" + file;
}

// Unlinks every shared-memory segment recorded in a run directory.
void unlink_recorded_segments(const std::string& dir) {
    DIR* shm = ::opendir((dir + "/shm").c_str());
    if (shm == nullptr) return;
    while (dirent* entry = ::readdir(shm)) {
        std::string name = entry->d_name;
        if (name == "." || name == "..") continue;
        for (char& c : name)
            if (c == '%') c = '/';
        ::shm_unlink(name.c_str());
    }
    ::closedir(shm);
}

// Removes run directories left behind by roots that died without cleaning up (SIGKILL), and
// the shared-memory segments their processes left.
void remove_stale_run_dirs(const std::string& base) {
    DIR* dir = ::opendir(base.c_str());
    if (dir == nullptr) return;
    const uid_t me = ::getuid();
    while (dirent* entry = ::readdir(dir)) {
        int pid = 0;
        if (std::sscanf(entry->d_name, "zmp-%d-", &pid) != 1 || pid <= 0) continue;
        if (::kill(pid, 0) == 0 || errno != ESRCH) continue;  // its root may still be alive
        std::string path = base + "/" + entry->d_name;
        struct stat info {};
        if (::lstat(path.c_str(), &info) != 0 || !S_ISDIR(info.st_mode) || info.st_uid != me) continue;
        unlink_recorded_segments(path);
        std::error_code ignored;
        std::filesystem::remove_all(path, ignored);
    }
    ::closedir(dir);
}

// Sockets of one thread. They belong to the ZeroMQ context of the process that made them; in a
// forked child that context is the parent's, and they are abandoned rather than closed.
struct ThreadSockets {
    std::unordered_map<std::string, std::unique_ptr<zmq::socket_t>> sockets;

    void abandon() {
        for (auto& [key, socket] : sockets) (void)socket.release();
        sockets.clear();
    }
};
thread_local ForkLocal<ThreadSockets> thread_sockets;
// Trivially destructible, so reading it never sets up thread_sockets on a thread that has none.
thread_local bool thread_has_sockets = false;

void flush_stream(std::ostream& stream) {
    // Synced with stdio (the default), the stream keeps no buffer of its own.
    if (dynamic_cast<__gnu_cxx::stdio_sync_filebuf<char>*>(stream.rdbuf()) == nullptr) stream.flush();
}

// A process made by spawn or the fork server carries one of these in its environment until
// zmp::init() reads it.
bool spawned_awaiting_init = [] {
    if (std::getenv("ZMP_SPAWN_FD") == nullptr && std::getenv("ZMP_FORKSERVER_FD") == nullptr) return false;
    // If main() never calls zmp::init() and never touches zmp, end the process anyway, rather
    // than leave the parent waiting for ever: SIGALRM's default action ends it. init() disarms it.
    ::alarm(60);
    std::atexit([] {
        if (spawned_awaiting_init) die_without_init();
    });
    return true;
}();

void atfork_prepare() { Runtime::instance().before_fork(); }
void atfork_parent() { Runtime::instance().after_fork_parent(); }
void atfork_child() { Runtime::instance().after_fork_child(); }

}  // namespace

bool awaiting_init() { return spawned_awaiting_init; }

void init_called() {
    if (spawned_awaiting_init) ::alarm(0);
    spawned_awaiting_init = false;
}

[[noreturn]] void die_without_init() {
    flush_std_streams();
    static const char message[] =
        "zmp: this process was started by the spawn or forkserver start method, but its main() used zmp "
        "(or returned) without calling zmp::init(argc, argv) first. Make zmp::init(argc, argv) the first "
        "line of main(); the child stops here instead of running the parent's program again.\n";
    (void)!::write(2, message, sizeof message - 1);
    ::_exit(70);
}

void flush_std_streams() {
    flush_stream(std::cout);
    flush_stream(std::cerr);
    if (__fpending(stdout) > 0) std::fflush(stdout);
    if (__fpending(stderr) > 0) std::fflush(stderr);
}

int open_pidfd(pid_t pid) {
    // pidfds are always close-on-exec.
    return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

bool wait_fd_readable(int fd, const Deadline& deadline) {
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        const int rc = ::poll(&p, 1, deadline.poll_ms());
        if (rc > 0) return true;
        if (rc == 0) {
            if (deadline.passed()) return false;
            continue;
        }
        if (errno != EINTR) throw_os_error("poll", errno);
    }
}

namespace {
struct RuntimeSetups {
    std::mutex mutex;
    std::vector<void (*)(Runtime&)> setups;
    Runtime* made = nullptr;
};
RuntimeSetups& runtime_setups() {
    static RuntimeSetups* setups = new RuntimeSetups();  // used from static initialisers: never destroyed
    return *setups;
}
}  // namespace

bool Runtime::add_runtime_setup(void (*setup)(Runtime&)) {
    RuntimeSetups& all = runtime_setups();
    std::unique_lock lock(all.mutex);
    all.setups.push_back(setup);
    Runtime* made = all.made;
    lock.unlock();
    if (made != nullptr) setup(*made);
    return true;
}

Runtime& Runtime::instance() {
    // Never destroyed: statics destroyed during exit may still use zmp, and in a forked child the
    // destructor of an inherited context would hang.
    static Runtime* runtime = [] {
        auto* made = new Runtime();
        RuntimeSetups& all = runtime_setups();
        std::unique_lock lock(all.mutex);
        all.made = made;
        const auto setups = all.setups;
        lock.unlock();
        for (auto setup : setups) setup(*made);
        return made;
    }();
    return *runtime;
}

Runtime::Runtime() : pid_(::getpid()), root_pid_(::getpid()) {
    if (spawned_awaiting_init) die_without_init();
    std::size_t filled = 0;
    while (filled < authkey_.size()) {
        ssize_t n = ::getrandom(authkey_.data() + filled, authkey_.size() - filled, 0);
        if (n > 0)
            filled += static_cast<std::size_t>(n);
        else if (errno != EINTR)
            throw_os_error("getrandom", errno);
    }
    on_fork(ForkLayer::runtime, {atfork_prepare, atfork_parent, atfork_child});
    std::atexit(&Runtime::at_exit);
}

const std::shared_ptr<ProcessState>& Runtime::current_state() {
    std::lock_guard lock(mutex_);
    if (!current_ || current_pid_ != pid_) {
        auto state = std::make_shared<ProcessState>();
        state->role = ProcessState::Role::current;
        state->creator = pid_;
        state->name = name_;
        state->daemon = daemon_;
        state->identity = identity_;
        current_ = std::move(state);
        current_pid_ = pid_;
    }
    return current_;
}

int Runtime::self_pidfd() {
    std::lock_guard lock(mutex_);
    if (self_pidfd_ < 0) self_pidfd_ = open_pidfd(pid_);
    return self_pidfd_;
}

bool Runtime::on_target_thread() const {
    return is_child_ && target_running_ && ::pthread_equal(target_thread_, ::pthread_self());
}

void Runtime::set_target_thread(bool running) {
    target_running_ = running;
    target_thread_ = ::pthread_self();
}

void Runtime::set_service(const std::string& key, std::string value) {
    std::lock_guard lock(mutex_);
    services_[key] = std::move(value);
}

std::string Runtime::service(const std::string& key) const {
    std::lock_guard lock(mutex_);
    auto it = services_.find(key);
    return it == services_.end() ? std::string() : it->second;
}

std::map<std::string, std::string> Runtime::services() const {
    std::lock_guard lock(mutex_);
    return services_;
}

void Runtime::adopt_run(pid_t root_pid, std::string run_dir, const Authkey& authkey,
                        std::map<std::string, std::string> services) {
    std::lock_guard lock(mutex_);
    root_pid_ = root_pid;
    run_dir_ = std::move(run_dir);
    authkey_ = authkey;
    services_ = std::move(services);
}

std::vector<int> Runtime::next_child_identity() {
    std::lock_guard lock(mutex_);
    std::vector<int> id = identity_;
    id.push_back(++child_counter_);
    return id;
}

// The broker is the run's best-known service: stored with the others so that every start method
// hands it on the same way.
std::string Runtime::broker_endpoint() const { return service("broker"); }

void Runtime::set_broker_endpoint(std::string endpoint) { set_service("broker", std::move(endpoint)); }

const std::string& Runtime::run_dir() {
    std::lock_guard lock(mutex_);
    if (run_dir_.empty()) {
        const std::string base = choose_run_base();
        remove_stale_run_dirs(base);
        std::string pattern = base + "/zmp-" + std::to_string(root_pid_) + "-XXXXXX";
        if (::mkdtemp(pattern.data()) == nullptr) throw_os_error("cannot create run directory in " + base, errno);
        run_dir_ = pattern;  // mkdtemp makes it 0700
    }
    return run_dir_;
}

void Runtime::remove_run_dir() {
    if (run_dir_.empty()) return;
    unlink_recorded_segments(run_dir_);
    std::error_code ignored;
    std::filesystem::remove_all(run_dir_, ignored);
    run_dir_.clear();
}

zmq::context_t& Runtime::context() {
    std::lock_guard lock(mutex_);
    if (context_ == nullptr) {
        context_ = new zmq::context_t(1);
        context_->set(zmq::ctxopt::blocky, 0);
    }
    return *context_;
}

zmq::socket_ref Runtime::thread_socket(const std::string& key,
                                       const std::function<zmq::socket_t(zmq::context_t&)>& make) {
    ThreadSockets& mine = thread_sockets.get();
    thread_has_sockets = true;
    auto it = mine.sockets.find(key);
    if (it == mine.sockets.end()) {
        auto socket = std::make_unique<zmq::socket_t>(make(context()));
        it = mine.sockets.emplace(key, std::move(socket)).first;
    }
    return zmq::socket_ref(*it->second);
}

void Runtime::close_thread_sockets() {
    if (!thread_has_sockets) return;
    // This process's own sockets are closed; a forked child's inherited ones are abandoned by get().
    thread_sockets.get().sockets.clear();
}

void Runtime::add_start_hook(std::function<void()> hook) {
    std::lock_guard lock(mutex_);
    start_hooks_.push_back(std::move(hook));
}

void Runtime::run_start_hooks() {
    std::vector<std::function<void()>> hooks;
    {
        std::lock_guard lock(mutex_);
        hooks = start_hooks_;
    }
    for (auto& hook : hooks) hook();
}

void Runtime::add_exit_hook(std::function<void()> hook) {
    std::lock_guard lock(mutex_);
    exit_hooks_.push_back(std::move(hook));
}

void Runtime::run_exit_hooks() {
    std::vector<std::function<void()>> hooks;
    {
        std::lock_guard lock(mutex_);
        hooks.swap(exit_hooks_);  // each runs once, even if exit is reached twice
    }
    for (auto it = hooks.rbegin(); it != hooks.rend(); ++it) {
        try {
            (*it)();
        } catch (...) {
        }
    }
}

std::pair<transport::FdChannel, transport::FdChannel> Runtime::private_channel_pair() {
    std::lock_guard lock(mutex_);
    auto pair = transport::FdChannel::pair();
    private_fds_.push_back(pair.first.fd());
    return pair;
}

void Runtime::forget_private_fd(int fd) {
    std::lock_guard lock(mutex_);
    std::erase(private_fds_, fd);
}

void Runtime::register_segment(const std::string& name) {
    const std::string& dir = run_dir();
    ::mkdir((dir + "/shm").c_str(), 0700);
    int fd = ::open(segment_marker(dir, name).c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) throw_os_error("cannot record shared memory segment " + name, errno);
    ::close(fd);
}

void Runtime::unregister_segment(const std::string& name) { ::unlink(segment_marker(run_dir(), name).c_str()); }

void Runtime::add_child(std::shared_ptr<ProcessState> child) {
    std::lock_guard lock(mutex_);
    children_.push_back(std::move(child));
}

std::vector<std::shared_ptr<ProcessState>> Runtime::children() {
    std::lock_guard lock(mutex_);
    return children_;
}

void Runtime::forget_child(const ProcessState* child) {
    std::lock_guard lock(mutex_);
    std::erase_if(children_, [child](const auto& c) { return c.get() == child; });
}

void Runtime::become_child(const ChildIdentity& who) {
    name_ = who.name;
    daemon_ = who.daemon;
    identity_ = who.identity;
    child_counter_ = 0;
    is_child_ = true;
    parent_pid_ = who.parent_pid;
    parent_name_ = who.parent_name;
    // The parent opened a pidfd on itself before forking; this child inherited it.
    parent_pidfd_ = inherited_pidfd_;

    if (daemon_) {
        // A daemon dies with its parent, even when the parent is SIGKILLed. PDEATHSIG fires when
        // the thread that made this process ends, so it serves only when that was the parent's
        // main thread and the parent is this process's parent in the kernel's eyes too (not so
        // for a child of the fork server); otherwise a thread watches the parent's pidfd.
        if (who.parent_forked_from_main_thread && ::getppid() == who.parent_pid) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != who.parent_pid) ::_exit(1);  // it died before prctl took effect
        } else if (parent_pidfd_ >= 0) {
            // std::thread allocates, but a daemon pays that once; ordinary children do not.
            std::thread([fd = parent_pidfd_] {
                wait_fd_readable(fd, Deadline::never());
                ::kill(::getpid(), SIGKILL);
            }).detach();
        } else {
            ::_exit(1);  // the parent is already gone
        }
    }
}

void Runtime::finish_children() {
    // Python's _exit_function: terminate daemonic children, then join every child.
    for (const auto& child : children()) {
        zmp::Process handle(child);
        if (handle.daemon() && handle.is_alive()) handle.terminate();
    }
    for (const auto& child : children()) {
        zmp::Process handle(child);
        try {
            handle.join();
        } catch (const ProcessError&) {
        }
    }
}

[[noreturn]] void Runtime::exit_child(int code) {
    try {
        finish_children();
    } catch (...) {
    }
    run_exit_hooks();
    flush_std_streams();
    close_thread_sockets();
    ::_exit(code);
}

void Runtime::at_exit() {
    Runtime& rt = instance();
    try {
        rt.finish_children();
    } catch (...) {
    }
    rt.run_exit_hooks();
    if (rt.is_root()) {
        std::lock_guard lock(rt.mutex_);
        rt.remove_run_dir();
    }
}

void Runtime::before_fork() { mutex_.lock(); }

void Runtime::after_fork_parent() { mutex_.unlock(); }

void Runtime::after_fork_child() {
    mutex_.unlock();
    // Whatever belonged to the parent stays untouched: the context (its destructor would hang),
    // the parent's children (not ours to join).
    context_ = nullptr;
    if (!children_.empty()) {
        new std::vector<std::shared_ptr<ProcessState>>(std::move(children_));  // leaked on purpose
        children_.clear();
    }
    inherited_pidfd_ = std::exchange(self_pidfd_, -1);
    for (int fd : private_fds_) ::close(fd);
    private_fds_.clear();
    target_running_ = false;
    pid_ = ::getpid();
}

}  // namespace zmp::detail
