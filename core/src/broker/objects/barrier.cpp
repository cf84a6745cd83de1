// Barrier in the broker: threading.Barrier's state machine, across processes. Parties leave at once
// when released. The last arrival of a barrier with an action runs it in its own process (status
// run_action) and reports with BARRIER_DONE before anyone is released; arrivals during the action
// wait to enter the next round, as Python's _enter() does. A timeout, abort(), a party's death, or
// reset() while parties wait, break it.
#include <climits>
#include <optional>

#include "broker/objects/kinds.hpp"
#include "zmp/detail/error_texts.hpp"

namespace zmp::detail::broker {
namespace {

enum class BarrierState { filling, releasing, broken };

class BarrierObject final : public Object {
public:
    BarrierObject(std::uint64_t id, const CreateArgs& args)
        : Object(id, args.kind),
          parties_(args.value),
          timeout_ns_(args.timeout_ns < 0 ? kForever : args.timeout_ns),
          has_action_(args.has_action) {
        if (args.value < 1 || args.value > INT32_MAX) refuse(Status::value_error, "a barrier needs at least one party");
    }

    SlotStart slot_start() const { return {parties_, timeout_ns_}; }

    // [timeout ns or kBarrierDefault] -> [index]; status run_action to the last arrival when there is an action
    void wait(Services& s, const Caller& caller, const Request& req) { arrive(s, caller, req.rid, arg(req, 0)); }

    // [action succeeded] -> []   (from the party that ran the action)
    void done(Services& s, const Caller& caller, const Request& req) {
        if (!runner_ || runner_->caller.routing_id != caller.routing_id) {
            refuse(Status::protocol_error, "barrier_done from a party that is not running the action");
        }
        const bool succeeded = arg(req, 0) != 0;
        runner_.reset();
        if (state_ == BarrierState::broken) {
            // Broken while the action ran (abort, or a waiter died): the runner learns it too.
            (void)s.reply(caller, req.rid, Status::broken_barrier, {}, "the barrier was broken");
        } else if (succeeded) {
            release_all(s);
            (void)s.reply(caller, req.rid, Status::ok);
        } else {
            break_it(s);  // the runner rethrows the action's own exception
            (void)s.reply(caller, req.rid, Status::ok);
        }
        admit_entering(s);
    }

    // [] -> []
    void abort(Services& s, const Caller& caller, const Request& req) {
        break_it(s);
        (void)s.reply(caller, req.rid, Status::ok);
    }

    // [] -> []
    void reset(Services& s, const Caller& caller, const Request& req) {
        // While the action runs, Python's reset() waits for the round to complete and then finds
        // nothing to reset: the same here.
        if (state_ != BarrierState::releasing) {
            if (count_ > 0) break_it(s);  // the parties waiting now get BrokenBarrierError
            count_ = 0;
            state_ = BarrierState::filling;
        }
        (void)s.reply(caller, req.rid, Status::ok);
    }

    // [] -> [parties, n_waiting, broken]
    void info(Services& s, const Caller& caller, const Request& req) {
        const bool broken = state_ == BarrierState::broken;
        (void)s.reply(caller, req.rid, Status::ok, {parties_, broken ? 0 : count_, broken ? 1 : 0});
    }

    void on_timeout(Services& s, WaiterId id) override {
        if (state_ == BarrierState::releasing) {
            // As in Python: a party whose timeout passes while the action runs is released with
            // the others once the action ends; it stops counting time.
            s.clear_deadline(id);
            return;
        }
        break_it(s);  // the party that timed out gets BrokenBarrierError with the others
    }

    void drop_waiter(Services&, WaiterId id) override {
        // A party that died while waiting breaks the barrier (on_client_death, once every waiter
        // of that client is gone); one that died waiting to enter does not.
        if (queue_.erase(id)) dead_party_ = true;
        entering_.erase(id);
    }

    void on_client_death(Services& s, Client& client) override {
        if (runner_ && runner_->caller.client == &client) {
            runner_.reset();  // it died running the action
            dead_party_ = true;
        }
        if (!std::exchange(dead_party_, false)) return;
        if (state_ != BarrierState::broken) break_it(s);
        admit_entering(s);
    }

private:
    void arrive(Services& s, const Caller& caller, std::uint64_t rid, std::int64_t timeout_ns) {
        if (timeout_ns == kBarrierDefault) timeout_ns = timeout_ns_;
        if (state_ == BarrierState::broken) refuse(Status::broken_barrier, texts::kBarrierBroken);
        if (state_ == BarrierState::releasing) {
            // Python's _enter(): arrivals wait while the previous round is being released.
            s.add_waiter(entering_, Waiter{caller, rid, id(), kNever, timeout_ns, {}});
            return;
        }
        const std::int64_t index = count_++;
        if (count_ == parties_) {
            if (has_action_) {
                // The last arrival runs the action in its own process before anyone is released.
                state_ = BarrierState::releasing;
                runner_ = Waiter{caller, rid, id(), kNever, index, {}};
                (void)s.reply(*runner_, Status::run_action, {index});
                return;
            }
            (void)s.reply(caller, rid, Status::ok, {index});
            return release_all(s);
        }
        const WaiterId w = s.add_waiter(queue_, Waiter{caller, rid, id(), deadline_from(timeout_ns), index, {}});
        // wait(0) by a party that is not the last: its deadline has already passed.
        if (timeout_ns == 0) on_timeout(s, w);
    }

    void release_all(Services& s) {
        for (WaiterId id : queue_.take_all()) {
            const Waiter w = s.take_waiter(id);
            (void)s.reply(w, Status::ok, {w.arg});
        }
        count_ = 0;
        state_ = BarrierState::filling;
    }

    void break_it(Services& s) {
        state_ = BarrierState::broken;
        for (WaitQueue* q : {&queue_, &entering_}) {
            for (WaiterId id : q->take_all())
                (void)s.reply(s.take_waiter(id), Status::broken_barrier, {}, texts::kBarrierBroken);
        }
        count_ = 0;
    }

    void admit_entering(Services& s) {
        if (state_ == BarrierState::releasing) return;
        for (WaiterId id : entering_.take_all()) {
            Waiter w = s.take_waiter(id);
            if (state_ == BarrierState::broken) {
                (void)s.reply(w, Status::broken_barrier, {}, texts::kBarrierBroken);
            } else if (state_ == BarrierState::releasing) {
                s.add_waiter(entering_, std::move(w));  // a new round started: wait again
            } else {
                arrive(s, w.caller, w.rid, w.arg);
            }
        }
    }

public:
    void describe(Services&, StatusFields& out) const override {
        const bool broken = state_ == BarrierState::broken;
        out.emplace_back("parties", parties_);
        out.emplace_back("n_waiting", broken ? 0 : count_);
        out.emplace_back("broken", broken ? 1 : 0);
    }

private:
    const std::int64_t parties_;
    const std::int64_t timeout_ns_;  // the default for wait(); kForever: none
    const bool has_action_;
    std::int64_t count_ = 0;
    BarrierState state_ = BarrierState::filling;
    bool dead_party_ = false;       // a waiting party died: broken once its client is dealt with
    std::optional<Waiter> runner_;  // the last arrival, running the action
    WaitQueue queue_;               // parties waiting for the round to be released
    WaitQueue entering_;            // arrivals held back while the action runs
};

}  // namespace

const KindEntry barrier_kind{
    {Kind::barrier},
    true,
    &make_object<BarrierObject>,
    {{Op::barrier_wait, op<&BarrierObject::wait>()},
     {Op::barrier_done, op<&BarrierObject::done>()},
     {Op::barrier_abort, op<&BarrierObject::abort>()},
     {Op::barrier_reset, op<&BarrierObject::reset>()},
     {Op::barrier_state, op<&BarrierObject::info>()}},
};

}  // namespace zmp::detail::broker
