#pragma once
// The pool's dispatcher: one thread that owns the task table, the workers and their in-flight
// tasks. User threads hand it jobs through a locked queue and a WakeFd; workers are linked to it
// by socket pairs (the dispatcher's ends are private to this process: forked children close them).
//
// Wire (msgpack over the link, FdChannel framing):
//   dispatcher -> worker  [0, [[slot, FunctionId]...], [[task id, slot, <args: array of tuples>]...]]
//                         end of stream: retire
//                         [2] with descriptors: the initializer's, then the worker's status page
//                         (a memfd) last — the first message
//   worker -> dispatcher  [0, [[task id, true, <results array>] | [task id, false, ErrorRecord]...], busy µs]
//                         [1, ErrorRecord]   the initializer failed
// Workers that join over tcp (join.cpp, joined.cpp) speak ZeroMQ: a ROUTER here (one socket
// serves any number of peers, each message names its peer, and ROUTER_MANDATORY turns a send to a
// peer whose connection died into an error — how a lost host is noticed), a DEALER there. Each
// message is one frame holding one of the messages above, plus:
//   worker -> dispatcher  [3, JoinHello]      asks to join (again, after [7])
//                         [6]                 are you there? (the worker heard nothing for a while)
//   dispatcher -> worker  [4, JoinWelcome]    admitted
//                         [5, reason]         refused or dropped: the worker exits with the reason
//                         [6]                 the dispatcher is alive (every heartbeat interval)
//                         [7]                 unknown connection (e.g. after a reconnect): join again
//                         [8]                 retire: the pool is done with this worker
//                         [9]                 renew: it ran maxtasksperchild tasks; a fresh process
//                                             takes its place (worker_main re-executes or replaces it)
//   anyone -> dispatcher  [10]                status? (zmp-status across hosts; no need to join)
//   dispatcher -> it      [10, status map]    pool/status_server.hpp's answer, for this pool alone
// A joined worker has no status page: it runs its tasks in the order they came, so the first of
// its in-flight tasks is the one it was running when it was lost.
//
// The status page holds the id of the task the worker is running; after a death it tells the
// dispatcher which in-flight task was running (it fails or is retried) and which had not started
// or had finished unreported (they go back in the queue).
//
// Neither side trusts the other's numbers. A message is at most kMaxPoolMessage bytes (checked
// before anything is set aside for it). The worker checks every function slot against
// kMaxFunctionSlots and every task's shape: a bad definition fails the tasks of its request, a
// bad task fails itself, and a request it cannot read at all ends the worker with a
// ProtocolError. The dispatcher takes results only for tasks the worker holds, and only as many
// values as the task has items: anything else fails that task with a ProtocolError naming the
// worker; a message it cannot read drops the worker (killed and replaced), failing the task it
// was running with a ProtocolError.

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/wake_fd.hpp"
#include "pool/callback_thread.hpp"
#include "pool/pool_status.hpp"
#include "zmp/authkey.hpp"
#include "zmp/context.hpp"
#include "zmp/detail/pool_job.hpp"
#include "zmp/pipe.hpp"
#include "zmp/transport/fd_channel.hpp"

namespace zmp::detail {

/// The largest message either side of a pool link sends or accepts: a batch of tasks with their
/// arguments, or of results with their values.
inline constexpr std::uint64_t kMaxPoolMessage = std::uint64_t{1} << 30;
/// Room kept in each message for everything but arguments and values (headers, task ids,
/// function identities): one task's arguments or results may take the rest.
inline constexpr std::uint64_t kPoolFrameReserve = std::uint64_t{1} << 20;
/// How many distinct functions one pool runs (function slots are indices below this).
inline constexpr std::uint32_t kMaxFunctionSlots = 1u << 16;

/// What a worker runs before its first task.
struct WorkerInit {
    bool present = false;
    FunctionId function;
    std::string args;
    MSGPACK_DEFINE(present, function, args)
};

/// What a worker says when it joins over tcp.
struct JoinHello {
    std::string name;
    std::string host;
    std::int64_t pid = 0;
    std::string build_id;  // functions travel by address only between equal builds
    MSGPACK_DEFINE(name, host, pid, build_id)
};

/// What the dispatcher answers a worker it admits.
struct JoinWelcome {
    WorkerInit init;
    std::string build_id;
    MSGPACK_DEFINE(init, build_id)
};

/// Message kinds of the tcp link (see above).
enum JoinKind : int {
    kJoinHello = 3,
    kJoinWelcome = 4,
    kJoinRefused = 5,
    kJoinPing = 6,
    kJoinAgain = 7,
    kJoinRetire = 8,
    kJoinRenew = 9,
    kJoinStatus = 10
};

/// How a process joins a pool over tcp (join.cpp).
struct JoinSettings {
    std::string endpoint;
    Authkey authkey{};
    std::string name;  // empty: "<host>-<pid>"
    std::chrono::milliseconds heartbeat{1000};
    std::chrono::milliseconds heartbeat_timeout{2000};
    /// How long it keeps trying to reach a pool it cannot reach (or lost) before it gives up.
    std::chrono::milliseconds grace{60000};
};

/// Serves the pool at settings.endpoint until the pool retires this worker (returns 0) or cannot
/// be reached for settings.grace (returns 1, after saying why on stderr). Throws
/// AuthenticationError (naming the endpoint) when the pool refuses our key, OSError/ValueError for
/// a bad endpoint.
int serve_joined_pool(const JoinSettings& settings);

/// The workers' target: serves tasks from `link` until it reaches end of stream.
void pool_worker_main(Connection link, WorkerInit init);

/// The link this process serves as a pool worker, while it runs a task (null elsewhere): zmp's
/// tests speak the wire protocol to a real dispatcher through it from inside a task.
transport::FdChannel* pool_worker_link();

/// A worker's status page: one word, the id of the task it is running (0: none).
struct StatusPage {
    StatusPage() = default;
    explicit StatusPage(int fd);  // maps a page made by create()
    StatusPage(StatusPage&& other) noexcept;
    StatusPage& operator=(StatusPage&& other) noexcept;
    ~StatusPage();
    /// A new page and the memfd behind it (the caller passes the fd on, then closes it).
    static std::pair<StatusPage, int> create();
    std::uint64_t running() const;
    void set_running(std::uint64_t id);

private:
    std::uint64_t* word_ = nullptr;
};

/// How a pool is made (zmp::PoolOptions, checked here).
struct PoolSettings {
    int processes = 0;  // 0: cpu_count()
    std::optional<int> maxtasksperchild;
    std::optional<StartMethod> context;
    int max_retries = 0;
    std::string bind;  // empty: no joined workers
    std::optional<Authkey> authkey;
    std::chrono::milliseconds heartbeat{1000};
    std::chrono::milliseconds heartbeat_timeout{2000};
};

struct JoinPoint;  // the tcp endpoint joined workers connect to (joined.cpp)

/// The engine of a zmp::Pool: its workers, the dispatcher thread and the callback thread. It
/// knows the results of its jobs only as JobSinks.
class PoolCore final : public ResultHost, public std::enable_shared_from_this<PoolCore> {
public:
    PoolCore(const PoolSettings& settings, TaskFunction initializer, std::string initializer_args, bool has_initializer,
             std::shared_ptr<OwnedFds> initializer_fds);
    ~PoolCore() override;

    /// Starts the workers, then the dispatcher. A worker that cannot start is an error here.
    void start();
    void submit(Job job);
    void close();
    void terminate();
    void join();
    /// Local workers and those joined at the moment.
    int processes() const { return processes_ + joined_count_.load(std::memory_order_relaxed); }
    /// The bound tcp endpoint, empty without one.
    std::string endpoint() const;
    pid_t creator() const { return creator_; }

    // ResultHost.
    void post_callback(std::function<void()> callback) override;
    void wake() override;
    void withdraw() override;

    /// For zmp-status (pool/pool_status.hpp): this pool's packed status, answered by the
    /// dispatcher; nothing once it has finished or if it does not answer in kPoolStatusWait.
    std::optional<std::string> status();

private:
    struct ActiveJob;
    struct Task;
    struct Worker;

    void run();
    void accept_incoming();
    void pump();
    std::optional<std::uint64_t> next_task();
    /// For a local worker: the tasks only a local worker may run first, then next_task().
    std::optional<std::uint64_t> next_local_task();
    /// A task dealt to a joined worker whose arguments hold Connections: set aside for a local
    /// worker, or failed when the pool has no local workers.
    void keep_local(std::uint64_t id);
    bool send_batch(Worker& worker, std::vector<std::uint64_t>& batch);
    bool send_message(Worker& worker, std::span<const std::uint64_t> ids);
    bool read_from(Worker& worker);
    void handle_results(Worker& worker, const msgpack::object& results, std::uint64_t busy_us);
    /// A ProtocolError naming the worker: "pool worker <name> (pid <pid>) sent <what>".
    std::exception_ptr protocol_error(const Worker& worker, const std::string& what) const;
    /// Stops trusting a worker that broke the protocol: it is killed and replaced, and the task
    /// it was running fails with the error.
    void drop_worker(Worker& worker, const std::string& what);
    void finish_task(std::uint64_t id, std::exception_ptr error, const msgpack::object* values);
    void maybe_finish(const std::shared_ptr<ActiveJob>& job);
    void worker_ended(std::size_t index);
    void start_worker();
    std::uint32_t function_slot(const TaskFunction& function);
    void retire_if_done(Worker& worker);
    void break_pool(std::exception_ptr error);
    void abort_everything(std::exception_ptr error);
    void stop_workers();
    void publish_status();
    /// This pool's status map (pool/pool_status.hpp). Dispatcher thread only.
    std::string pack_status();
    /// Hands the tasks a lost worker held back to the queue (those it had not started) or fails
    /// them (the one it was running, with `dropped` if it broke the protocol, else with
    /// `lost_error` unless max_retries allows another try).
    void reclaim_tasks(std::deque<std::uint64_t>& lost, std::uint64_t running, const std::exception_ptr& dropped,
                       const std::exception_ptr& lost_error, const std::string& worker);
    /// The decoded message of a worker (local or joined); false if it dropped the worker.
    bool handle_message(Worker& worker, const char* data, std::size_t size);
    pid_t worker_pid(const Worker& worker) const;

    // Joined workers (joined.cpp).
    void open_join_point(const PoolSettings& settings);
    /// Reads everything joined workers sent; true if anything came.
    bool serve_join_point();
    void answer_status(const std::string& routing_id);
    void admit_joined(const std::string& routing_id, const msgpack::object& hello, const std::string& peer);
    /// False when the worker's connection is gone (the caller loses the worker).
    bool send_to_joined(Worker& worker, const char* data, std::size_t size);
    void send_join_control(const std::string& routing_id, int kind, const std::string& reason = {});
    /// Pings joined workers when due; one whose connection is gone is lost. Returns the
    /// milliseconds until the next ping (-1 without a join point).
    int ping_joined();
    /// Why a task cannot run on joined `worker` (null: it can).
    std::exception_ptr cannot_run_joined(const Worker& worker, std::uint64_t id) const;
    /// Forgets a joined worker and reclaims its tasks; the first it held is taken to be the one it
    /// was running unless `first_was_running` is false (it never received it).
    void joined_lost(Worker& worker, const std::string& how, bool tell_peer, bool first_was_running = true);
    void retire_joined(Worker& worker);
    /// Removes the joined workers that were lost or retired.
    void sweep_joined();
    /// The router's fd for poll(), and whether a message waits already (its fd is edge-triggered).
    int join_point_fd() const;
    bool join_point_readable();

    // Fixed at construction.
    const int processes_;  // local workers
    const std::optional<int> maxtasks_;
    const StartMethod method_;
    const int max_retries_;
    WorkerInit init_;
    const pid_t creator_;
    std::shared_ptr<OwnedFds> init_fds_;  // sent to each worker with its status page
    WakeFd wake_;

    // Shared with user threads, under mutex_.
    std::mutex mutex_;
    std::deque<Job> incoming_;
    bool closed_ = false;
    bool terminate_requested_ = false;
    std::exception_ptr broken_;
    PoolStatusBoard status_;
    bool started_ = false;
    bool joined_ = false;
    std::thread dispatcher_;

    CallbackThread callbacks_;
    std::atomic<bool> withdrawals_{false};  // a job was cancelled: drop the cancelled ones

    // Dispatcher thread only.
    std::vector<std::unique_ptr<Worker>> workers_;
    std::unordered_map<std::uint64_t, Task> tasks_;
    std::deque<std::uint64_t> retries_;
    std::deque<std::uint64_t> local_only_;  // tasks with Connections, waiting for a local worker
    std::deque<std::shared_ptr<ActiveJob>> jobs_;
    std::unordered_map<const void*, std::uint32_t> function_slots_;
    std::vector<FunctionId> function_ids_;
    std::uint64_t next_task_id_ = 1;
    int workers_started_ = 0;
    int idle_deaths_ = 0;
    transport::ChannelMessage incoming_message_;
    std::unique_ptr<JoinPoint> join_;
    std::atomic<int> joined_count_{0};
};

}  // namespace zmp::detail
