// The public handles: each call takes the fast path when the object has shared state (a slot in
// its broker's arena), and otherwise sends one request to the broker.
#include "zmp/sync.hpp"

#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "base/fork.hpp"
#include "runtime/runtime.hpp"
#include "broker/arena.hpp"
#include "broker/fast_path.hpp"
#include "broker/client.hpp"
#include "zmp/transport/codec.hpp"

namespace zmp {
namespace detail {

using namespace broker;

namespace {

// ZMP_SYNC=broker: objects keep all their state in the broker (the protocol path).
bool fast_path_wanted() {
    static const bool wanted = [] {
        const char* value = std::getenv("ZMP_SYNC");
        return value == nullptr || std::string_view(value) != "broker";
    }();
    return wanted;
}

Self self(const SyncRef& r) { return {r.link->client_index(), current_tid()}; }

ClientRecord* record_of(const SyncRef& r) {
    Arena* arena = r.link->arena();
    return arena != nullptr ? &arena->client(r.link->client_index()) : nullptr;
}

std::uint32_t slot_index(const SyncRef& r) { return static_cast<std::uint32_t>(r.slot_index); }

SyncRef create(Kind kind, std::int64_t value = 0, std::int64_t timeout = kForever, bool has_action = false) {
    BrokerLink& link = BrokerLink::local();
    (void)link.client_index();  // HELLO first: it says whether the broker offers an arena
    const bool shared = kind != Kind::condition && fast_path_wanted() && link.arena() != nullptr;
    const Reply r =
        link.call(Op::create, 0, {static_cast<std::int64_t>(kind), value, timeout, shared ? 1 : 0, has_action ? 1 : 0});
    SyncRef ref{&link, static_cast<std::uint64_t>(r.value(0)), static_cast<std::uint8_t>(kind), r.value(1), nullptr};
    if (ref.slot_index >= 0) ref.slot = &link.arena()->slot(slot_index(ref));
    return ref;
}

// owner_died(): per thread, the objects whose most recent acquire took over from a dead owner (a
// forked child's thread has acquired nothing yet).
struct DiedNotes {
    std::vector<std::pair<const BrokerLink*, std::uint64_t>> objects;
};
thread_local ForkLocal<DiedNotes> died_notes;
// Trivial, so that the common check costs no thread_local initialisation guard.
thread_local bool have_died_notes = false;

std::vector<std::pair<const BrokerLink*, std::uint64_t>>& notes() { return died_notes.get().objects; }

void note_acquired(const SyncRef& r, bool owner_died) {
    if (!owner_died && !have_died_notes) return;  // the common case: nothing to note
    auto& objects = notes();
    const std::pair<const BrokerLink*, std::uint64_t> key{r.link, r.id};
    std::erase(objects, key);
    if (owner_died) objects.push_back(key);
    have_died_notes = !objects.empty();
}

}  // namespace

bool owner_died(const SyncRef& r) {
    if (!have_died_notes) return false;
    auto& objects = notes();
    const std::pair<const BrokerLink*, std::uint64_t> key{r.link, r.id};
    return std::find(objects.begin(), objects.end(), key) != objects.end();
}

namespace {

// ---- shared by Lock, RLock and Condition -------------------------------------------------------

bool acquire_lock(const SyncRef& r, bool recursive, bool block, const Timeout& timeout) {
    Acquired got;
    if (r.slot != nullptr) {
        got = lock_acquire(*r.slot, self(r), recursive, block, block ? Deadline::after(timeout) : Deadline::never());
    } else {
        const Reply rep = r.link->call(Op::acquire, r.id, {block ? 1 : 0, block ? encode_timeout(timeout) : 0, 0});
        got = {rep.value(0) != 0, rep.value(1) != 0};
    }
    if (got.acquired) note_acquired(r, got.owner_died);
    return got.acquired;
}

void release_lock(const SyncRef& r, bool recursive) {
    if (r.slot != nullptr) {
        lock_release(*r.slot, recursive ? self(r) : Self{}, recursive);
    } else {
        (void)r.link->call(Op::release, r.id, {});
    }
}

bool is_recursive(const SyncRef& r) { return r.kind == static_cast<std::uint8_t>(Kind::rlock); }

bool owned_lock(const SyncRef& r) {
    if (r.slot != nullptr) return lock_owned(*r.slot, self(r));
    return r.link->call(Op::owned, r.id, {}).value(0) != 0;
}

std::int64_t release_lock_all(const SyncRef& r) {
    if (r.slot != nullptr) return lock_release_all(*r.slot, self(r), is_recursive(r));
    return r.link->call(Op::release_all, r.id, {}).value(0);
}

void restore_lock(const SyncRef& r, std::int64_t depth) {
    Acquired got;
    if (r.slot != nullptr) {
        got = lock_restore(*r.slot, self(r), static_cast<std::uint32_t>(depth));
    } else {
        const Reply rep = r.link->call(Op::acquire, r.id, {1, kForever, depth});
        got = {true, rep.value(1) != 0};
    }
    note_acquired(r, got.owner_died);
}

bool acquire_semaphore(const SyncRef& r, bool block, const Timeout& timeout) {
    Acquired got;
    if (r.slot != nullptr) {
        got = semaphore_acquire(*r.slot, record_of(r), slot_index(r), block,
                                block ? Deadline::after(timeout) : Deadline::never());
    } else {
        const Reply rep = r.link->call(Op::acquire, r.id, {block ? 1 : 0, block ? encode_timeout(timeout) : 0, 0});
        got = {rep.value(0) != 0, rep.value(1) != 0};
        if (got.acquired) r.link->note_broker_holding();
    }
    if (got.acquired) note_acquired(r, got.owner_died);
    return got.acquired;
}

std::uint8_t kind_byte(Kind k) { return static_cast<std::uint8_t>(k); }

}  // namespace

// Lockable::unlock() runs in guards' destructors: a broker that is gone has nothing left to release.
void unlock_quietly(const SyncRef& r) {
    try {
        if (r.kind == kind_byte(Kind::semaphore) || r.kind == kind_byte(Kind::bounded_semaphore)) {
            Semaphore(r).release();
        } else {
            release_lock(r, is_recursive(r));
        }
    } catch (const BrokerLost&) {
    }
}

// ---- the wire ----------------------------------------------------------------------------------

SyncWire to_wire(const SyncRef& ref) {
    if (ref.link == nullptr) throw ValueError("an empty synchronization handle cannot travel");
    Arena* arena = ref.link->arena();
    return SyncWire{ref.link->endpoint(), ref.id, ref.kind, ref.slot_index,
                    ref.slot_index >= 0 && arena != nullptr ? arena->prefix() : std::string()};
}

SyncRef from_wire(const msgpack::object& obj, HandleType type) {
    if (obj.type != msgpack::type::ARRAY || obj.via.array.size != 5) {
        throw ProtocolError("received a value that is not a synchronization handle where one was expected");
    }
    const auto wire = transport::convert<SyncWire>(obj);
    bool accepted = false;
    switch (type) {
        case HandleType::lock:
            accepted = wire.kind == kind_byte(Kind::lock);
            break;
        case HandleType::rlock:
            accepted = wire.kind == kind_byte(Kind::rlock);
            break;
        case HandleType::semaphore:
            accepted = wire.kind == kind_byte(Kind::semaphore) || wire.kind == kind_byte(Kind::bounded_semaphore);
            break;
        case HandleType::bounded_semaphore:
            accepted = wire.kind == kind_byte(Kind::bounded_semaphore);
            break;
        case HandleType::event:
            accepted = wire.kind == kind_byte(Kind::event);
            break;
        case HandleType::condition:
            accepted = wire.kind == kind_byte(Kind::condition);
            break;
        case HandleType::condition_lock:
            accepted = wire.kind == kind_byte(Kind::lock) || wire.kind == kind_byte(Kind::rlock);
            break;
        case HandleType::barrier:
            accepted = wire.kind == kind_byte(Kind::barrier);
            break;
    }
    if (!accepted) throw ProtocolError("received a synchronization handle of another type than expected");
    if (wire.endpoint.empty() || wire.endpoint.size() > 1024 || wire.id == 0) {
        throw ProtocolError("received a malformed synchronization handle");
    }
    BrokerLink& link = BrokerLink::get(wire.endpoint);
    SyncRef ref{&link, wire.id, wire.kind, wire.slot, nullptr};
    if (wire.slot >= 0) {
        if (wire.slot > UINT32_MAX) throw ProtocolError("received a synchronization handle with a bad slot");
        Arena* arena = link.arena(wire.arena);
        if (arena == nullptr) throw ProtocolError("received a synchronization handle without its arena");
        Slot& slot = arena->slot(static_cast<std::uint32_t>(wire.slot));
        if (slot.id.load(std::memory_order_acquire) != wire.id || slot.kind.load() != wire.kind) {
            throw ProtocolError("received a synchronization handle that does not match its shared state");
        }
        ref.slot = &slot;
    }
    return ref;
}

}  // namespace detail

using namespace detail::broker;
using detail::SyncRef;

// ---- Lock, RLock ---------------------------------------------------------------------------------

Lock::Lock() : LockableHandle(detail::create(Kind::lock)) {}
bool Lock::acquire(bool block, Timeout timeout) const { return detail::acquire_lock(ref_, false, block, timeout); }
void Lock::release() const { detail::release_lock(ref_, false); }

RLock::RLock() : LockableHandle(detail::create(Kind::rlock)) {}
bool RLock::acquire(bool block, Timeout timeout) const { return detail::acquire_lock(ref_, true, block, timeout); }
void RLock::release() const { detail::release_lock(ref_, true); }

// ---- Semaphore, BoundedSemaphore -----------------------------------------------------------------

namespace {
std::int64_t checked_value(int value) {
    if (value < 0) throw ValueError("semaphore initial value must be >= 0");
    return value;
}
}  // namespace

Semaphore::Semaphore(int value) : LockableHandle(detail::create(Kind::semaphore, checked_value(value))) {}
Semaphore::Semaphore(int value, Bounded)
    : LockableHandle(detail::create(Kind::bounded_semaphore, checked_value(value))) {}
BoundedSemaphore::BoundedSemaphore(int value) : Semaphore(value, Bounded{}) {}

bool Semaphore::acquire(bool block, Timeout timeout) const { return detail::acquire_semaphore(ref_, block, timeout); }

void Semaphore::release() const {
    if (ref_.slot != nullptr) {
        semaphore_release(*ref_.slot, detail::record_of(ref_), detail::slot_index(ref_));
    } else {
        (void)ref_.link->call(Op::release, ref_.id, {});
    }
}

int Semaphore::get_value() const {
    if (ref_.slot != nullptr) return semaphore_value(*ref_.slot);
    return static_cast<int>(ref_.link->call(Op::get_value, ref_.id, {}).value(0));
}

// ---- Event -------------------------------------------------------------------------------------

Event::Event() : ref_(detail::create(Kind::event)) {}

void Event::set() const {
    if (ref_.slot != nullptr) return event_set(*ref_.slot);
    (void)ref_.link->call(Op::event_set, ref_.id, {});
}

void Event::clear() const {
    if (ref_.slot != nullptr) return event_clear(*ref_.slot);
    (void)ref_.link->call(Op::event_clear, ref_.id, {});
}

bool Event::is_set() const {
    if (ref_.slot != nullptr) return event_is_set(*ref_.slot);
    return ref_.link->call(Op::event_is_set, ref_.id, {}).value(0) != 0;
}

bool Event::wait(Timeout timeout) const {
    if (ref_.slot != nullptr) return event_wait(*ref_.slot, detail::Deadline::after(timeout));
    return ref_.link->call(Op::event_wait, ref_.id, {encode_timeout(timeout)}).value(0) != 0;
}

// ---- Condition ---------------------------------------------------------------------------------

Condition::Condition() : Condition(RLock()) {}
Condition::Condition(Lock lock) : ref_(detail::create(Kind::condition)), lock_(lock.ref()) {}
Condition::Condition(RLock lock) : ref_(detail::create(Kind::condition)), lock_(lock.ref()) {}

bool Condition::acquire(bool block, Timeout timeout) const {
    return detail::acquire_lock(lock_, detail::is_recursive(lock_), block, timeout);
}

void Condition::release() const { detail::release_lock(lock_, detail::is_recursive(lock_)); }
void Condition::unlock() const { detail::unlock_quietly(lock_); }

void Condition::check_owned(const char* what) const {
    if (!detail::owned_lock(lock_)) throw ValueError(what);
}

bool Condition::wait(Timeout timeout) const {
    check_owned("cannot wait on un-acquired lock");
    // Registered with the broker before the lock is released: a notify() made under the lock
    // after that release cannot miss this waiter.
    BrokerLink& link = *ref_.link;
    const std::uint64_t rid = link.send(Op::cond_wait, ref_.id, {encode_timeout(timeout)});
    checked(link.receive(rid));
    const std::int64_t depth = detail::release_lock_all(lock_);
    bool notified = false;
    try {
        notified = checked(link.receive(rid)).value(0) != 0;
    } catch (...) {
        detail::restore_lock(lock_, depth);
        throw;
    }
    detail::restore_lock(lock_, depth);
    return notified;
}

void Condition::notify(int n) const {
    check_owned("cannot notify on un-acquired lock");
    if (n <= 0) return;
    (void)ref_.link->call(Op::cond_notify, ref_.id, {n});
}

void Condition::notify_all() const {
    check_owned("cannot notify on un-acquired lock");
    (void)ref_.link->call(Op::cond_notify, ref_.id, {-1});
}

// ---- Barrier -----------------------------------------------------------------------------------

namespace {
int checked_parties(int parties) {
    if (parties < 1) throw ValueError("a barrier needs at least one party");
    return parties;
}
}  // namespace

Barrier::Barrier(int parties, std::function<void()> action, Timeout timeout)
    : ref_(detail::create(Kind::barrier, checked_parties(parties), encode_timeout(timeout), static_cast<bool>(action))),
      action_(action ? std::make_shared<const std::function<void()>>(std::move(action)) : nullptr) {}

int Barrier::wait(Timeout timeout) const {
    if (ref_.slot != nullptr) {
        detail::Deadline deadline = detail::Deadline::never();
        if (timeout) {
            deadline = detail::Deadline::after(timeout);
        } else if (const std::int64_t ns = ref_.slot->timeout_ns.load(std::memory_order_relaxed); ns >= 0) {
            deadline = detail::Deadline::after_ns(ns);
        }
        return barrier_wait(*ref_.slot, detail::record_of(ref_), detail::slot_index(ref_), detail::self(ref_), deadline,
                            action_.get());
    }
    BrokerLink& link = *ref_.link;
    const Reply r = link.call(Op::barrier_wait, ref_.id, {timeout ? encode_timeout(timeout) : kBarrierDefault});
    if (r.status != Status::run_action) return static_cast<int>(r.value(0));
    // The last arrival: run the action here, then let the broker release everyone.
    try {
        if (action_ && *action_) (*action_)();
    } catch (...) {
        (void)link.call(Op::barrier_done, ref_.id, {0});
        throw;
    }
    (void)link.call(Op::barrier_done, ref_.id, {1});
    return static_cast<int>(r.value(0));
}

void Barrier::abort() const {
    if (ref_.slot != nullptr) return barrier_abort(*ref_.slot, detail::self(ref_));
    (void)ref_.link->call(Op::barrier_abort, ref_.id, {});
}

void Barrier::reset() const {
    if (ref_.slot != nullptr) return barrier_reset(*ref_.slot, detail::self(ref_));
    (void)ref_.link->call(Op::barrier_reset, ref_.id, {});
}

namespace {
BarrierInfo barrier_state(const SyncRef& r) {
    if (r.slot != nullptr) return barrier_info(*r.slot, detail::self(r));
    const Reply rep = r.link->call(Op::barrier_state, r.id, {});
    return {static_cast<int>(rep.value(0)), static_cast<int>(rep.value(1)), rep.value(2) != 0};
}
}  // namespace

int Barrier::parties() const {
    if (ref_.slot != nullptr) return static_cast<int>(ref_.slot->parties.load(std::memory_order_relaxed));
    return barrier_state(ref_).parties;
}

int Barrier::n_waiting() const { return barrier_state(ref_).n_waiting; }
bool Barrier::broken() const { return barrier_state(ref_).broken; }

}  // namespace zmp
