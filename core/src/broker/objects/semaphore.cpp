// Semaphore and BoundedSemaphore in the broker: a value, a queue of waiting acquirers, and the
// units each client process holds (acquired and not released). A process that is killed or
// crashes gives its units back, and whoever takes one of them is told (owner_died); a process that
// exits normally keeps them (a semaphore used as a signal stays consumed).
#include <climits>
#include <unordered_map>

#include "broker/objects/kinds.hpp"
#include "zmp/detail/error_texts.hpp"

namespace zmp::detail::broker {
namespace {

constexpr std::int64_t kMaxValue = INT32_MAX;

class SemaphoreObject final : public Object {
public:
    SemaphoreObject(std::uint64_t id, const CreateArgs& args)
        : Object(id, args), value_(args.value), bound_(args.kind == Kind::bounded_semaphore ? args.value : 0) {
        if (args.value < 0 || args.value > kMaxValue)
            refuse(Status::value_error, "semaphore initial value must be >= 0");
    }

    SlotStart slot_start() const { return {value_, kForever}; }

    // [block, timeout ns, 0] -> [acquired, owner died]
    void acquire(Services& s, const Caller& caller, const Request& req) {
        const bool block = arg(req, 0) != 0;
        const std::int64_t timeout_ns = arg(req, 1);
        if (value_ > 0) {
            (void)offer(s, caller, req.rid);
            return;
        }
        if (!block || timeout_ns == 0) {
            (void)s.reply(caller, req.rid, Status::ok, {0, 0});
            return;
        }
        s.add_waiter(queue_, Waiter{caller, req.rid, id(), deadline_from(timeout_ns), 0, {}});
    }

    // [] -> []
    void release(Services& s, const Caller& caller, const Request& req) {
        if (bound_ != 0 ? value_ >= bound_ : value_ >= kMaxValue)
            refuse(Status::value_error, texts::kReleasedTooManyTimes);
        // A process holds what it acquired and has not released; a release by a process that holds
        // nothing (a semaphore used as a signal) belongs to nobody.
        if (auto held = held_.find(caller.client); held != held_.end() && --held->second <= 0) held_.erase(held);
        (void)s.reply(caller, req.rid, Status::ok);
        give(s);
    }

    // [] -> [value]
    void get_value(Services& s, const Caller& caller, const Request& req) {
        (void)s.reply(caller, req.rid, Status::ok, {value_});
    }

    void on_timeout(Services& s, WaiterId id) override {
        queue_.erase(id);
        (void)s.reply(s.take_waiter(id), Status::ok, {0, 0});
    }

    void drop_waiter(Services&, WaiterId id) override { queue_.erase(id); }

    void on_client_death(Services& s, Client& client) override {
        auto held = held_.find(&client);
        if (held == held_.end()) return;
        const std::int64_t units = held->second;
        held_.erase(held);
        for (std::int64_t i = 0; i < units; ++i) {
            if (bound_ != 0 && value_ >= bound_) break;
            ++died_credits_;
            give(s);
        }
    }

    void on_client_exit(Services&, Client& client) override { held_.erase(&client); }

private:
    // Takes a unit for `to` and tells it; if the answer cannot reach it, the unit comes back.
    bool offer(Services& s, const Caller& to, std::uint64_t rid) {
        --value_;
        ++held_[to.client];
        const bool died = died_credits_ > 0;
        if (died) --died_credits_;
        if (s.reply(to, rid, Status::ok, {1, died ? 1 : 0})) return true;
        ++value_;
        if (--held_[to.client] <= 0) held_.erase(to.client);
        if (died) ++died_credits_;
        return false;
    }

    // A unit comes back: to the oldest waiter that can take it, or to the count.
    void give(Services& s) {
        ++value_;
        while (value_ > 0 && !queue_.empty()) {
            const WaiterId next = queue_.front();
            queue_.pop_front();
            Waiter w = s.take_waiter(next);
            (void)offer(s, w.caller, w.rid);
        }
    }

public:
    void describe(Services&, StatusFields& out) const override {
        out.emplace_back("value", value_);
        out.emplace_back("waiters", static_cast<std::int64_t>(queue_.size()));
    }

private:
    std::int64_t value_;
    const std::int64_t bound_;       // BoundedSemaphore: the initial value; 0: unbounded
    std::int64_t died_credits_ = 0;  // units returned by dead holders, not taken yet
    std::unordered_map<Client*, std::int64_t> held_;
    WaitQueue queue_;
};

}  // namespace

const KindEntry semaphore_kind{
    {Kind::semaphore, Kind::bounded_semaphore},
    true,
    &make_object<SemaphoreObject>,
    {{Op::acquire, op<&SemaphoreObject::acquire>()},
     {Op::release, op<&SemaphoreObject::release>()},
     {Op::get_value, op<&SemaphoreObject::get_value>()}},
};

}  // namespace zmp::detail::broker
