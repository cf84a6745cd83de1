// Event in the broker: a flag and the waiters that set() wakes all at once.
#include "broker/objects/kinds.hpp"

namespace zmp::detail::broker {
namespace {

class EventObject final : public Object {
public:
    using Object::Object;

    // [] -> []
    void set(Services& s, const Caller& caller, const Request& req) {
        flag_ = true;
        for (WaiterId id : queue_.take_all()) (void)s.reply(s.take_waiter(id), Status::ok, {1});
        (void)s.reply(caller, req.rid, Status::ok);
    }

    // [] -> []
    void clear(Services& s, const Caller& caller, const Request& req) {
        flag_ = false;
        (void)s.reply(caller, req.rid, Status::ok);
    }

    // [] -> [flag]
    void is_set(Services& s, const Caller& caller, const Request& req) {
        (void)s.reply(caller, req.rid, Status::ok, {flag_ ? 1 : 0});
    }

    // [timeout ns] -> [flag]
    void wait(Services& s, const Caller& caller, const Request& req) {
        const std::int64_t timeout_ns = arg(req, 0);
        if (flag_ || timeout_ns == 0) {
            (void)s.reply(caller, req.rid, Status::ok, {flag_ ? 1 : 0});
            return;
        }
        s.add_waiter(queue_, Waiter{caller, req.rid, id(), deadline_from(timeout_ns), 0, {}});
    }

    void on_timeout(Services& s, WaiterId id) override {
        queue_.erase(id);
        (void)s.reply(s.take_waiter(id), Status::ok, {0});  // not set
    }

    void drop_waiter(Services&, WaiterId id) override { queue_.erase(id); }

    void describe(Services&, StatusFields& out) const override {
        out.emplace_back("is_set", flag_ ? 1 : 0);
        out.emplace_back("waiters", static_cast<std::int64_t>(queue_.size()));
    }

private:
    bool flag_ = false;
    WaitQueue queue_;
};

}  // namespace

const KindEntry event_kind{
    {Kind::event},
    true,
    &make_object<EventObject>,
    {{Op::event_set, op<&EventObject::set>()},
     {Op::event_clear, op<&EventObject::clear>()},
     {Op::event_is_set, op<&EventObject::is_set>()},
     {Op::event_wait, op<&EventObject::wait>()}},
};

}  // namespace zmp::detail::broker
