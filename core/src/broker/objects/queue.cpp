// Queue and JoinableQueue in the broker, which owns their items so that each is delivered exactly
// once (ZeroMQ's PUSH/PULL alone would strand items prefetched by a consumer that dies).
//
// A getter is sent up to `most` items at once (a delivery, one per connection). With an arena the
// items stay the queue's until the consumer takes them: each is taken by a compare-and-swap on the
// delivery's cursor (arena.hpp: CursorSlot), and the broker takes back, with the same cursor, what
// a consumer that died, or sat idle while another waited, had not taken. Items come back to their
// place in the queue (each item carries the number it came in with). Without an arena a delivery
// is one item, the consumer's once sent.
#include <algorithm>
#include <deque>
#include <map>
#include <set>

#include "broker/arena.hpp"
#include "broker/events.hpp"
#include "broker/objects/kinds.hpp"
#include "zmp/errors.hpp"

namespace zmp::detail::broker {
namespace {

// A reply to QUEUE_GET carries at most this much (and at least one item).
constexpr std::size_t kDeliveryBytes = 1 << 20;
// A consumer whose cursor has not moved for this long while another waits on an empty queue is
// idle: what it received ahead and has not taken goes to the waiting one. A consumer that is
// taking its items keeps them, so that every consumer sees each producer's items in order.
constexpr auto kIdleHolder = std::chrono::milliseconds(20);

struct QueuedItem {
    std::uint64_t seq = 0;
    std::string bytes;
};

// Items sent to one connection in answer to QUEUE_GET, kept until the consumer has taken them all
// (or died): their cursor says which it took.
struct Delivery {
    Client* client = nullptr;
    std::uint32_t slot = 0;
    std::vector<QueuedItem> items;
    std::uint64_t seen_word = 0;  // the cursor when last looked at, and since when it is so
    Clock::time_point seen_at{};
};

class QueueObject final : public Object {
public:
    // CREATE [kind, maxsize, max item bytes, 0, 0]
    QueueObject(std::uint64_t id, const CreateArgs& args)
        : Object(id, args), maxsize_(args.value), max_item_(static_cast<std::uint64_t>(args.timeout_ns)) {
        if (args.timeout_ns < 1 || args.timeout_ns > kMaxBatchFrame - 4096)
            refuse(Status::value_error, "max_item_bytes is out of range");
    }

    // [block, timeout ns, count] + batch -> []; status full when there is no room in time
    void put(Services& s, const Caller& caller, const Request& req) {
        const std::int64_t count = arg(req, 2);
        if (req.payload == nullptr || count < 1) refuse(Status::protocol_error, "queue_put: no items");
        std::vector<std::string_view> batch;
        try {
            batch = split_batch_views(*req.payload, static_cast<std::size_t>(count));
        } catch (const ProtocolError& e) {
            refuse(Status::protocol_error, e.what());
        }
        for (std::string_view item : batch) {
            if (item.size() > max_item_) {
                refuse(Status::value_error, "an item of " + std::to_string(item.size()) +
                                                " bytes is larger than the queue's max_item_bytes (" +
                                                std::to_string(max_item_) + ")");
            }
        }
        const bool fits = putters_.empty() && (maxsize_ <= 0 || size(s) + count <= maxsize_);
        if (fits) {
            for (std::string_view item : batch) push(std::string(item));
            if (kind() == Kind::joinable_queue) unfinished_ += count;
            (void)s.reply(caller, req.rid, Status::ok);
            return serve(s);
        }
        const std::int64_t timeout = arg(req, 1);
        if (arg(req, 0) == 0 || timeout == 0) refuse(Status::full, "the queue is full");
        s.add_waiter(putters_,
                     Waiter{caller, req.rid, id(), deadline_from(timeout), count, {batch.begin(), batch.end()}});
    }

    // [block, timeout ns, max items] -> [count, cursor slot or -1] + batch; status empty
    void get(Services& s, const Caller& caller, const Request& req) {
        const bool block = arg(req, 0) != 0;
        const std::int64_t timeout = arg(req, 1);
        const std::int64_t most = std::clamp<std::int64_t>(arg(req, 2), 1, 1 << 16);
        // A consumer asks again only once it has taken its previous delivery: anything of it still
        // untaken (it raced with a take-back) returns to the queue.
        take_back(s, caller.routing_id, false);
        const auto now = Clock::now();
        if (items_.empty()) (void)recall_idle(s, now);
        if (!items_.empty() && getters_.empty()) {
            deliver(s, caller, req.rid, most);
            return serve(s);
        }
        if (!block || timeout == 0) refuse(Status::empty, "the queue is empty");
        s.add_waiter(getters_, Waiter{caller, req.rid, id(), deadline_from(timeout), most, {}});
        if (!holders_.empty()) s.want_ticks(id());
    }

    // [] -> no reply: the caller took items of its delivery (a bounded queue may have room)
    void taken(Services& s, const Caller&, const Request&) { serve(s); }

    // [] -> [items in the queue]
    void qsize(Services& s, const Caller& caller, const Request& req) {
        (void)s.reply(caller, req.rid, Status::ok, {size(s)});
    }

    // [] -> []
    void task_done(Services& s, const Caller& caller, const Request& req) {
        if (kind() != Kind::joinable_queue) refuse(Status::protocol_error, "task_done does not apply to this object");
        if (unfinished_ <= 0) refuse(Status::value_error, "task_done() called too many times");
        if (--unfinished_ == 0) {
            for (WaiterId id : joiners_.take_all()) (void)s.reply(s.take_waiter(id), Status::ok, {1});
        }
        (void)s.reply(caller, req.rid, Status::ok);
    }

    // [timeout ns] -> [every item done]
    void join(Services& s, const Caller& caller, const Request& req) {
        if (kind() != Kind::joinable_queue) refuse(Status::protocol_error, "queue_join does not apply to this object");
        const std::int64_t timeout = arg(req, 0);
        if (unfinished_ == 0 || timeout == 0) {
            (void)s.reply(caller, req.rid, Status::ok, {unfinished_ == 0 ? 1 : 0});
            return;
        }
        s.add_waiter(joiners_, Waiter{caller, req.rid, id(), deadline_from(timeout), 0, {}});
    }

    void on_timeout(Services& s, WaiterId id) override {
        if (joiners_.erase(id)) {
            (void)s.reply(s.take_waiter(id), Status::ok, {0});
            return;
        }
        const bool putter = putters_.erase(id);
        getters_.erase(id);
        (void)s.reply(s.take_waiter(id), putter ? Status::full : Status::empty, {},
                      putter ? "the queue is full" : "the queue is empty");
        if (putter) serve(s);  // a smaller put behind it may fit
    }

    void drop_waiter(Services&, WaiterId id) override {
        getters_.erase(id);
        putters_.erase(id);
        joiners_.erase(id);
    }

    // What its connections were sent and had not taken goes back to the queue.
    void on_client_death(Services& s, Client& client) override {
        bool refilled = false;
        for (auto it = deliveries_.begin(); it != deliveries_.end();) {
            if (it->second.client != &client) {
                ++it;
                continue;
            }
            log_items_given_back(kind(), id(), take_back(s, it->first, false), client_pid(client));
            s.release_slot(it->second.slot);
            it = deliveries_.erase(it);
            refilled = true;
        }
        if (refilled) serve(s);
    }

    void on_connection_gone(Services& s, const std::string& routing_id) override {
        auto it = deliveries_.find(routing_id);
        if (it == deliveries_.end()) return;
        const pid_t consumer = it->second.client != nullptr ? client_pid(*it->second.client) : 0;
        log_items_given_back(kind(), id(), take_back(s, routing_id, false), consumer);
        s.release_slot(it->second.slot);
        deliveries_.erase(it);
        serve(s);
    }

    // Every kTickInterval while getters wait and other consumers hold items.
    bool on_tick(Services& s, Clock::time_point now) override {
        if (getters_.empty() || holders_.empty()) return false;
        if (items_.empty() && recall_idle(s, now)) serve(s);
        return true;
    }

    void on_destroy(Services& s) override {
        for (auto& [routing_id, d] : deliveries_) s.release_slot(d.slot);
        deliveries_.clear();
        Object::on_destroy(s);
    }

    void describe(Services& s, StatusFields& out) const override {
        out.emplace_back("depth", size(s));
        out.emplace_back("waiting_consumers", static_cast<std::int64_t>(getters_.size()));
        out.emplace_back("waiting_producers", static_cast<std::int64_t>(putters_.size()));
        if (maxsize_ > 0) out.emplace_back("maxsize", maxsize_);
        if (kind() == Kind::joinable_queue) out.emplace_back("unfinished", unfinished_);
    }

private:
    // Items in the queue, and items delivered that their consumer has not taken yet: they are
    // still the queue's until taken (and go back to it if their consumer dies).
    std::int64_t size(Services& s) const {
        std::int64_t n = static_cast<std::int64_t>(items_.size());
        for (const std::string& holder : holders_) {
            const Delivery& d = deliveries_.at(holder);
            const std::uint64_t word = s.arena()->cursor(d.slot).word.load(std::memory_order_acquire);
            n += cursor_limit(word) - std::min(cursor_taken(word), cursor_limit(word));
        }
        return n;
    }

    void push(std::string bytes) { items_.push_back(QueuedItem{next_seq_++, std::move(bytes)}); }

    // Sends `to` up to `most` items from the front of the queue. With an arena, they stay the
    // queue's until the consumer takes them; without one, they are the consumer's once sent. An
    // answer that cannot reach the consumer leaves them in the queue.
    void deliver(Services& s, const Caller& to, std::uint64_t rid, std::int64_t most) {
        Arena* arena = s.arena();
        if (arena == nullptr) most = 1;
        std::string batch;
        std::size_t n = 0;
        while (n < static_cast<std::size_t>(most) && n < items_.size() &&
               (n == 0 || batch.size() + items_[n].bytes.size() <= kDeliveryBytes)) {
            append_item(batch, items_[n].bytes);
            ++n;
        }
        if (arena == nullptr) {
            if (s.reply_with_batch(to, rid, {1, -1}, std::move(batch))) items_.pop_front();
            return;
        }
        auto [it, fresh] = deliveries_.try_emplace(to.routing_id);
        Delivery& d = it->second;
        if (fresh) {
            d.client = to.client;
            d.slot = s.allocate_slot();
            CursorSlot& cursor = arena->cursor(d.slot);
            cursor.id.store(id(), std::memory_order_relaxed);
            cursor.kind.store(kCursorKind, std::memory_order_relaxed);
            s.note_connection_state(to.routing_id, id());
        }
        d.items.assign(std::make_move_iterator(items_.begin()),
                       std::make_move_iterator(items_.begin() + static_cast<std::ptrdiff_t>(n)));
        items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(n));
        d.seen_word = cursor_word(0, static_cast<std::uint32_t>(n));
        d.seen_at = Clock::now();
        arena->cursor(d.slot).word.store(d.seen_word, std::memory_order_release);
        holders_.insert(to.routing_id);
        if (!s.reply_with_batch(to, rid, {static_cast<std::int64_t>(n), d.slot}, std::move(batch))) {
            take_back(s, to.routing_id, false);
        }
    }

    // Takes back what `routing_id` was sent and has not taken: each item to its place in the queue.
    // leave_first: a delivery's first item stays its consumer's (so a consumer whose items are taken
    // back for another always makes progress). Returns how many came back.
    std::uint32_t take_back(Services& s, const std::string& routing_id, bool leave_first) {
        auto it = deliveries_.find(routing_id);
        if (it == deliveries_.end() || it->second.items.empty()) return 0;
        Delivery& d = it->second;
        std::atomic<std::uint64_t>& cursor = s.arena()->cursor(d.slot).word;
        std::uint64_t word = cursor.load(std::memory_order_acquire);
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
            auto at = std::lower_bound(items_.begin(), items_.end(), item.seq,
                                       [](const QueuedItem& q, std::uint64_t seq) { return q.seq < seq; });
            items_.insert(at, std::move(item));
        }
        if (cursor_taken(word) >= keep) {
            // Nothing left for the consumer to take: the delivery is settled.
            d.items.clear();
            holders_.erase(routing_id);
        } else {
            d.items.resize(keep);
        }
        return limit - keep;
    }

    // For a getter that would wait on an empty queue: what idle consumers (kIdleHolder) received
    // ahead and have not taken comes back (each keeps its first). True if any came back.
    bool recall_idle(Services& s, Clock::time_point now) {
        const std::size_t before = items_.size();
        const std::vector<std::string> holders(holders_.begin(), holders_.end());
        for (const std::string& holder : holders) {
            Delivery& d = deliveries_.at(holder);
            const std::uint64_t word = s.arena()->cursor(d.slot).word.load(std::memory_order_acquire);
            if (word != d.seen_word) {
                d.seen_word = word;
                d.seen_at = now;
            } else if (now - d.seen_at >= kIdleHolder) {
                take_back(s, holder, true);
            }
        }
        return items_.size() != before;
    }

    // Waiting puts that now fit go in; waiting gets are answered while there are items (each
    // getter gets its share when several wait).
    void serve(Services& s) {
        for (;;) {
            bool progress = false;
            while (!putters_.empty()) {
                const auto count = static_cast<std::int64_t>(s.waiter(putters_.front()).batch.size());
                if (maxsize_ > 0 && size(s) + count > maxsize_) break;
                const WaiterId next = putters_.front();
                putters_.pop_front();
                Waiter done = s.take_waiter(next);
                for (std::string& item : done.batch) push(std::move(item));
                if (kind() == Kind::joinable_queue) unfinished_ += count;
                (void)s.reply(done, Status::ok);
                progress = true;
            }
            while (!items_.empty() && !getters_.empty()) {
                const auto share =
                    std::max<std::int64_t>(1, static_cast<std::int64_t>(items_.size() / getters_.size()));
                const WaiterId next = getters_.front();
                getters_.pop_front();
                Waiter w = s.take_waiter(next);
                deliver(s, w.caller, w.rid, std::min(w.arg, share));
                progress = true;
            }
            // Without an arena, a delivery makes room at once.
            if (!progress || s.arena() != nullptr || putters_.empty()) return;
        }
    }

    const std::int64_t maxsize_;  // <= 0: unbounded
    const std::uint64_t max_item_;
    std::deque<QueuedItem> items_;  // in seq order
    std::uint64_t next_seq_ = 0;
    std::int64_t unfinished_ = 0;  // JoinableQueue: put and not yet marked done
    WaitQueue getters_;
    WaitQueue putters_;  // waiters whose items did not fit yet
    WaitQueue joiners_;
    std::map<std::string, Delivery> deliveries_;  // by connection
    std::set<std::string> holders_;               // connections with a delivery not all taken yet
};

}  // namespace

const KindEntry queue_kind{
    {Kind::queue, Kind::joinable_queue},
    false,
    &make_object<QueueObject>,
    {{Op::queue_put, op<&QueueObject::put>()},
     {Op::queue_get, op<&QueueObject::get>()},
     {Op::queue_taken, op<&QueueObject::taken>()},
     {Op::queue_size, op<&QueueObject::qsize>()},
     {Op::task_done, op<&QueueObject::task_done>()},
     {Op::queue_join, op<&QueueObject::join>()}},
};

}  // namespace zmp::detail::broker
