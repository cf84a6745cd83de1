// Queue, SimpleQueue and JoinableQueue: the client half. The broker owns the items (objects/queue.cpp);
// this file gets them there and back quickly without giving up exactly-once delivery:
//
//  - put() on an unbounded queue hands the item to this process's feeder thread, which sends
//    what has accumulated as one batch per queue and waits for the broker's acknowledgement
//    before the next: one item costs no round trip, and the batches grow with the load. At exit,
//    a process waits for its feeder to be acknowledged (libzmq can lose the tail of a stream
//    whose sender closes). A bounded queue's put() and a JoinableQueue's put() are
//    one request each: the caller must learn that the item is in (or that there is no room).
//  - get() asks the broker for up to `want` items and keeps them per thread. They stay the
//    queue's until taken: each is taken by a compare-and-swap on the delivery's cursor in the
//    broker's shared memory, which the broker also uses to take back what a dead or idle
//    consumer had not taken (arena.hpp: CursorSlot). `want` doubles while the thread drains its
//    deliveries quickly and falls back to 1 when it does not, so a slow consumer never sits on
//    items others could work on.

#include "zmp/queue.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "base/fork.hpp"
#include "queue/feeder.hpp"
#include "runtime/hooks.hpp"
#include "broker/arena.hpp"
#include "broker/client.hpp"
#include "broker/handle.hpp"

namespace zmp::detail {

using namespace broker;

struct QueueState {
    ObjectHandle object;  // this process's reference to the queue
    BrokerLink* link = nullptr;
    std::uint64_t id = 0;
    QueueCore::Kind kind = QueueCore::Kind::queue;
    std::int64_t maxsize = 0;  // 0: unbounded
    std::uint64_t max_item = 0;
    std::atomic<bool> closed{false};
    // cancel_join_thread(): at exit, and in join_thread() and close(), this handle's items are not
    // waited for.
    std::atomic<bool> join_cancelled{false};

    /// put() waits for the broker's answer (rather than going through the feeder).
    bool synchronous_put() const { return maxsize > 0 || kind == QueueCore::Kind::joinable; }
};

namespace {

using Clock = std::chrono::steady_clock;

// A batch the feeder sends, and a delivery the broker sends, stay below these.
constexpr std::size_t kBatchItems = 4096;
constexpr std::size_t kBatchBytes = 1 << 20;
constexpr std::int64_t kMostWanted = 4096;
// A delivery drained faster than this makes the next one bigger.
constexpr auto kQuickDrain = std::chrono::milliseconds(2);

void check_open(const QueueState& q) {
    if (q.closed.load(std::memory_order_relaxed))
        throw ValueError("the queue is closed (close() was called on this handle)");
}

// ---- the feeder --------------------------------------------------------------------------------

class Feeder {
public:
    explicit Feeder(std::uint64_t generation) : generation_(generation) {}

    std::uint64_t generation() const { return generation_; }

    void start() {
        thread_ = std::thread([this] { run(); });
    }

    // The item goes straight into the batch being gathered for its queue.
    void push(const std::shared_ptr<QueueState>& queue, std::string_view item) {
        std::lock_guard lock(mutex_);
        if (pending_.empty() || pending_.back().queue != queue || pending_.back().count >= kBatchItems ||
            (pending_.back().count > 0 && pending_.back().batch.size() + item.size() > kBatchBytes)) {
            pending_.push_back(Pending{queue, {}, 0});
        }
        Pending& last = pending_.back();
        append_item(last.batch, item);
        ++last.count;
        ++queued_;
        if (idle_) work_.notify_one();
    }

    /// Waits until everything pushed so far has been answered by the broker.
    void flush() {
        std::unique_lock lock(mutex_);
        const std::uint64_t target = queued_;
        answered_.wait(lock, [&] { return done_ >= target || stopped_; });
    }

    /// At exit: waits until the broker has every item pushed so far, then ends the thread. Items
    /// of queues whose join was cancelled are not waited for: those not sent yet are dropped, and
    /// when the only batch left is one of theirs, on its way to a broker that does not answer, the
    /// thread is left to the process's end.
    void stop() {
        std::unique_lock lock(mutex_);
        stopping_.store(true, std::memory_order_relaxed);
        work_.notify_one();
        answered_.wait(lock, [&] { return stopped_ || only_cancelled_left(); });
        const bool finished = stopped_;
        lock.unlock();
        if (finished && thread_.joinable()) thread_.join();
    }

private:
    // Items of one queue, gathered into one QUEUE_PUT batch, in the order they were put.
    struct Pending {
        std::shared_ptr<QueueState> queue;
        std::string batch;
        std::size_t count = 0;
    };

    // Under mutex_: is something still unanswered, and every such batch one of a queue whose join
    // was cancelled?
    bool only_cancelled_left() const {
        const auto cancelled = [](const Pending& p) { return p.queue->join_cancelled.load(std::memory_order_relaxed); };
        const auto unanswered = sending_.begin() + static_cast<std::ptrdiff_t>(sent_);
        if (unanswered == sending_.end() && pending_.empty()) return false;  // the thread ends by itself
        return std::all_of(unanswered, sending_.end(), cancelled) &&
               std::all_of(pending_.begin(), pending_.end(), cancelled);
    }

    void run() {
        for (;;) {
            {
                std::unique_lock lock(mutex_);
                idle_ = true;
                work_.wait(lock, [&] { return !pending_.empty() || stopping_.load(std::memory_order_relaxed); });
                idle_ = false;
                if (pending_.empty()) {
                    stopped_ = true;
                    answered_.notify_all();
                    return;
                }
                sending_.swap(pending_);
                sent_ = 0;
            }
            // sending_ changes shape only under the mutex; its entries' queues are read by stop().
            for (Pending& p : sending_) {
                const bool dropped = stopping_.load(std::memory_order_relaxed) &&
                                     p.queue->join_cancelled.load(std::memory_order_relaxed);
                if (!dropped) send(p);
                {
                    std::lock_guard lock(mutex_);
                    done_ += p.count;
                    ++sent_;
                }
                answered_.notify_all();
            }
            std::lock_guard lock(mutex_);
            sending_.clear();
            sent_ = 0;
        }
    }

    // Each batch is acknowledged before the next: they arrive in order.
    void send(Pending& p) {
        try {
            (void)p.queue->link->call(Op::queue_put, p.queue->id, {1, kForever, static_cast<std::int64_t>(p.count)},
                                      std::move(p.batch));
        } catch (const std::exception& e) {
            // As Python's feeder thread does: said, not silent (unless the loss was accepted).
            if (stopping_.load(std::memory_order_relaxed) && p.queue->join_cancelled.load(std::memory_order_relaxed))
                return;
            std::fprintf(stderr, "zmp: a Queue could not take %zu item(s) this process put: %s\n", p.count, e.what());
        }
    }

    const std::uint64_t generation_;
    std::mutex mutex_;
    std::condition_variable work_;
    std::condition_variable answered_;
    std::deque<Pending> pending_;  // gathered, not handed to the thread yet
    std::deque<Pending> sending_;  // the thread's: being sent, in order
    std::size_t sent_ = 0;         // of sending_, answered (or dropped)
    std::uint64_t queued_ = 0;
    std::uint64_t done_ = 0;  // items answered or dropped
    bool idle_ = false;
    std::atomic<bool> stopping_{false};
    bool stopped_ = false;
    std::thread thread_;
};

// This process's feeder. A forked child never touches its parent's (whose thread is not in the
// child, and whose mutex may have been copied locked): it makes its own. Never destroyed.
std::atomic<Feeder*> the_feeder{nullptr};

Feeder* current_feeder() {
    Feeder* f = the_feeder.load(std::memory_order_acquire);
    return f != nullptr && f->generation() == fork_generation() ? f : nullptr;
}

void stop_feeder() {
    if (Feeder* f = current_feeder()) f->stop();
}

Feeder& feeder() {
    if (Feeder* f = current_feeder()) return *f;
    // Lock-free, so that a fork() while another thread makes the feeder leaves nothing locked.
    auto fresh = std::make_unique<Feeder>(fork_generation());
    Feeder* seen = the_feeder.load(std::memory_order_acquire);
    for (;;) {
        if (seen != nullptr && seen->generation() == fork_generation()) return *seen;  // another thread won
        if (the_feeder.compare_exchange_weak(seen, fresh.get(), std::memory_order_acq_rel)) break;
    }
    fresh->start();
    add_exit_hook(stop_feeder);  // runs before the broker's own hook: it was added later
    return *fresh.release();
}

// ---- receive-ahead -----------------------------------------------------------------------------

// What one thread holds of one queue: its last delivery.
struct Received {
    BrokerLink* link = nullptr;
    std::uint64_t id = 0;
    std::weak_ptr<const QueueState> user;  // the handle that used it last: once gone, so is this
    CursorSlot* cursor = nullptr;          // null: nothing delivered yet (or no arena: items are ours once sent)
    zmq::message_t payload;                // the delivery as it came
    std::vector<std::string_view> items;   // its items, in `payload`
    std::size_t mine = 0;                  // of them, taken by this thread
    std::int64_t want = 1;
    Clock::time_point arrived{};
};

// A forked child starts with none: its parent's deliveries are its parent's.
struct ThreadReceived {
    // By pointer: the items' views stay valid as entries come and go.
    std::vector<std::unique_ptr<Received>> queues;
};
thread_local ForkLocal<ThreadReceived> thread_received;

// One entry per queue (not per handle): the broker keeps one delivery per connection and queue.
Received& received_for(const std::shared_ptr<QueueState>& state) {
    const QueueState& q = *state;
    ThreadReceived& t = thread_received.get();
    for (auto& r : t.queues) {
        if (r->link == q.link && r->id == q.id) {
            r->user = state;
            return *r;
        }
    }
    // Entries of queues no handle here uses any more go (the broker takes back what they had not
    // taken, as from any consumer that stopped asking).
    std::erase_if(t.queues, [](const std::unique_ptr<Received>& r) { return r->user.expired(); });
    Received& r = *t.queues.emplace_back(std::make_unique<Received>());
    r.link = q.link;
    r.id = q.id;
    r.user = state;
    return r;
}

// Takes the next item of a delivery, unless the broker took the rest back (or all are taken).
std::optional<std::uint32_t> take_next(CursorSlot& slot) {
    std::atomic<std::uint64_t>& cursor = slot.word;
    std::uint64_t word = cursor.load(std::memory_order_acquire);
    for (;;) {
        const std::uint32_t taken = cursor_taken(word);
        if (taken >= cursor_limit(word)) return std::nullopt;
        if (cursor.compare_exchange_weak(word, word + 1, std::memory_order_acq_rel)) return taken;
    }
}

// The next delivery's size, from how the last one went.
void adapt(Received& r) {
    if (r.items.empty()) return;
    if (r.mine < r.items.size()) {
        r.want = 1;  // some were taken back for another consumer
    } else if (Clock::now() - r.arrived < kQuickDrain) {
        r.want = std::min(r.want * 2, kMostWanted);
    } else {
        r.want = std::max<std::int64_t>(1, r.want / 2);
    }
    r.items.clear();
    r.mine = 0;
}

Kind broker_kind(QueueCore::Kind kind) {
    return kind == QueueCore::Kind::joinable ? Kind::joinable_queue : Kind::queue;
}

}  // namespace

// ---- QueueCore ---------------------------------------------------------------------------------

QueueCore::QueueCore(Kind kind, std::int64_t maxsize, const QueueOptions& options) {
    if (options.max_item_bytes == 0 || options.max_item_bytes > kMaxQueueItemBytes) {
        throw ValueError("QueueOptions::max_item_bytes must be between 1 and " + std::to_string(kMaxQueueItemBytes));
    }
    if (kind == Kind::simple || maxsize < 0) maxsize = 0;
    BrokerLink& link = BrokerLink::local();
    const auto max_item = static_cast<std::int64_t>(options.max_item_bytes);
    const Reply r = link.call(Op::create, 0, {static_cast<std::int64_t>(broker_kind(kind)), maxsize, max_item, 0, 0});
    auto state = std::make_shared<QueueState>();
    state->object =
        make_handle(link, static_cast<std::uint64_t>(r.value(0)), static_cast<std::uint8_t>(broker_kind(kind)), -1);
    state->link = &link;
    state->id = static_cast<std::uint64_t>(r.value(0));
    state->kind = kind;
    state->maxsize = maxsize;
    state->max_item = options.max_item_bytes;
    state_ = std::move(state);
}

void QueueCore::put_bytes(std::string_view item, bool block, const Timeout& timeout) const {
    const QueueState& q = *state_;
    check_open(q);
    if (item.size() > q.max_item) {
        throw ValueError("an item of " + std::to_string(item.size()) +
                         " bytes is larger than the queue's max_item_bytes (" + std::to_string(q.max_item) + ")");
    }
    if (!q.synchronous_put()) return feeder().push(state_, item);
    std::string batch;
    batch.reserve(item.size() + 4);
    append_item(batch, item);
    (void)q.link->call(Op::queue_put, q.id, {block ? 1 : 0, block ? encode_timeout(timeout) : 0, 1},
                       std::move(batch));  // Full
}

std::string_view QueueCore::get_view(bool block, const Timeout& timeout) const {
    const QueueState& q = *state_;
    check_open(q);
    Received& r = received_for(state_);
    const Deadline deadline = block ? Deadline::after(timeout) : Deadline::never();
    for (;;) {
        if (r.cursor != nullptr) {
            if (const auto index = take_next(*r.cursor)) {
                ++r.mine;
                // The broker counts untaken items as the queue's: a waiting put may fit now.
                if (q.maxsize > 0) q.link->post(Op::queue_taken, q.id, {});
                return r.items[*index];
            }
        }
        adapt(r);
        const std::int64_t wait = block ? encode_timeout(deadline) : 0;
        Reply rep = q.link->call(Op::queue_get, q.id, {block ? 1 : 0, wait, r.want});  // Empty
        const std::int64_t count = rep.value(0);
        const std::int64_t slot = rep.value(1);
        if (count < 1 || count > kMostWanted || (slot < 0 && count != 1)) {
            throw ProtocolError("the broker sent a malformed queue delivery");
        }
        r.payload = std::move(rep.payload);  // the views are made after the move: a small frame's bytes move with it
        r.items = split_batch_views({r.payload.data<char>(), r.payload.size()}, static_cast<std::size_t>(count));
        if (slot < 0) {  // no arena: the item is ours
            r.cursor = nullptr;
            return r.items.front();
        }
        Arena* arena = q.link->arena();
        if (arena == nullptr || slot > UINT32_MAX)
            throw ProtocolError("the broker sent a delivery without shared memory");
        r.cursor = &arena->cursor(static_cast<std::uint32_t>(slot));
        r.mine = 0;
        r.arrived = Clock::now();
    }
}

void flush_queue_feeder() {
    if (Feeder* f = current_feeder()) f->flush();
}

void QueueCore::flush() const { flush_queue_feeder(); }

void QueueCore::join_thread() const {
    if (!state_->join_cancelled.load(std::memory_order_relaxed)) flush();
}

void QueueCore::cancel_join_thread() const { state_->join_cancelled.store(true, std::memory_order_relaxed); }

std::int64_t QueueCore::qsize() const {
    const QueueState& q = *state_;
    flush();
    return q.link->call(Op::queue_size, q.id, {}).value(0);
}

bool QueueCore::full() const { return state_->maxsize > 0 && qsize() >= state_->maxsize; }

void QueueCore::close() const {
    join_thread();
    state_->closed.store(true, std::memory_order_relaxed);
}

void QueueCore::task_done() const {
    const QueueState& q = *state_;
    if (q.kind != Kind::joinable) throw ValueError("task_done() needs a JoinableQueue");
    (void)q.link->call(Op::task_done, q.id, {});
}

bool QueueCore::join(const Timeout& timeout) const {
    const QueueState& q = *state_;
    if (q.kind != Kind::joinable) throw ValueError("join() needs a JoinableQueue");
    flush();
    return q.link->call(Op::queue_join, q.id, {encode_timeout(timeout)}).value(0) != 0;
}

std::int64_t QueueCore::maxsize() const { return state_->maxsize; }

bool QueueCore::operator==(const QueueCore& other) const {
    return state_->link == other.state_->link && state_->id == other.state_->id;
}

QueueCore::Wire QueueCore::to_wire() const {
    const QueueState& q = *state_;
    const ObjectWire object = broker::to_wire(q.object);
    return Wire{object.endpoint, object.id, static_cast<std::uint8_t>(q.kind), q.maxsize, q.max_item, object.token};
}

QueueCore QueueCore::from_wire(const msgpack::object& obj, Kind kind) {
    if (obj.type != msgpack::type::ARRAY || obj.via.array.size != 6) {
        throw ProtocolError("received a value that is not a queue handle where one was expected");
    }
    const auto wire = transport::convert<Wire>(obj);
    const bool accepted = wire.kind == static_cast<std::uint8_t>(kind) ||
                          (kind == Kind::queue && wire.kind == static_cast<std::uint8_t>(Kind::joinable));
    if (!accepted) throw ProtocolError("received a queue handle of another type than expected");
    if (wire.maxsize < 0 || wire.max_item_bytes == 0 || wire.max_item_bytes > kMaxQueueItemBytes) {
        throw ProtocolError("received a malformed queue handle");
    }
    auto state = std::make_shared<QueueState>();
    const auto queue_kind = static_cast<Kind>(wire.kind);
    state->object = broker::from_wire(
        ObjectWire{wire.endpoint, wire.id, static_cast<std::uint8_t>(broker_kind(queue_kind)), -1, {}, wire.token});
    state->link = state->object.ref().link;
    state->id = wire.id;
    state->kind = queue_kind;
    state->maxsize = wire.maxsize;
    state->max_item = wire.max_item_bytes;
    return QueueCore(std::move(state));
}

}  // namespace zmp::detail
