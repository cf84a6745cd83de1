// Lock and RLock in the broker: an owner (a client process and one of its threads), a recursion
// depth, and a queue of waiting acquirers served in order. A lock whose owner died is freed and
// the next acquirer is told (owner_died). On the fast path the state is in the arena instead and
// the broker only makes the slot (fast_path.cpp repairs it when an owner dies).
#include "broker/events.hpp"
#include "broker/objects/kinds.hpp"
#include "zmp/detail/error_texts.hpp"

namespace zmp::detail::broker {
namespace {

class LockObject final : public Object {
public:
    using Object::Object;

    // [block, timeout ns, depth to restore or 0] -> [acquired, owner died]
    void acquire(Services& s, const Caller& caller, const Request& req) {
        const bool block = arg(req, 0) != 0;
        const std::int64_t timeout_ns = arg(req, 1);
        const std::int64_t restore = arg(req, 2);
        if (recursive() && owned_by(caller)) {
            ++depth_;
            (void)s.reply(caller, req.rid, Status::ok, {1, 0});
            return;
        }
        if (owner_ == nullptr) return grant(s, caller, restore, req.rid);
        if (!block || timeout_ns == 0) {
            (void)s.reply(caller, req.rid, Status::ok, {0, 0});
            return;
        }
        s.add_waiter(queue_, Waiter{caller, req.rid, id(), deadline_from(timeout_ns), restore, {}});
    }

    // [] -> [depth left]
    void release(Services& s, const Caller& caller, const Request& req) { release_levels(s, caller, req, false); }
    // [] -> [depth]: every level (Condition.wait)
    void release_all(Services& s, const Caller& caller, const Request& req) { release_levels(s, caller, req, true); }

    // [] -> [owned by the calling thread]
    void owned(Services& s, const Caller& caller, const Request& req) {
        (void)s.reply(caller, req.rid, Status::ok, {owned_by(caller) ? 1 : 0});
    }

    void on_timeout(Services& s, WaiterId id) override {
        queue_.erase(id);
        (void)s.reply(s.take_waiter(id), Status::ok, {0, 0});  // not acquired
    }

    void drop_waiter(Services&, WaiterId id) override { queue_.erase(id); }

    void on_client_death(Services& s, Client& client) override {
        if (owner_ != &client) return;
        log_lock_freed(kind(), id(), client_pid(client));
        owner_ = nullptr;
        depth_ = 0;
        owner_died_ = true;  // the next owner is told
        hand_over(s);
    }

    void describe(Services&, StatusFields& out) const override {
        out.emplace_back("holder_pid", owner_ != nullptr ? client_pid(*owner_) : 0);
        if (owner_ != nullptr) out.emplace_back("holder_tid", owner_tid_);
        if (recursive()) out.emplace_back("depth", depth_);
        out.emplace_back("waiters", static_cast<std::int64_t>(queue_.size()));
    }

private:
    bool recursive() const { return kind() == Kind::rlock; }
    bool owned_by(const Caller& c) const { return owner_ == c.client && owner_tid_ == c.tid; }

    void release_levels(Services& s, const Caller& caller, const Request& req, bool all) {
        if (recursive() || all) {
            if (!owned_by(caller)) refuse(Status::value_error, texts::kReleaseUnacquired);
        } else if (owner_ == nullptr) {
            refuse(Status::value_error, texts::kReleasedTooManyTimes);
        }
        const std::int64_t depth = depth_;
        if (!all && --depth_ > 0) {
            (void)s.reply(caller, req.rid, Status::ok, {depth_});
            return;
        }
        owner_ = nullptr;
        depth_ = 0;
        (void)s.reply(caller, req.rid, Status::ok, {depth});
        hand_over(s);
    }

    // The lock goes to `to`. If the answer cannot reach it, the lock is free again.
    void grant(Services& s, const Caller& to, std::int64_t depth, std::uint64_t rid) {
        owner_ = to.client;
        owner_tid_ = to.tid;
        depth_ = depth > 0 ? depth : 1;
        const bool died = std::exchange(owner_died_, false);
        if (s.reply(to, rid, Status::ok, {1, died ? 1 : 0})) return;
        owner_ = nullptr;
        depth_ = 0;
        owner_died_ = died;
        hand_over(s);
    }

    void hand_over(Services& s) {
        if (owner_ != nullptr || queue_.empty()) return;
        const WaiterId next = queue_.front();
        queue_.pop_front();
        Waiter w = s.take_waiter(next);
        grant(s, w.caller, w.arg, w.rid);
    }

    Client* owner_ = nullptr;
    std::uint32_t owner_tid_ = 0;
    std::int64_t depth_ = 0;
    bool owner_died_ = false;
    WaitQueue queue_;
};

}  // namespace

const KindEntry lock_kind{
    {Kind::lock, Kind::rlock},
    true,
    &make_object<LockObject>,
    {{Op::acquire, op<&LockObject::acquire>()},
     {Op::release, op<&LockObject::release>()},
     {Op::release_all, op<&LockObject::release_all>()},
     {Op::owned, op<&LockObject::owned>()}},
};

}  // namespace zmp::detail::broker
