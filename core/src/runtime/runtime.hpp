#pragma once
// The runtime of one process (DESIGN.md §3): identity, authkey, run directory, ZeroMQ context,
// per-thread sockets, children, and the exit path. One per process, created on first use and
// never destroyed (it must outlive every static that might use zmp during exit).
//
// fork(): the child must never touch its parent's ZeroMQ objects. A pthread_atfork child handler
// drops (leaks) the inherited context; per-thread socket caches (base/fork.hpp: ForkLocal) made
// before the fork are abandoned, not closed.

#include <pthread.h>
#include <sys/types.h>

#include <zmq.hpp>

#include "zmp/detail/deadline.hpp"
#include "zmp/transport/fd_channel.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace zmp::detail {

struct ProcessState;
using Authkey = std::array<std::uint8_t, 32>;

/// What a new child needs to become itself; filled in by the parent before the child starts.
struct ChildIdentity {
    std::string name;
    bool daemon = false;
    std::vector<int> identity;  // Python's _identity tuple: (1,), (1, 2), ...
    pid_t parent_pid = 0;
    std::string parent_name;
    bool parent_forked_from_main_thread = true;
};

class Runtime {
public:
    static Runtime& instance();

    // Identity of this process.
    const std::string& name() const { return name_; }
    /// This process's pid, kept up to date across fork() (cheaper than the getpid syscall).
    pid_t pid() const { return pid_; }
    bool daemon() const { return daemon_; }
    bool is_root() const { return root_pid_ == ::getpid(); }
    pid_t root_pid() const { return root_pid_; }
    const std::vector<int>& identity() const { return identity_; }
    /// The next child's identity tuple and default name ("Process-1", "Process-1:2", ...).
    std::vector<int> next_child_identity();
    /// The state behind current_process(), made on first use in each process.
    const std::shared_ptr<ProcessState>& current_state();
    pid_t parent_pid() const { return parent_pid_; }
    const std::string& parent_name() const { return parent_name_; }
    int parent_pidfd() const { return parent_pidfd_; }
    /// A pidfd on this process, opened once; a forked child inherits it as its parent's pidfd.
    int self_pidfd();

    const Authkey& authkey() const { return authkey_; }

    /// Named values every process of the run shares (the broker's endpoint, the fork server's
    /// address...): inherited by forked children and handed to spawn and forkserver children.
    void set_service(const std::string& key, std::string value);
    std::string service(const std::string& key) const;
    std::map<std::string, std::string> services() const;

    /// argv as zmp::init() recorded it; spawn and the fork server run this binary with it.
    const std::vector<std::string>& argv() const { return argv_; }
    void set_argv(std::vector<std::string> argv) { argv_ = std::move(argv); }

    /// What a spawn or forkserver child takes over from its run before it becomes itself.
    void adopt_run(pid_t root_pid, std::string run_dir, const Authkey& authkey,
                   std::map<std::string, std::string> services);
    /// The parent's pidfd, for a child whose parent passed one explicitly (spawn, forkserver).
    void set_inherited_parent_pidfd(int fd) { inherited_pidfd_ = fd; }
    /// The endpoint of the broker that serves this process's coordination objects (Lock, Event,
    /// Barrier...), kept as the service "broker": empty until the root starts its embedded broker
    /// or someone sets one. Children get it with the other services.
    std::string broker_endpoint() const;
    void set_broker_endpoint(std::string endpoint);

    /// The private 0700 directory for this run's ipc endpoints, made by the root on first use
    /// (stale ones of dead roots are removed then) and removed when the root exits.
    const std::string& run_dir();

    /// This process's ZeroMQ context, made on first use. Never call it on behalf of another process.
    zmq::context_t& context();

    /// A socket owned by the calling thread, made by `make` on first use under `key`.
    zmq::socket_ref thread_socket(const std::string& key, const std::function<zmq::socket_t(zmq::context_t&)>& make);
    /// Closes the calling thread's sockets (when they belong to this process).
    void close_thread_sockets();

    /// Registers `setup` to run once in each process, as soon as its runtime exists (at once if it
    /// does already). For a module that installs hooks from a static initialiser: making the
    /// runtime there would stop a spawned child, which must not use zmp before zmp::init().
    /// `setup` gets the runtime being made and must not call instance().
    static bool add_runtime_setup(void (*setup)(Runtime&));

    /// Runs `hook` in this process (and its forked children) just before every child starts,
    /// in the parent: services a child needs (the broker) start there.
    void add_start_hook(std::function<void()> hook);
    void run_start_hooks();
    /// Runs `hook` when this process exits — a child through exit_child(), the root through
    /// atexit — after its children are finished and before its run directory goes. Hooks run in
    /// the reverse order of registration. Forked children inherit the registrations.
    void add_exit_hook(std::function<void()> hook);

    /// Shared-memory segments (shm_open names, with the leading '/') made by processes of this
    /// run are recorded in the run directory, so that the root unlinks whatever is left when it
    /// exits, and the next root does it for a root that was killed.
    void register_segment(const std::string& name);
    void unregister_segment(const std::string& name);

    /// A connected pair of channels whose first end is private to this process's own machinery
    /// (a pool dispatcher's end of a worker link): a forked child closes it at once, so that no
    /// copy keeps the link from reaching end of stream. Made and registered atomically with
    /// respect to fork(). Call forget_private_fd() before closing that end.
    std::pair<transport::FdChannel, transport::FdChannel> private_channel_pair();
    void forget_private_fd(int fd);

    // Children of this process.
    void add_child(std::shared_ptr<ProcessState> child);
    /// Children still tracked (started, not yet joined and removed).
    std::vector<std::shared_ptr<ProcessState>> children();
    void forget_child(const ProcessState* child);

    /// Called in a freshly forked child (after the atfork handler) to take on its identity.
    void become_child(const ChildIdentity& who);

    /// Python's _exit_function: terminate daemon children, then join the others.
    void finish_children();
    /// The end of every zmp child: finish children, flush stdio, close sockets, _exit(code).
    [[noreturn]] void exit_child(int code);
    /// True in a process started by zmp (as opposed to the root).
    bool is_child() const { return is_child_; }
    /// True on the thread that runs this child's target, while it runs.
    bool on_target_thread() const;
    void set_target_thread(bool running);

    // fork handlers (pthread_atfork)
    void before_fork();
    void after_fork_parent();
    void after_fork_child();

private:
    Runtime();
    void remove_run_dir();
    static void at_exit();

    mutable std::mutex mutex_;
    std::string name_ = "MainProcess";
    pid_t pid_;
    pid_t root_pid_;
    bool daemon_ = false;
    bool is_child_ = false;
    std::vector<int> identity_;
    int child_counter_ = 0;
    std::shared_ptr<ProcessState> current_;
    pid_t current_pid_ = 0;  // the pid current_ was made for
    pid_t parent_pid_ = 0;
    std::string parent_name_;
    int parent_pidfd_ = -1;
    int self_pidfd_ = -1;
    int inherited_pidfd_ = -1;  // the parent's self_pidfd_, as this child inherited it
    bool target_running_ = false;
    pthread_t target_thread_{};
    Authkey authkey_{};
    std::string run_dir_;
    zmq::context_t* context_ = nullptr;  // leaked on purpose: destroying it in a child hangs
    std::vector<std::shared_ptr<ProcessState>> children_;
    std::vector<std::function<void()>> start_hooks_;
    std::vector<int> private_fds_;
    std::map<std::string, std::string> services_;
    std::vector<std::string> argv_;
    std::vector<std::function<void()>> exit_hooks_;
    void run_exit_hooks();
};

/// True from process start-up (when this process was made by spawn or the fork server) until
/// zmp::init() runs: zmp refuses to work before then, so that a main() without zmp::init() stops
/// with a clear message instead of running the parent's program again.
bool awaiting_init();
void init_called();
[[noreturn]] void die_without_init();

/// Flushes stdout and stderr (and std::cout / std::cerr) if they hold anything; a forked child
/// that has nothing to flush then touches none of their pages.
void flush_std_streams();
/// Opens a pidfd for `pid`, or -1 if the process is already gone.
int open_pidfd(pid_t pid);
/// Waits until `fd` is readable; false once `deadline` passes. EINTR is retried.
bool wait_fd_readable(int fd, const Deadline& deadline);

}  // namespace zmp::detail
