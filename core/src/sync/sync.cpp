// The public handles: each call takes the fast path when the object has shared state (a slot in
// its broker's arena), and otherwise sends one request to the broker.
#include "zmp/sync.hpp"

#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "base/fork.hpp"
#include "broker/arena.hpp"
#include "broker/client.hpp"
#include "broker/fast_path.hpp"
#include "broker/handle.hpp"
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

Self self(const ObjectRef& r) { return {r.link->client_index(), current_tid()}; }

ClientRecord* record_of(const ObjectRef& r) {
    Arena* arena = r.link->arena();
    return arena != nullptr ? &arena->client(r.link->client_index()) : nullptr;
}

std::uint32_t slot_index(const ObjectRef& r) { return static_cast<std::uint32_t>(r.slot_index); }

ObjectHandle create(Kind kind, std::int64_t value = 0, std::int64_t timeout = kForever, bool has_action = false) {
    BrokerLink& link = BrokerLink::local();
    (void)link.client_index();  // HELLO first: it says whether the broker offers an arena
    const bool shared = kind != Kind::condition && fast_path_wanted() && link.arena() != nullptr;
    const Reply r =
        link.call(Op::create, 0, {static_cast<std::int64_t>(kind), value, timeout, shared ? 1 : 0, has_action ? 1 : 0});
    return make_handle(link, static_cast<std::uint64_t>(r.value(0)), static_cast<std::uint8_t>(kind), r.value(1));
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

void note_acquired(const ObjectRef& r, bool owner_died) {
    if (!owner_died && !have_died_notes) return;  // the common case: nothing to note
    auto& objects = notes();
    const std::pair<const BrokerLink*, std::uint64_t> key{r.link, r.id};
    std::erase(objects, key);
    if (owner_died) objects.push_back(key);
    have_died_notes = !objects.empty();
}

}  // namespace

bool owner_died(const ObjectHandle& handle) {
    if (!have_died_notes) return false;
    const ObjectRef& r = handle.ref();
    auto& objects = notes();
    const std::pair<const BrokerLink*, std::uint64_t> key{r.link, r.id};
    return std::find(objects.begin(), objects.end(), key) != objects.end();
}

namespace {

// ---- shared by Lock, RLock and Condition -------------------------------------------------------

bool acquire_lock(const ObjectRef& r, bool recursive, bool block, const Timeout& timeout) {
    Acquired got;
    if (r.slot != nullptr) {
        got = lock_acquire(*r.link->arena(), *r.slot, self(r), recursive, block,
                           block ? Deadline::after(timeout) : Deadline::never());
    } else {
        const Reply rep = r.link->call(Op::acquire, r.id, {block ? 1 : 0, block ? encode_timeout(timeout) : 0, 0});
        got = {rep.value(0) != 0, rep.value(1) != 0};
    }
    if (got.acquired) note_acquired(r, got.owner_died);
    return got.acquired;
}

void release_lock(const ObjectRef& r, bool recursive) {
    if (r.slot != nullptr) {
        lock_release(*r.slot, recursive ? self(r) : Self{}, recursive);
    } else {
        (void)r.link->call(Op::release, r.id, {});
    }
}

bool is_recursive(const ObjectRef& r) { return r.kind == static_cast<std::uint8_t>(Kind::rlock); }

bool owned_lock(const ObjectRef& r) {
    if (r.slot != nullptr) return lock_owned(*r.slot, self(r));
    return r.link->call(Op::owned, r.id, {}).value(0) != 0;
}

std::int64_t release_lock_all(const ObjectRef& r) {
    if (r.slot != nullptr) return lock_release_all(*r.slot, self(r), is_recursive(r));
    return r.link->call(Op::release_all, r.id, {}).value(0);
}

void restore_lock(const ObjectRef& r, std::int64_t depth) {
    Acquired got;
    if (r.slot != nullptr) {
        got = lock_restore(*r.link->arena(), *r.slot, self(r), static_cast<std::uint32_t>(depth));
    } else {
        const Reply rep = r.link->call(Op::acquire, r.id, {1, kForever, depth});
        got = {true, rep.value(1) != 0};
    }
    note_acquired(r, got.owner_died);
}

bool acquire_semaphore(const ObjectRef& r, bool block, const Timeout& timeout) {
    Acquired got;
    if (r.slot != nullptr) {
        got = semaphore_acquire(*r.link->arena(), *r.slot, record_of(r), slot_index(r), block,
                                block ? Deadline::after(timeout) : Deadline::never());
    } else {
        const Reply rep = r.link->call(Op::acquire, r.id, {block ? 1 : 0, block ? encode_timeout(timeout) : 0, 0});
        got = {rep.value(0) != 0, rep.value(1) != 0};
        if (got.acquired) r.link->note_broker_holding();
    }
    if (got.acquired) note_acquired(r, got.owner_died);
    return got.acquired;
}

void release_semaphore(const ObjectRef& r) {
    if (r.slot != nullptr) {
        semaphore_release(*r.slot, record_of(r), slot_index(r));
    } else {
        (void)r.link->call(Op::release, r.id, {});
    }
}

std::uint8_t kind_byte(Kind k) { return static_cast<std::uint8_t>(k); }

}  // namespace

// Lockable::unlock() runs in guards' destructors: a broker that is gone has nothing left to release.
void unlock_quietly(const ObjectHandle& handle) {
    const ObjectRef& r = handle.ref();
    try {
        if (r.kind == kind_byte(Kind::semaphore) || r.kind == kind_byte(Kind::bounded_semaphore)) {
            release_semaphore(r);
        } else {
            release_lock(r, is_recursive(r));
        }
    } catch (const BrokerLost&) {
    }
}

// ---- the wire ----------------------------------------------------------------------------------

ObjectWire sync_to_wire(const ObjectHandle& handle) { return broker::to_wire(handle); }

ObjectHandle sync_from_wire(const msgpack::object& obj, SyncType type) {
    if (obj.type != msgpack::type::ARRAY || obj.via.array.size != 6) {
        throw ProtocolError("received a value that is not a synchronization handle where one was expected");
    }
    const auto wire = transport::convert<ObjectWire>(obj);
    bool accepted = false;
    switch (type) {
        case SyncType::lock:
            accepted = wire.kind == kind_byte(Kind::lock);
            break;
        case SyncType::rlock:
            accepted = wire.kind == kind_byte(Kind::rlock);
            break;
        case SyncType::semaphore:
            accepted = wire.kind == kind_byte(Kind::semaphore) || wire.kind == kind_byte(Kind::bounded_semaphore);
            break;
        case SyncType::bounded_semaphore:
            accepted = wire.kind == kind_byte(Kind::bounded_semaphore);
            break;
        case SyncType::event:
            accepted = wire.kind == kind_byte(Kind::event);
            break;
        case SyncType::condition:
            accepted = wire.kind == kind_byte(Kind::condition);
            break;
        case SyncType::condition_lock:
            accepted = wire.kind == kind_byte(Kind::lock) || wire.kind == kind_byte(Kind::rlock);
            break;
        case SyncType::barrier:
            accepted = wire.kind == kind_byte(Kind::barrier);
            break;
    }
    if (!accepted) throw ProtocolError("received a synchronization handle of another type than expected");
    return broker::from_wire(wire);
}

}  // namespace detail

using namespace detail::broker;
using detail::ObjectRef;

// ---- Lock, RLock ---------------------------------------------------------------------------------

Lock::Lock() : LockableHandle(detail::create(Kind::lock)) {}
bool Lock::acquire(bool block, Timeout timeout) const {
    return detail::acquire_lock(handle_.ref(), false, block, timeout);
}
void Lock::release() const { detail::release_lock(handle_.ref(), false); }

RLock::RLock() : LockableHandle(detail::create(Kind::rlock)) {}
bool RLock::acquire(bool block, Timeout timeout) const {
    return detail::acquire_lock(handle_.ref(), true, block, timeout);
}
void RLock::release() const { detail::release_lock(handle_.ref(), true); }

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

bool Semaphore::acquire(bool block, Timeout timeout) const {
    return detail::acquire_semaphore(handle_.ref(), block, timeout);
}

void Semaphore::release() const { detail::release_semaphore(handle_.ref()); }

int Semaphore::get_value() const {
    const ObjectRef& r = handle_.ref();
    if (r.slot != nullptr) return semaphore_value(*r.slot);
    return static_cast<int>(r.link->call(Op::get_value, r.id, {}).value(0));
}

// ---- Event -------------------------------------------------------------------------------------

Event::Event() : handle_(detail::create(Kind::event)) {}

void Event::set() const {
    const ObjectRef& r = handle_.ref();
    if (r.slot != nullptr) return event_set(*r.slot);
    (void)r.link->call(Op::event_set, r.id, {});
}

void Event::clear() const {
    const ObjectRef& r = handle_.ref();
    if (r.slot != nullptr) return event_clear(*r.slot);
    (void)r.link->call(Op::event_clear, r.id, {});
}

bool Event::is_set() const {
    const ObjectRef& r = handle_.ref();
    if (r.slot != nullptr) return event_is_set(*r.slot);
    return r.link->call(Op::event_is_set, r.id, {}).value(0) != 0;
}

bool Event::wait(Timeout timeout) const {
    const ObjectRef& r = handle_.ref();
    if (r.slot != nullptr) return event_wait(*r.link->arena(), *r.slot, detail::Deadline::after(timeout));
    return r.link->call(Op::event_wait, r.id, {encode_timeout(timeout)}).value(0) != 0;
}

// ---- Condition ---------------------------------------------------------------------------------

Condition::Condition() : Condition(RLock()) {}
Condition::Condition(Lock lock) : handle_(detail::create(Kind::condition)), lock_(lock.handle()) {}
Condition::Condition(RLock lock) : handle_(detail::create(Kind::condition)), lock_(lock.handle()) {}

bool Condition::acquire(bool block, Timeout timeout) const {
    const ObjectRef& l = lock_.ref();
    return detail::acquire_lock(l, detail::is_recursive(l), block, timeout);
}

void Condition::release() const {
    const ObjectRef& l = lock_.ref();
    detail::release_lock(l, detail::is_recursive(l));
}
void Condition::unlock() const { detail::unlock_quietly(lock_); }

void Condition::check_owned(const char* what) const {
    if (!detail::owned_lock(lock_.ref())) throw ValueError(what);
}

bool Condition::wait(Timeout timeout) const {
    check_owned("cannot wait on un-acquired lock");
    // Registered with the broker before the lock is released: a notify() made under the lock
    // after that release cannot miss this waiter.
    const ObjectRef& r = handle_.ref();
    BrokerLink& link = *r.link;
    const std::uint64_t rid = link.send(Op::cond_wait, r.id, {encode_timeout(timeout)});
    checked(link.receive(rid));
    const std::int64_t depth = detail::release_lock_all(lock_.ref());
    bool notified = false;
    try {
        notified = checked(link.receive(rid)).value(0) != 0;
    } catch (...) {
        detail::restore_lock(lock_.ref(), depth);
        throw;
    }
    detail::restore_lock(lock_.ref(), depth);
    return notified;
}

void Condition::notify(int n) const {
    check_owned("cannot notify on un-acquired lock");
    if (n <= 0) return;
    const ObjectRef& r = handle_.ref();
    (void)r.link->call(Op::cond_notify, r.id, {n});
}

void Condition::notify_all() const {
    check_owned("cannot notify on un-acquired lock");
    const ObjectRef& r = handle_.ref();
    (void)r.link->call(Op::cond_notify, r.id, {-1});
}

// ---- Barrier -----------------------------------------------------------------------------------

namespace {
int checked_parties(int parties) {
    if (parties < 1) throw ValueError("a barrier needs at least one party");
    return parties;
}
}  // namespace

Barrier::Barrier(int parties, std::function<void()> action, Timeout timeout)
    : handle_(
          detail::create(Kind::barrier, checked_parties(parties), encode_timeout(timeout), static_cast<bool>(action))),
      action_(action ? std::make_shared<const std::function<void()>>(std::move(action)) : nullptr) {}

int Barrier::wait(Timeout timeout) const {
    const ObjectRef& r = handle_.ref();
    if (r.slot != nullptr) {
        detail::Deadline deadline = detail::Deadline::never();
        if (timeout) {
            deadline = detail::Deadline::after(timeout);
        } else if (const std::int64_t ns = r.slot->timeout_ns.load(std::memory_order_relaxed); ns >= 0) {
            deadline = detail::Deadline::after_ns(ns);
        }
        return barrier_wait(*r.link->arena(), *r.slot, detail::record_of(r), detail::slot_index(r), detail::self(r),
                            deadline, action_.get());
    }
    BrokerLink& link = *r.link;
    const Reply rep = link.call(Op::barrier_wait, r.id, {timeout ? encode_timeout(timeout) : kBarrierDefault});
    if (rep.status != Status::run_action) return static_cast<int>(rep.value(0));
    // The last arrival: run the action here, then let the broker release everyone.
    try {
        if (action_ && *action_) (*action_)();
    } catch (...) {
        (void)link.call(Op::barrier_done, r.id, {0});
        throw;
    }
    (void)link.call(Op::barrier_done, r.id, {1});
    return static_cast<int>(rep.value(0));
}

void Barrier::abort() const {
    const ObjectRef& r = handle_.ref();
    if (r.slot != nullptr) return barrier_abort(*r.link->arena(), *r.slot, detail::self(r));
    (void)r.link->call(Op::barrier_abort, r.id, {});
}

void Barrier::reset() const {
    const ObjectRef& r = handle_.ref();
    if (r.slot != nullptr) return barrier_reset(*r.link->arena(), *r.slot, detail::self(r));
    (void)r.link->call(Op::barrier_reset, r.id, {});
}

namespace {
BarrierInfo barrier_state(const ObjectRef& r) {
    if (r.slot != nullptr) return barrier_info(*r.link->arena(), *r.slot, detail::self(r));
    const Reply rep = r.link->call(Op::barrier_state, r.id, {});
    return {static_cast<int>(rep.value(0)), static_cast<int>(rep.value(1)), rep.value(2) != 0};
}
}  // namespace

int Barrier::parties() const {
    const ObjectRef& r = handle_.ref();
    if (r.slot != nullptr) return static_cast<int>(r.slot->parties.load(std::memory_order_relaxed));
    return barrier_state(r).parties;
}

int Barrier::n_waiting() const { return barrier_state(handle_.ref()).n_waiting; }
bool Barrier::broken() const { return barrier_state(handle_.ref()).broken; }

}  // namespace zmp
