// Condition in the broker: the queue of waiters that notify() wakes in order. Its lock is a Lock
// or RLock object of its own (the client releases and re-acquires it around the wait). A waiter is
// registered before the client releases the lock, so a notify() made under the lock after that
// release cannot miss it; a waiter that timed out is removed here at once, so it never absorbs a
// notify.
#include "broker/objects/kinds.hpp"

namespace zmp::detail::broker {
namespace {

class ConditionObject final : public Object {
public:
    using Object::Object;

    // [timeout ns] -> status registered at once, then [notified]
    void wait(Services& s, const Caller& caller, const Request& req) {
        const Clock::time_point deadline = deadline_from(arg(req, 0));
        (void)s.reply(caller, req.rid, Status::registered);
        // A zero timeout expires on the next turn of the loop, after the lock's release.
        s.add_waiter(queue_, Waiter{caller, req.rid, id(), deadline, 0, {}});
    }

    // [n or -1 for all] -> [woken]
    void notify(Services& s, const Caller& caller, const Request& req) {
        const std::int64_t n = arg(req, 0);
        std::int64_t woken = 0;
        while (!queue_.empty() && (n < 0 || woken < n)) {
            const WaiterId next = queue_.front();
            queue_.pop_front();
            (void)s.reply(s.take_waiter(next), Status::ok, {1});
            ++woken;
        }
        (void)s.reply(caller, req.rid, Status::ok, {woken});
    }

    void on_timeout(Services& s, WaiterId id) override {
        queue_.erase(id);
        (void)s.reply(s.take_waiter(id), Status::ok, {0});  // not notified
    }

    void drop_waiter(Services&, WaiterId id) override { queue_.erase(id); }

    void describe(Services&, StatusFields& out) const override {
        out.emplace_back("waiters", static_cast<std::int64_t>(queue_.size()));
    }

private:
    WaitQueue queue_;
};

}  // namespace

const KindEntry condition_kind{
    {Kind::condition},
    false,
    &make_object<ConditionObject>,
    {{Op::cond_wait, op<&ConditionObject::wait>()}, {Op::cond_notify, op<&ConditionObject::notify>()}},
};

}  // namespace zmp::detail::broker
