#include "broker/server.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>
#include <vector>

#include "base/wake_fd.hpp"
#include "runtime/runtime.hpp"
#include "broker/arena.hpp"
#include "broker/fast_path.hpp"
#include "broker/protocol.hpp"
#include "zmp/errors.hpp"
#include "zmp/transport/zsocket.hpp"
#include "zmp/detail/error_texts.hpp"

namespace zmp::detail {

using namespace broker;

namespace {

using Clock = std::chrono::steady_clock;
constexpr Clock::time_point kNever = Clock::time_point::max();
constexpr std::size_t kMaxClients = kMaxClientRecords - 1;
constexpr std::int64_t kMaxSemaphoreValue = INT32_MAX;

struct Client {
    pid_t pid = 0;
    int pidfd = -1;  // -1 for the broker's own process
    std::uint32_t index = 0;
    std::vector<std::string> peers;                            // routing ids of its connections
    std::unordered_map<std::uint64_t, std::int64_t> holdings;  // semaphore slots it holds
};

// Who sent a request: a connection (one per client thread) of a client process.
struct Caller {
    std::string routing_id;
    Client* client = nullptr;
    std::uint32_t tid = 0;
};

struct Waiter {
    Caller caller;
    std::uint64_t rid = 0;
    std::uint64_t object = 0;
    Clock::time_point deadline = kNever;
    std::int64_t arg = 0;            // lock: depth to restore; barrier: arrival index or timeout; queue get: most items
    std::vector<std::string> batch;  // queue put: the items waiting for room
};

// A queue's item, numbered in the order it came in: items given back (by a consumer that died or
// sat idle on them) return to their place in that order.
struct QueuedItem {
    std::uint64_t seq = 0;
    std::string bytes;
};

// Items of a queue sent to one connection in answer to QUEUE_GET, kept until the consumer has
// taken them all (or died): their cursor (sync_arena.hpp) says which it took.
struct Delivery {
    Client* client = nullptr;
    std::uint32_t slot = 0;
    std::vector<QueuedItem> items;
    std::int64_t seen_word = 0;  // the cursor when last looked at, and since when it is so
    std::chrono::steady_clock::time_point seen_at{};
};

enum class BarrierState { filling, releasing, broken };

// One object's state. A flat record serves every kind; each kind uses its own fields.
struct Object {
    std::uint64_t id = 0;
    Kind kind{};
    std::int64_t slot = -1;           // its state is in the arena (the fast path): the broker only repairs it
    std::deque<std::uint64_t> queue;  // waiter ids, oldest first
    // Lock, RLock
    Client* owner = nullptr;
    std::uint32_t owner_tid = 0;
    std::int64_t depth = 0;
    bool owner_died = false;  // the next acquirer takes it over from a dead owner
    // Semaphore, BoundedSemaphore
    std::int64_t value = 0;
    std::int64_t bound = 0;         // BoundedSemaphore: the initial value
    std::int64_t died_credits = 0;  // slots returned from dead holders, not yet taken
    // Event
    bool flag = false;
    // Barrier
    std::int64_t parties = 0;
    std::int64_t count = 0;
    std::int64_t timeout_ns = kForever;
    bool has_action = false;
    BarrierState state = BarrierState::filling;
    std::optional<Waiter> runner;        // the last arrival, running the action
    std::deque<std::uint64_t> entering;  // arrivals held back while the action runs
    // Queue, JoinableQueue (`queue` holds the waiting getters)
    std::deque<QueuedItem> items;  // in seq order
    std::uint64_t next_seq = 0;
    std::int64_t maxsize = 0;  // <= 0: unbounded
    std::uint64_t max_item = 0;
    std::int64_t unfinished = 0;        // JoinableQueue: put and not yet marked done
    std::deque<std::uint64_t> putters;  // waiters whose items did not fit yet
    std::deque<std::uint64_t> joiners;
    std::set<std::string> holders;  // connections with a delivery of this queue not all taken yet
};

// A request refused: answered with `status` and `text`.
struct Refused {
    Status status;
    std::string text;
};

[[noreturn]] void refuse(Status status, std::string text) { throw Refused{status, std::move(text)}; }

std::int64_t arg(const Request& r, std::size_t i) {
    if (i >= r.nargs) refuse(Status::protocol_error, std::string(op_name(r.op)) + ": missing argument");
    return r.args[i];
}

// A request's timeout as a point in time for the timers (kNever: no timer); saturating.
Clock::time_point deadline_from(std::int64_t timeout_ns, Clock::time_point now) {
    return decode_timeout(timeout_ns, now).time_or_max();
}

bool is_lock(Kind k) { return k == Kind::lock || k == Kind::rlock; }
bool is_queue(Kind k) { return k == Kind::queue || k == Kind::joinable_queue; }

// A reply to QUEUE_GET carries at most this much (and at least one item).
constexpr std::size_t kDeliveryBytes = 1 << 20;
// A consumer whose cursor has not moved for this long while another waits on an empty queue is
// idle: what it received ahead and has not taken goes to the waiting one. A consumer that is
// taking its items keeps them, so that every consumer sees each producer's items in order.
constexpr auto kIdleHolder = std::chrono::milliseconds(20);
constexpr int kIdleCheckMs = 10;

std::uint32_t cursor_taken(std::int64_t word) { return static_cast<std::uint32_t>(word); }
std::uint32_t cursor_limit(std::int64_t word) {
    return static_cast<std::uint32_t>(static_cast<std::uint64_t>(word) >> 32);
}
std::int64_t cursor_word(std::uint32_t taken, std::uint32_t limit) {
    return static_cast<std::int64_t>((static_cast<std::uint64_t>(limit) << 32) | taken);
}
bool is_semaphore(Kind k) { return k == Kind::semaphore || k == Kind::bounded_semaphore; }

}  // namespace

struct Broker::Impl {
    Impl(zmq::context_t& context, Options opts);
    ~Impl();

    void run();
    void serve_socket();
    void handle(const std::string& routing_id, const Request& req);
    void dispatch(const Caller& caller, const Request& req, Object& obj);

    // Replies.
    void reply(const std::string& routing_id, std::uint64_t rid, Status status,
               std::initializer_list<std::int64_t> values = {}, std::string_view text = {});
    void reply(const Waiter& w, Status status, std::initializer_list<std::int64_t> values = {}) {
        reply(w.caller.routing_id, w.rid, status, values);
    }
    void reply_with_batch(const std::string& routing_id, std::uint64_t rid, std::initializer_list<std::int64_t> values,
                          std::string batch);

    // Waiters and deadlines.
    std::uint64_t add_waiter(std::deque<std::uint64_t>& queue, Waiter w);
    Waiter take_waiter(std::uint64_t id);
    void expire(Clock::time_point now);
    void on_timeout(Object& obj, std::uint64_t id);
    int poll_timeout_ms() const;

    // Clients.
    void hello(const std::string& routing_id, const Request& req);
    void create(const Caller& caller, const Request& req);
    void on_death(Client& client);
    bool is_dead(std::uint32_t index) const;

    // Semantics, per kind.
    void lock_acquire(const Caller& caller, const Request& req, Object& obj);
    void lock_release(const Caller& caller, const Request& req, Object& obj, bool all);
    void lock_grant(Object& obj, const Caller& to, std::int64_t depth, std::uint64_t rid);
    void lock_hand_over(Object& obj);
    void semaphore_acquire(const Caller& caller, const Request& req, Object& obj);
    void semaphore_release(const Caller& caller, const Request& req, Object& obj);
    void semaphore_give(Object& obj);
    bool semaphore_take(Object& obj, Client* client);
    void event_wait(const Caller& caller, const Request& req, Object& obj);
    void barrier_wait(const Caller& caller, std::uint64_t rid, std::int64_t timeout_ns, Object& obj);
    void barrier_release(Object& obj);
    void barrier_break(Object& obj);
    void barrier_reset(Object& obj);
    void barrier_admit_entering(Object& obj);
    void queue_put(const Caller& caller, const Request& req, Object& obj);
    void queue_get(const Caller& caller, const Request& req, Object& obj);
    void queue_deliver(Object& obj, const Caller& to, std::uint64_t rid, std::int64_t most);
    void queue_serve(Object& obj);
    std::int64_t queue_size(const Object& obj) const;
    void queue_push(Object& obj, std::string bytes);
    void queue_take_back(Object& obj, const std::string& routing_id, bool leave_first);
    bool queue_recall_idle(Object& obj, Clock::time_point now);
    void check_idle_holders(Clock::time_point now);

    void park_if_asked();

    Options options;
    zmq::socket_t router;
    WakeFd wake;
    std::atomic<bool> stopping{false};
    std::mutex park_mutex;
    std::condition_variable park_cv;
    bool park_requested = false;
    bool parked = false;
    bool finished = false;  // run() has returned
    pid_t self_pid;

    std::unique_ptr<Arena> arena;  // the fast path's shared memory, if offered

    std::unordered_map<pid_t, std::unique_ptr<Client>> clients;
    std::unordered_map<std::uint32_t, Client*> by_index;
    std::unordered_map<std::string, std::pair<Client*, std::uint32_t>> peers;  // routing id -> (client, tid)
    std::vector<std::uint32_t> free_indices;
    std::uint32_t next_index = 1;
    bool clients_changed = true;

    std::unordered_map<std::uint64_t, std::unique_ptr<Object>> objects;
    std::uint64_t next_object = 1;

    std::unordered_map<std::uint64_t, Waiter> waiters;
    std::set<std::pair<Clock::time_point, std::uint64_t>> timers;
    std::uint64_t next_waiter = 1;

    std::map<std::pair<std::string, std::uint64_t>, Delivery> deliveries;  // (connection, queue) -> delivery
    std::vector<std::uint32_t> free_cursors;  // cursor slots of dead connections, for reuse
    std::set<std::uint64_t> starving;         // queues whose getters wait while consumers hold items
    Clock::time_point next_idle_check{};

    std::uint64_t dropped = 0;  // messages that could not be read at all
    std::uint64_t errors = 0;   // requests answered with an error
    msgpack::sbuffer out{256};
};

Broker::Impl::Impl(zmq::context_t& context, Options opts)
    : options(std::move(opts)), self_pid(Runtime::instance().pid()) {
    transport::SocketOptions so;
    so.max_message = kMaxBatchFrame;  // a queue batch; envelopes are checked against kMaxFrame
    so.router_mandatory = true;       // a reply to a peer that is gone fails at once instead of queueing
    router = transport::open_socket(context, zmq::socket_type::router, so);
    try {
        router.bind(options.endpoint);
        if (!options.inproc_endpoint.empty()) router.bind(options.inproc_endpoint);
    } catch (const zmq::error_t& e) {
        throw_os_error("broker cannot bind " + options.endpoint, e.num());
    }
    if (options.shared_memory) arena = std::make_unique<Arena>(Arena::make_prefix(), Arena::Role::owner);
}

Broker::Impl::~Impl() {
    for (auto& [pid, client] : clients)
        if (client->pidfd >= 0) ::close(client->pidfd);
    router.close();
    const std::string ipc = "ipc://";
    if (options.endpoint.rfind(ipc, 0) == 0) ::unlink(options.endpoint.c_str() + ipc.size());
}

void Broker::Impl::reply_with_batch(const std::string& routing_id, std::uint64_t rid,
                                    std::initializer_list<std::int64_t> values, std::string batch) {
    out.clear();
    encode_reply(out, rid, Status::ok, values);
    std::vector<zmq::message_t> frames;
    frames.emplace_back(routing_id.data(), routing_id.size());
    frames.emplace_back(out.data(), out.size());
    frames.push_back(transport::owned_frame(std::move(batch)));
    (void)transport::send_message(router, frames);  // a peer that is gone does not get it
}

void Broker::Impl::reply(const std::string& routing_id, std::uint64_t rid, Status status,
                         std::initializer_list<std::int64_t> values, std::string_view text) {
    out.clear();
    encode_reply(out, rid, status, values, text);
    // A peer that is gone (its process died) simply does not get it.
    (void)transport::send_message(
        router, {zmq::const_buffer(routing_id.data(), routing_id.size()), zmq::const_buffer(out.data(), out.size())});
}

// ---- the loop -------------------------------------------------------------------------------

int Broker::Impl::poll_timeout_ms() const {
    const int idle_check = starving.empty() ? -1 : kIdleCheckMs;
    if (timers.empty()) return idle_check;
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(timers.begin()->first - Clock::now()).count();
    if (left <= 0) return 0;
    const int ms = static_cast<int>(std::min<long long>((left + 999) / 1000, INT_MAX));
    return idle_check < 0 ? ms : std::min(ms, idle_check);
}

void Broker::Impl::park_if_asked() {
    std::unique_lock lock(park_mutex);
    if (!park_requested) return;
    parked = true;
    park_cv.notify_all();
    park_cv.wait(lock, [&] { return !park_requested; });
    parked = false;
}

void Broker::Impl::run() {
    struct Finished {
        Impl& impl;
        ~Finished() {
            std::lock_guard lock(impl.park_mutex);
            impl.finished = true;
            impl.park_cv.notify_all();
        }
    } finished_on_return{*this};
    std::vector<zmq_pollitem_t> items;
    std::vector<Client*> watched;  // watched[i] belongs to items[i + 2]
    while (!stopping.load(std::memory_order_acquire)) {
        park_if_asked();
        if (clients_changed) {
            items.assign({{router.handle(), 0, ZMQ_POLLIN, 0}, {nullptr, wake.fd(), ZMQ_POLLIN, 0}});
            watched.clear();
            for (auto& [pid, client] : clients) {
                if (client->pidfd < 0) continue;
                items.push_back({nullptr, client->pidfd, ZMQ_POLLIN, 0});
                watched.push_back(client.get());
            }
            clients_changed = false;
        }
        const int rc = zmq_poll(items.data(), static_cast<int>(items.size()), poll_timeout_ms());
        if (rc < 0) {
            if (zmq_errno() == EINTR) continue;
            if (zmq_errno() == ETERM) return;
            throw_os_error("broker: zmq_poll", zmq_errno());
        }
        if (items[1].revents != 0) wake.drain();
        // Deaths first: a dead process's queued requests are then refused (its connections are
        // forgotten), and a recycled pid is never mistaken for the dead process.
        std::vector<Client*> dead;
        for (std::size_t i = 0; i < watched.size(); ++i)
            if (items[i + 2].revents != 0) dead.push_back(watched[i]);
        for (Client* client : dead) on_death(*client);
        if (items[0].revents != 0) serve_socket();
        const auto now = Clock::now();
        expire(now);
        if (!starving.empty() && now >= next_idle_check) check_idle_holders(now);
    }
}

void Broker::Impl::serve_socket() {
    std::vector<zmq::message_t> frames;
    // Bounded, so that deadlines and deaths are looked at between bursts.
    for (int n = 0; n < 4096; ++n) {
        try {
            if (!transport::recv_message(router, frames, 3, std::chrono::milliseconds(0))) return;
        } catch (const ProtocolError&) {
            ++dropped;  // more frames than an envelope has
            continue;
        }
        if (frames.size() < 2 || frames[1].size() > static_cast<std::size_t>(kMaxFrame)) {
            ++dropped;
            continue;
        }
        const std::string routing_id = frames[0].to_string();
        std::uint64_t rid = 0;
        Request req;
        std::string_view payload;
        try {
            req = decode_request(frames[1].data(), frames[1].size(), &rid);
            if (frames.size() == 3) {
                if (req.op != Op::queue_put)
                    throw ProtocolError(std::string(op_name(req.op)) + " takes no second frame");
                payload = std::string_view(frames[2].data<char>(), frames[2].size());
                req.payload = &payload;
            }
        } catch (const ProtocolError& e) {
            if (rid == 0) {
                ++dropped;
                continue;
            }
            ++errors;
            reply(routing_id, rid, Status::protocol_error, {}, e.what());
            continue;
        }
        try {
            handle(routing_id, req);
        } catch (const Refused& r) {
            ++errors;
            reply(routing_id, req.rid, r.status, {}, r.text);
        }
    }
}

void Broker::Impl::handle(const std::string& routing_id, const Request& req) {
    if (req.op == Op::hello) return hello(routing_id, req);
    auto peer = peers.find(routing_id);
    if (peer == peers.end()) refuse(Status::protocol_error, "the first message on a connection must be HELLO");
    const Caller caller{routing_id, peer->second.first, peer->second.second};
    if (req.op == Op::create) return create(caller, req);
    if (req.op == Op::keep_holdings) {
        caller.client->holdings.clear();
        return reply(routing_id, req.rid, Status::ok);
    }
    if (req.op == Op::stats) {
        return reply(routing_id, req.rid, Status::ok,
                     {static_cast<std::int64_t>(dropped), static_cast<std::int64_t>(errors),
                      static_cast<std::int64_t>(clients.size()), static_cast<std::int64_t>(objects.size())});
    }
    auto it = objects.find(req.object);
    if (it == objects.end()) refuse(Status::protocol_error, "unknown object " + std::to_string(req.object));
    dispatch(caller, req, *it->second);
}

void Broker::Impl::dispatch(const Caller& caller, const Request& req, Object& obj) {
    if (obj.slot >= 0) refuse(Status::protocol_error, "this object's state is in shared memory: operate on it there");
    auto need = [&](bool ok) {
        if (!ok) refuse(Status::protocol_error, std::string(op_name(req.op)) + " does not apply to this object");
    };
    if (req.payload != nullptr) need(is_queue(obj.kind));
    switch (req.op) {
        case Op::queue_put:
            need(is_queue(obj.kind));
            return queue_put(caller, req, obj);
        case Op::queue_get:
            need(is_queue(obj.kind));
            return queue_get(caller, req, obj);
        case Op::queue_taken:
            need(is_queue(obj.kind));
            return queue_serve(obj);  // no reply: room may have appeared for a waiting put
        case Op::queue_size:
            need(is_queue(obj.kind));
            return reply(caller.routing_id, req.rid, Status::ok, {queue_size(obj)});
        case Op::task_done:
            need(obj.kind == Kind::joinable_queue);
            if (obj.unfinished <= 0) refuse(Status::value_error, "task_done() called too many times");
            if (--obj.unfinished == 0) {
                for (std::uint64_t id : obj.joiners) reply(take_waiter(id), Status::ok, {1});
                obj.joiners.clear();
            }
            return reply(caller.routing_id, req.rid, Status::ok);
        case Op::queue_join: {
            need(obj.kind == Kind::joinable_queue);
            const std::int64_t timeout = arg(req, 0);
            if (obj.unfinished == 0 || timeout == 0) {
                return reply(caller.routing_id, req.rid, Status::ok, {obj.unfinished == 0 ? 1 : 0});
            }
            add_waiter(obj.joiners, Waiter{caller, req.rid, obj.id, deadline_from(timeout, Clock::now()), 0, {}});
            return;
        }
        case Op::acquire:
            need(is_lock(obj.kind) || is_semaphore(obj.kind));
            return is_lock(obj.kind) ? lock_acquire(caller, req, obj) : semaphore_acquire(caller, req, obj);
        case Op::release:
            need(is_lock(obj.kind) || is_semaphore(obj.kind));
            return is_lock(obj.kind) ? lock_release(caller, req, obj, false) : semaphore_release(caller, req, obj);
        case Op::release_all:
            need(is_lock(obj.kind));
            return lock_release(caller, req, obj, true);
        case Op::owned:
            need(is_lock(obj.kind));
            return reply(caller.routing_id, req.rid, Status::ok,
                         {obj.owner == caller.client && obj.owner_tid == caller.tid ? 1 : 0});
        case Op::get_value:
            need(is_semaphore(obj.kind));
            return reply(caller.routing_id, req.rid, Status::ok, {obj.value});
        case Op::event_set:
            need(obj.kind == Kind::event);
            obj.flag = true;
            while (!obj.queue.empty()) {
                reply(take_waiter(obj.queue.front()), Status::ok, {1});
                obj.queue.pop_front();
            }
            return reply(caller.routing_id, req.rid, Status::ok);
        case Op::event_clear:
            need(obj.kind == Kind::event);
            obj.flag = false;
            return reply(caller.routing_id, req.rid, Status::ok);
        case Op::event_is_set:
            need(obj.kind == Kind::event);
            return reply(caller.routing_id, req.rid, Status::ok, {obj.flag ? 1 : 0});
        case Op::event_wait:
            need(obj.kind == Kind::event);
            return event_wait(caller, req, obj);
        case Op::cond_wait: {
            need(obj.kind == Kind::condition);
            const auto deadline = deadline_from(arg(req, 0), Clock::now());
            reply(caller.routing_id, req.rid, Status::registered);
            // A zero timeout expires on the next turn of the loop, after the lock's release.
            add_waiter(obj.queue, Waiter{caller, req.rid, obj.id, deadline, 0});
            return;
        }
        case Op::cond_notify: {
            need(obj.kind == Kind::condition);
            std::int64_t n = arg(req, 0);
            std::int64_t woken = 0;
            while (!obj.queue.empty() && (n < 0 || woken < n)) {
                reply(take_waiter(obj.queue.front()), Status::ok, {1});
                obj.queue.pop_front();
                ++woken;
            }
            return reply(caller.routing_id, req.rid, Status::ok, {woken});
        }
        case Op::barrier_wait:
            need(obj.kind == Kind::barrier);
            return barrier_wait(caller, req.rid, arg(req, 0), obj);
        case Op::barrier_done: {
            need(obj.kind == Kind::barrier);
            if (!obj.runner || obj.runner->caller.routing_id != caller.routing_id) {
                refuse(Status::protocol_error, "barrier_done from a party that is not running the action");
            }
            const bool succeeded = arg(req, 0) != 0;
            obj.runner.reset();
            if (obj.state == BarrierState::broken) {
                // Broken while the action ran (abort, or a waiter died): the runner learns it too.
                reply(caller.routing_id, req.rid, Status::broken_barrier, {}, "the barrier was broken");
            } else if (succeeded) {
                barrier_release(obj);
                reply(caller.routing_id, req.rid, Status::ok);
            } else {
                barrier_break(obj);  // the runner rethrows the action's own exception
                reply(caller.routing_id, req.rid, Status::ok);
            }
            return barrier_admit_entering(obj);
        }
        case Op::barrier_abort:
            need(obj.kind == Kind::barrier);
            barrier_break(obj);
            return reply(caller.routing_id, req.rid, Status::ok);
        case Op::barrier_reset:
            need(obj.kind == Kind::barrier);
            barrier_reset(obj);
            return reply(caller.routing_id, req.rid, Status::ok);
        case Op::barrier_state: {
            need(obj.kind == Kind::barrier);
            const bool broken = obj.state == BarrierState::broken;
            return reply(caller.routing_id, req.rid, Status::ok, {obj.parties, broken ? 0 : obj.count, broken ? 1 : 0});
        }
        case Op::hello:
        case Op::create:
        case Op::stats:
        case Op::keep_holdings:
            break;
    }
    refuse(Status::protocol_error, "unexpected op");
}

// ---- Queue and JoinableQueue -----------------------------------------------------------------

// Items in the queue, and items delivered that their consumer has not taken yet: they are still
// the queue's until taken (and go back to it if their consumer dies).
std::int64_t Broker::Impl::queue_size(const Object& obj) const {
    std::int64_t n = static_cast<std::int64_t>(obj.items.size());
    for (const std::string& holder : obj.holders) {
        const Delivery& d = deliveries.at({holder, obj.id});
        const std::int64_t word = delivery_cursor(arena->slot(d.slot)).load(std::memory_order_acquire);
        n += cursor_limit(word) - std::min(cursor_taken(word), cursor_limit(word));
    }
    return n;
}

void Broker::Impl::queue_put(const Caller& caller, const Request& req, Object& obj) {
    const std::int64_t count = arg(req, 2);
    if (req.payload == nullptr) refuse(Status::protocol_error, "queue_put: no items");
    if (count < 1) refuse(Status::protocol_error, "queue_put: no items");
    std::vector<std::string_view> batch;
    try {
        batch = split_batch_views(*req.payload, static_cast<std::size_t>(count));
    } catch (const ProtocolError& e) {
        refuse(Status::protocol_error, e.what());
    }
    for (std::string_view item : batch) {
        if (item.size() > obj.max_item) {
            refuse(Status::value_error, "an item of " + std::to_string(item.size()) +
                                            " bytes is larger than the queue's max_item_bytes (" +
                                            std::to_string(obj.max_item) + ")");
        }
    }
    const bool fits = obj.putters.empty() && (obj.maxsize <= 0 || queue_size(obj) + count <= obj.maxsize);
    if (fits) {
        for (std::string_view item : batch) queue_push(obj, std::string(item));
        if (obj.kind == Kind::joinable_queue) obj.unfinished += count;
        reply(caller.routing_id, req.rid, Status::ok);
        return queue_serve(obj);
    }
    const std::int64_t timeout = arg(req, 1);
    if (arg(req, 0) == 0 || timeout == 0) refuse(Status::full, "the queue is full");
    Waiter w{caller, req.rid, obj.id, deadline_from(timeout, Clock::now()), count, {batch.begin(), batch.end()}};
    add_waiter(obj.putters, std::move(w));
}

void Broker::Impl::queue_get(const Caller& caller, const Request& req, Object& obj) {
    const bool block = arg(req, 0) != 0;
    const std::int64_t timeout = arg(req, 1);
    const std::int64_t most = std::clamp<std::int64_t>(arg(req, 2), 1, 1 << 16);
    // A consumer asks again only once it has taken its previous delivery: anything of it still
    // untaken (it raced with a take-back) returns to the queue.
    queue_take_back(obj, caller.routing_id, false);
    const auto now = Clock::now();
    if (obj.items.empty()) (void)queue_recall_idle(obj, now);
    if (!obj.items.empty() && obj.queue.empty()) {
        queue_deliver(obj, caller, req.rid, most);
        return queue_serve(obj);
    }
    if (!block || timeout == 0) refuse(Status::empty, "the queue is empty");
    add_waiter(obj.queue, Waiter{caller, req.rid, obj.id, deadline_from(timeout, now), most, {}});
    if (!obj.holders.empty()) starving.insert(obj.id);
}

void Broker::Impl::queue_push(Object& obj, std::string bytes) {
    obj.items.push_back(QueuedItem{obj.next_seq++, std::move(bytes)});
}

// Sends `to` up to `most` items from the front of the queue. With an arena, they stay the queue's
// until the consumer takes them (its cursor); without one, they are the consumer's once sent.
void Broker::Impl::queue_deliver(Object& obj, const Caller& to, std::uint64_t rid, std::int64_t most) {
    if (!arena) most = 1;
    std::string batch;
    std::size_t n = 0;
    while (n < static_cast<std::size_t>(most) && n < obj.items.size() &&
           (n == 0 || batch.size() + obj.items[n].bytes.size() <= kDeliveryBytes)) {
        append_item(batch, obj.items[n].bytes);
        ++n;
    }
    if (!arena) {
        obj.items.pop_front();
        return reply_with_batch(to.routing_id, rid, {1, -1}, std::move(batch));
    }
    auto [it, fresh] = deliveries.try_emplace({to.routing_id, obj.id});
    Delivery& d = it->second;
    if (fresh) {
        d.client = to.client;
        if (!free_cursors.empty()) {
            d.slot = free_cursors.back();
            free_cursors.pop_back();
        } else {
            d.slot = arena->allocate_slot();
        }
        Slot& slot = arena->slot(d.slot);
        slot.id.store(obj.id, std::memory_order_relaxed);
        slot.kind.store(kCursorKind, std::memory_order_relaxed);
    }
    d.items.assign(std::make_move_iterator(obj.items.begin()),
                   std::make_move_iterator(obj.items.begin() + static_cast<std::ptrdiff_t>(n)));
    obj.items.erase(obj.items.begin(), obj.items.begin() + static_cast<std::ptrdiff_t>(n));
    d.seen_word = cursor_word(0, static_cast<std::uint32_t>(n));
    d.seen_at = Clock::now();
    delivery_cursor(arena->slot(d.slot)).store(d.seen_word, std::memory_order_release);
    obj.holders.insert(to.routing_id);
    reply_with_batch(to.routing_id, rid, {static_cast<std::int64_t>(n), d.slot}, std::move(batch));
}

// Takes back what `routing_id` was sent and has not taken: each item to its place in the queue.
// leave_first: a delivery's first item stays its consumer's (so a consumer whose items are taken
// back for another always makes progress).
void Broker::Impl::queue_take_back(Object& obj, const std::string& routing_id, bool leave_first) {
    auto it = deliveries.find({routing_id, obj.id});
    if (it == deliveries.end() || it->second.items.empty()) return;
    Delivery& d = it->second;
    std::atomic<std::int64_t>& cursor = delivery_cursor(arena->slot(d.slot));
    std::int64_t word = cursor.load(std::memory_order_acquire);
    std::uint32_t keep = 0;
    for (;;) {
        const std::uint32_t taken = cursor_taken(word);
        const std::uint32_t limit = cursor_limit(word);
        keep = std::max(taken, leave_first ? std::min<std::uint32_t>(limit, 1) : 0);
        if (keep >= limit) {
            keep = limit;
            break;
        }
        if (cursor.compare_exchange_weak(word, cursor_word(taken, keep), std::memory_order_acq_rel)) break;
    }
    const std::uint32_t limit = cursor_limit(word);
    // Back to their places: before every item that came in after them.
    for (std::uint32_t i = limit; i > keep; --i) {
        QueuedItem& item = d.items[i - 1];
        auto at = std::lower_bound(obj.items.begin(), obj.items.end(), item.seq,
                                   [](const QueuedItem& q, std::uint64_t seq) { return q.seq < seq; });
        obj.items.insert(at, std::move(item));
    }
    if (cursor_taken(word) >= keep) {
        // Nothing left for the consumer to take: the delivery is settled.
        d.items.clear();
        obj.holders.erase(routing_id);
    } else {
        d.items.resize(keep);
    }
}

// For a getter that would wait on an empty queue: what idle consumers (kIdleHolder) received ahead
// and have not taken comes back (each keeps its first). True if any came back.
bool Broker::Impl::queue_recall_idle(Object& obj, Clock::time_point now) {
    const std::size_t before = obj.items.size();
    const std::vector<std::string> holders(obj.holders.begin(), obj.holders.end());
    for (const std::string& holder : holders) {
        Delivery& d = deliveries.at({holder, obj.id});
        const std::int64_t word = delivery_cursor(arena->slot(d.slot)).load(std::memory_order_acquire);
        if (word != d.seen_word) {
            d.seen_word = word;
            d.seen_at = now;
        } else if (now - d.seen_at >= kIdleHolder) {
            queue_take_back(obj, holder, true);
        }
    }
    return obj.items.size() != before;
}

// Every kIdleCheckMs while getters wait on queues whose items other consumers hold.
void Broker::Impl::check_idle_holders(Clock::time_point now) {
    next_idle_check = now + std::chrono::milliseconds(kIdleCheckMs);
    for (auto it = starving.begin(); it != starving.end();) {
        auto found = objects.find(*it);
        if (found == objects.end() || found->second->queue.empty() || found->second->holders.empty()) {
            it = starving.erase(it);
            continue;
        }
        Object& obj = *found->second;
        if (obj.items.empty() && queue_recall_idle(obj, now)) queue_serve(obj);
        ++it;
    }
}

// Waiting puts that now fit go in; waiting gets are answered while there are items (each getter
// gets its share when several wait).
void Broker::Impl::queue_serve(Object& obj) {
    for (;;) {
        bool progress = false;
        while (!obj.putters.empty()) {
            Waiter& w = waiters.at(obj.putters.front());
            const auto count = static_cast<std::int64_t>(w.batch.size());
            if (obj.maxsize > 0 && queue_size(obj) + count > obj.maxsize) break;
            Waiter done = take_waiter(obj.putters.front());
            obj.putters.pop_front();
            for (std::string& item : done.batch) queue_push(obj, std::move(item));
            if (obj.kind == Kind::joinable_queue) obj.unfinished += count;
            reply(done, Status::ok);
            progress = true;
        }
        while (!obj.items.empty() && !obj.queue.empty()) {
            const auto share =
                std::max<std::int64_t>(1, static_cast<std::int64_t>(obj.items.size() / obj.queue.size()));
            Waiter w = take_waiter(obj.queue.front());
            obj.queue.pop_front();
            queue_deliver(obj, w.caller, w.rid, std::min(w.arg, share));
            progress = true;
        }
        // Without an arena, a delivery makes room at once.
        if (!progress || arena || obj.putters.empty()) return;
    }
}

// ---- waiters and deadlines -----------------------------------------------------------------

std::uint64_t Broker::Impl::add_waiter(std::deque<std::uint64_t>& queue, Waiter w) {
    const std::uint64_t id = next_waiter++;
    if (w.deadline != kNever) timers.emplace(w.deadline, id);
    waiters.emplace(id, std::move(w));
    queue.push_back(id);
    return id;
}

Waiter Broker::Impl::take_waiter(std::uint64_t id) {
    auto it = waiters.find(id);
    Waiter w = std::move(it->second);
    waiters.erase(it);
    if (w.deadline != kNever) timers.erase({w.deadline, id});
    return w;
}

void Broker::Impl::expire(Clock::time_point now) {
    while (!timers.empty() && timers.begin()->first <= now) {
        const std::uint64_t id = timers.begin()->second;
        const Waiter& w = waiters.at(id);
        on_timeout(*objects.at(w.object), id);
    }
}

void Broker::Impl::on_timeout(Object& obj, std::uint64_t id) {
    if (obj.kind == Kind::barrier) {
        if (obj.state == BarrierState::releasing) {
            // As in Python: a party whose timeout passes while the action runs is released with
            // the others once the action ends; it stops counting time.
            Waiter& w = waiters.at(id);
            timers.erase({w.deadline, id});
            w.deadline = kNever;
            return;
        }
        return barrier_break(obj);  // the party that timed out gets BrokenBarrierError with the others
    }
    if (is_queue(obj.kind)) {
        const bool putter = std::find(obj.putters.begin(), obj.putters.end(), id) != obj.putters.end();
        const bool joiner = std::find(obj.joiners.begin(), obj.joiners.end(), id) != obj.joiners.end();
        std::erase(obj.queue, id);
        std::erase(obj.putters, id);
        std::erase(obj.joiners, id);
        Waiter w = take_waiter(id);
        if (joiner) return reply(w, Status::ok, {0});
        reply(w.caller.routing_id, w.rid, putter ? Status::full : Status::empty, {},
              putter ? "the queue is full" : "the queue is empty");
        if (putter) queue_serve(obj);  // a smaller put behind it may fit
        return;
    }
    std::erase(obj.queue, id);
    Waiter w = take_waiter(id);
    reply(w, Status::ok, {0, 0});  // not acquired / not set / not notified
}

// ---- clients ---------------------------------------------------------------------------------

void Broker::Impl::hello(const std::string& routing_id, const Request& req) {
    const std::int64_t pid = arg(req, 0);
    const std::int64_t tid = arg(req, 1);
    if (pid <= 0 || pid > INT_MAX || tid < 0 || tid > UINT32_MAX)
        refuse(Status::protocol_error, "hello: bad pid or tid");
    auto it = clients.find(static_cast<pid_t>(pid));
    if (it == clients.end()) {
        if (clients.size() >= kMaxClients) refuse(Status::protocol_error, "too many client processes");
        auto client = std::make_unique<Client>();
        client->pid = static_cast<pid_t>(pid);
        if (client->pid != self_pid) {
            client->pidfd = open_pidfd(client->pid);
            if (client->pidfd < 0)
                refuse(Status::protocol_error, "hello: process " + std::to_string(pid) + " is not running");
        }
        if (!free_indices.empty()) {
            client->index = free_indices.back();
            free_indices.pop_back();
        } else {
            client->index = next_index++;
        }
        if (arena) {
            if (client->index >= kMaxClientRecords) refuse(Status::protocol_error, "too many client processes");
            std::memset(static_cast<void*>(&arena->client(client->index)), 0, sizeof(ClientRecord));
        }
        by_index[client->index] = client.get();
        it = clients.emplace(client->pid, std::move(client)).first;
        clients_changed = true;
    }
    Client* client = it->second.get();
    auto known = peers.find(routing_id);
    if (known != peers.end() && known->second.first != client) std::erase(known->second.first->peers, routing_id);
    if (known == peers.end() || known->second.first != client) client->peers.push_back(routing_id);
    peers[routing_id] = {client, static_cast<std::uint32_t>(tid)};
    reply(routing_id, req.rid, Status::ok, {client->index, self_pid}, arena ? arena->prefix() : std::string());
}

void Broker::Impl::create(const Caller& caller, const Request& req) {
    const std::int64_t kind = arg(req, 0);
    if (kind < 1 || kind > kLastKind) refuse(Status::protocol_error, "create: unknown kind");
    auto obj = std::make_unique<Object>();
    obj->id = next_object++;
    obj->kind = static_cast<Kind>(kind);
    const std::int64_t value = arg(req, 1);
    switch (obj->kind) {
        case Kind::semaphore:
        case Kind::bounded_semaphore:
            if (value < 0 || value > kMaxSemaphoreValue)
                refuse(Status::value_error, "semaphore initial value must be >= 0");
            obj->value = value;
            obj->bound = obj->kind == Kind::bounded_semaphore ? value : 0;
            break;
        case Kind::barrier:
            if (value < 1 || value > kMaxSemaphoreValue)
                refuse(Status::value_error, "a barrier needs at least one party");
            obj->parties = value;
            obj->timeout_ns = arg(req, 2) < 0 ? kForever : arg(req, 2);
            obj->has_action = arg(req, 4) != 0;
            break;
        case Kind::queue:
        case Kind::joinable_queue:
            if (arg(req, 2) < 1 || arg(req, 2) > kMaxBatchFrame - 4096)
                refuse(Status::value_error, "max_item_bytes is out of range");
            obj->maxsize = value;
            obj->max_item = static_cast<std::uint64_t>(arg(req, 2));
            break;
        default:
            break;
    }
    const bool shared = arena && arg(req, 3) != 0 && obj->kind != Kind::condition && !is_queue(obj->kind);
    if (shared) {
        const std::uint32_t index = arena->allocate_slot();
        init_slot(arena->slot(index), obj->id, obj->kind, obj->kind == Kind::barrier ? obj->parties : obj->value,
                  obj->timeout_ns);
        obj->slot = index;
    }
    const std::uint64_t id = obj->id;
    const std::int64_t slot = obj->slot;
    objects.emplace(id, std::move(obj));
    reply(caller.routing_id, req.rid, Status::ok, {static_cast<std::int64_t>(id), slot});
}

void Broker::Impl::on_death(Client& client) {
    // Its waits: dropped, and a barrier it was waiting at is broken.
    std::vector<std::uint64_t> mine;
    for (const auto& [id, w] : waiters)
        if (w.caller.client == &client) mine.push_back(id);
    std::vector<Object*> broken_barriers;
    for (std::uint64_t id : mine) {
        Object& obj = *objects.at(waiters.at(id).object);
        const bool arrived = std::find(obj.queue.begin(), obj.queue.end(), id) != obj.queue.end();
        std::erase(obj.queue, id);
        std::erase(obj.entering, id);
        std::erase(obj.putters, id);
        std::erase(obj.joiners, id);
        (void)take_waiter(id);
        if (obj.kind == Kind::barrier && arrived) broken_barriers.push_back(&obj);
    }
    // What its connections were sent and had not taken goes back to the queues.
    std::vector<Object*> refilled;
    for (auto it = deliveries.begin(); it != deliveries.end();) {
        if (it->second.client != &client) {
            ++it;
            continue;
        }
        if (auto obj = objects.find(it->first.second); obj != objects.end()) {
            queue_take_back(*obj->second, it->first.first, false);
            refilled.push_back(obj->second.get());
        }
        free_cursors.push_back(it->second.slot);
        it = deliveries.erase(it);
    }
    for (Object* obj : refilled) queue_serve(*obj);
    for (auto& [id, obj] : objects) {
        if (obj->kind == Kind::barrier && obj->runner && obj->runner->caller.client == &client) {
            obj->runner.reset();  // it died running the action
            broken_barriers.push_back(obj.get());
        }
        // What it held is freed, and the next owner is told.
        if (is_lock(obj->kind) && obj->owner == &client) {
            obj->owner = nullptr;
            obj->depth = 0;
            obj->owner_died = true;
            lock_hand_over(*obj);
        }
    }
    for (auto& [id, held] : client.holdings) {
        auto it = objects.find(id);
        if (it == objects.end() || held <= 0) continue;
        Object& sem = *it->second;
        for (std::int64_t i = 0; i < held; ++i) {
            if (sem.bound != 0 && sem.value >= sem.bound) break;
            ++sem.died_credits;
            semaphore_give(sem);
        }
    }
    client.holdings.clear();
    for (Object* obj : broken_barriers) {
        if (obj->state != BarrierState::broken) barrier_break(*obj);
        barrier_admit_entering(*obj);
    }
    if (arena) repair_client(*arena, client.index, [this](std::uint32_t index) { return is_dead(index); });
    for (const std::string& peer : client.peers) peers.erase(peer);
    if (client.pidfd >= 0) ::close(client.pidfd);
    by_index.erase(client.index);
    free_indices.push_back(client.index);
    clients.erase(client.pid);
    clients_changed = true;
}

bool Broker::Impl::is_dead(std::uint32_t index) const {
    auto it = by_index.find(index);
    if (it == by_index.end()) return true;
    if (it->second->pidfd < 0) return false;
    pollfd p{it->second->pidfd, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
}

// ---- Lock and RLock --------------------------------------------------------------------------

void Broker::Impl::lock_grant(Object& obj, const Caller& to, std::int64_t depth, std::uint64_t rid) {
    obj.owner = to.client;
    obj.owner_tid = to.tid;
    obj.depth = depth > 0 ? depth : 1;
    const bool died = std::exchange(obj.owner_died, false);
    reply(to.routing_id, rid, Status::ok, {1, died ? 1 : 0});
}

void Broker::Impl::lock_hand_over(Object& obj) {
    if (obj.owner != nullptr || obj.queue.empty()) return;
    Waiter w = take_waiter(obj.queue.front());
    obj.queue.pop_front();
    lock_grant(obj, w.caller, w.arg, w.rid);
}

void Broker::Impl::lock_acquire(const Caller& caller, const Request& req, Object& obj) {
    const bool block = arg(req, 0) != 0;
    const std::int64_t timeout_ns = arg(req, 1);
    const std::int64_t restore = arg(req, 2);
    if (obj.kind == Kind::rlock && obj.owner == caller.client && obj.owner_tid == caller.tid) {
        ++obj.depth;
        return reply(caller.routing_id, req.rid, Status::ok, {1, 0});
    }
    if (obj.owner == nullptr) return lock_grant(obj, caller, restore, req.rid);
    if (!block || timeout_ns == 0) return reply(caller.routing_id, req.rid, Status::ok, {0, 0});
    add_waiter(obj.queue, Waiter{caller, req.rid, obj.id, deadline_from(timeout_ns, Clock::now()), restore});
}

void Broker::Impl::lock_release(const Caller& caller, const Request& req, Object& obj, bool all) {
    const bool mine = obj.owner == caller.client && obj.owner_tid == caller.tid;
    if (obj.kind == Kind::rlock || all) {
        if (!mine) refuse(Status::value_error, texts::kReleaseUnacquired);
    } else if (obj.owner == nullptr) {
        refuse(Status::value_error, texts::kReleasedTooManyTimes);
    }
    const std::int64_t depth = obj.depth;
    if (!all && --obj.depth > 0) return reply(caller.routing_id, req.rid, Status::ok, {obj.depth});
    obj.owner = nullptr;
    obj.depth = 0;
    reply(caller.routing_id, req.rid, Status::ok, {depth});
    lock_hand_over(obj);
}

// ---- Semaphore and BoundedSemaphore ----------------------------------------------------------

// Takes a slot for `client` if one is free; reports whether it came from a dead holder.
bool Broker::Impl::semaphore_take(Object& obj, Client* client) {
    --obj.value;
    if (client != nullptr) ++client->holdings[obj.id];
    if (obj.died_credits > 0) {
        --obj.died_credits;
        return true;
    }
    return false;
}

// A slot comes back: to the oldest waiter, or to the count.
void Broker::Impl::semaphore_give(Object& obj) {
    ++obj.value;
    if (obj.queue.empty()) return;
    Waiter w = take_waiter(obj.queue.front());
    obj.queue.pop_front();
    const bool died = semaphore_take(obj, w.caller.client);
    reply(w, Status::ok, {1, died ? 1 : 0});
}

void Broker::Impl::semaphore_acquire(const Caller& caller, const Request& req, Object& obj) {
    const bool block = arg(req, 0) != 0;
    const std::int64_t timeout_ns = arg(req, 1);
    if (obj.value > 0) {
        const bool died = semaphore_take(obj, caller.client);
        return reply(caller.routing_id, req.rid, Status::ok, {1, died ? 1 : 0});
    }
    if (!block || timeout_ns == 0) return reply(caller.routing_id, req.rid, Status::ok, {0, 0});
    add_waiter(obj.queue, Waiter{caller, req.rid, obj.id, deadline_from(timeout_ns, Clock::now()), 0});
}

void Broker::Impl::semaphore_release(const Caller& caller, const Request& req, Object& obj) {
    if (obj.bound != 0 ? obj.value >= obj.bound : obj.value >= kMaxSemaphoreValue) {
        refuse(Status::value_error, texts::kReleasedTooManyTimes);
    }
    // A process holds what it acquired and has not released; a release by a process that holds
    // nothing (a semaphore used as a signal) belongs to nobody.
    auto held = caller.client->holdings.find(obj.id);
    if (held != caller.client->holdings.end() && --held->second <= 0) caller.client->holdings.erase(held);
    reply(caller.routing_id, req.rid, Status::ok);
    semaphore_give(obj);
}

// ---- Event -----------------------------------------------------------------------------------

void Broker::Impl::event_wait(const Caller& caller, const Request& req, Object& obj) {
    const std::int64_t timeout_ns = arg(req, 0);
    if (obj.flag || timeout_ns == 0) return reply(caller.routing_id, req.rid, Status::ok, {obj.flag ? 1 : 0});
    add_waiter(obj.queue, Waiter{caller, req.rid, obj.id, deadline_from(timeout_ns, Clock::now()), 0});
}

// ---- Barrier (threading.Barrier's state machine; parties leave at once when released) -------

void Broker::Impl::barrier_wait(const Caller& caller, std::uint64_t rid, std::int64_t timeout_ns, Object& obj) {
    if (timeout_ns == kBarrierDefault) timeout_ns = obj.timeout_ns;
    if (obj.state == BarrierState::broken) refuse(Status::broken_barrier, texts::kBarrierBroken);
    if (obj.state == BarrierState::releasing) {
        // Python's _enter(): arrivals wait while the previous round is being released.
        add_waiter(obj.entering, Waiter{caller, rid, obj.id, kNever, timeout_ns});
        return;
    }
    const std::int64_t index = obj.count++;
    if (obj.count == obj.parties) {
        Waiter last{caller, rid, obj.id, kNever, index};
        if (obj.has_action) {
            // The last arrival runs the action in its own process before anyone is released.
            obj.state = BarrierState::releasing;
            reply(last, Status::run_action, {index});
            obj.runner = std::move(last);
            return;
        }
        reply(last, Status::ok, {index});
        return barrier_release(obj);
    }
    add_waiter(obj.queue, Waiter{caller, rid, obj.id, deadline_from(timeout_ns, Clock::now()), index});
    // wait(0) by a party that is not the last: the deadline has already passed.
    if (timeout_ns == 0) expire(Clock::now());
}

void Broker::Impl::barrier_release(Object& obj) {
    while (!obj.queue.empty()) {
        Waiter w = take_waiter(obj.queue.front());
        obj.queue.pop_front();
        reply(w, Status::ok, {w.arg});
    }
    obj.count = 0;
    obj.state = BarrierState::filling;
}

void Broker::Impl::barrier_break(Object& obj) {
    obj.state = BarrierState::broken;
    for (auto* queue : {&obj.queue, &obj.entering}) {
        while (!queue->empty()) {
            Waiter w = take_waiter(queue->front());
            queue->pop_front();
            reply(w.caller.routing_id, w.rid, Status::broken_barrier, {}, texts::kBarrierBroken);
        }
    }
    obj.count = 0;
}

void Broker::Impl::barrier_reset(Object& obj) {
    // While the action runs, Python's reset() waits for the round to complete and then finds
    // nothing to reset: the same here.
    if (obj.state == BarrierState::releasing) return;
    if (obj.count > 0) barrier_break(obj);  // the parties waiting now get BrokenBarrierError
    obj.count = 0;
    obj.state = BarrierState::filling;
}

void Broker::Impl::barrier_admit_entering(Object& obj) {
    if (obj.state == BarrierState::releasing) return;
    std::deque<std::uint64_t> held;
    held.swap(obj.entering);
    for (std::uint64_t id : held) {
        Waiter w = take_waiter(id);
        if (obj.state == BarrierState::broken) {
            reply(w.caller.routing_id, w.rid, Status::broken_barrier, {}, texts::kBarrierBroken);
        } else if (obj.state == BarrierState::releasing) {
            add_waiter(obj.entering, std::move(w));  // a new round started: wait again
        } else {
            barrier_wait(w.caller, w.rid, w.arg, obj);
        }
    }
}

// ---- Broker ------------------------------------------------------------------------------------

Broker::Broker(zmq::context_t& context, Options options) : impl_(std::make_unique<Impl>(context, std::move(options))) {}
Broker::~Broker() = default;

void Broker::run() { impl_->run(); }

void Broker::stop() noexcept {
    impl_->stopping.store(true, std::memory_order_release);
    impl_->wake.notify();
}

const std::string& Broker::endpoint() const { return impl_->options.endpoint; }

void Broker::pause() {
    {
        std::lock_guard lock(impl_->park_mutex);
        impl_->park_requested = true;
    }
    impl_->wake.notify();
    std::unique_lock lock(impl_->park_mutex);
    // A thread that has not reached run() yet is waited for too: it may be allocating.
    impl_->park_cv.wait(lock, [&] { return impl_->parked || impl_->finished; });
}

void Broker::resume() {
    {
        std::lock_guard lock(impl_->park_mutex);
        impl_->park_requested = false;
    }
    impl_->park_cv.notify_all();
}

}  // namespace zmp::detail
