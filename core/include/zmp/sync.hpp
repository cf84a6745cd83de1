#pragma once
// Locks, events, conditions, semaphores and barriers shared between processes: Python's
// multiprocessing.Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition and Barrier.
//
//     zmp::Lock lock;
//     zmp::Process p([lock] { std::lock_guard guard(lock); std::puts("one at a time"); });
//
// Handles. Every type here is a small copyable handle on an object that lives in the broker of
// the run: copies, forked children, and processes that receive a handle inside a message
// (zmp::Pipe, anything msgpack carries) all act on the same object. Nothing relies on
// inheritance: a handle names its broker and its object, and any process of the run can use it.
//
// Lifetime. An object lives while a handle on it exists anywhere: in a process (copies, or a
// forked child's inherited ones), or in a message on its way (a handle packed into a message
// keeps its object alive until the receiver decodes it). When the last one is gone — dropped, or
// gone with its process, even a killed one — the broker frees the object and its shared memory.
// A handle packed into a message that is never decoded keeps its object until its sender has been
// dead for 30 s (or has more than 65,536 such handles out). Decoding takes the handle over: a
// message decoded after every decoded copy of it was dropped may name an object that is gone (its
// calls then raise ProtocolError).
//
// The broker. The root process runs it on a background thread, started before its first child
// and by the first object it makes; one DEALER per thread multiplexes all the objects. Every
// blocking call waits for one answer — the broker replies when the condition holds or the
// deadline passes; nothing polls.
//
// The fast path. A broker whose clients are all on its host (the default) keeps the state of
// Lock, RLock, Semaphore, BoundedSemaphore, Event and Barrier in shared memory that it creates:
// every process then acquires, releases, sets and waits with atomics and futexes, with no message
// at all, and the broker stays the authority for creation and for repairs after a death. A
// Condition's waits always go through the broker (it alone orders notify() against timeouts).
// Setting ZMP_SYNC=broker in the environment makes objects created afterwards keep all their
// state in the broker instead (the protocol a broker on another host will use); the semantics are
// the same.
//
// Owner death (where Python leaves a lock held for ever). When a process dies, the broker learns
// it within milliseconds (a pidfd per client process) and undoes what it left: a Lock or RLock it
// held is released, Semaphore slots it acquired and had not released are returned, its pending
// waits are dropped, and a Barrier it was waiting at is broken (the other parties get
// BrokenBarrierError). The process that next acquires such a Lock, RLock or Semaphore slot is
// told: owner_died() is true on the thread whose most recent acquire() of that object took it over
// from a dead process.
//
//     if (lock.acquire(5s) && lock.owner_died()) repair_what_the_dead_owner_left_half_done();
//
// Broker death. If the broker dies (its root process is killed), every call blocked on one of its
// objects raises ProcessError ("the broker is gone") at once, on the fast path too; calls that need
// no wait on the fast path (an uncontended acquire, set, release) keep working on the shared state.
//
// Timeouts: any std::chrono duration (zmp::Seconds); zmp::forever (the default) waits for ever;
// a negative timeout means zero; with block=false the timeout is ignored.
//
// Errors: misuse raises zmp::ValueError (releasing a lock that is not held, or an RLock or a
// Condition the calling thread does not own; over-releasing a BoundedSemaphore); a broken
// Barrier raises zmp::BrokenBarrierError; a broker that died raises zmp::ProcessError.
//
// Threading: handles may be used from any thread. An RLock and a Condition's lock are owned by a
// (process, thread) pair, as in Python.

#include <msgpack.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "zmp/detail/deadline.hpp"
#include "zmp/detail/handle_codec.hpp"
#include "zmp/detail/object_handle.hpp"
#include "zmp/errors.hpp"
#include "zmp/timeout.hpp"

namespace zmp {

namespace detail {
/// owner_died() of a Lock, RLock or Semaphore (see below).
bool owner_died(const ObjectHandle& handle);
/// release() of a Lock, RLock or Semaphore, except that a broker that is gone is no error.
void unlock_quietly(const ObjectHandle& handle);

/// What Lock, RLock and Semaphore share: Python's acquire(timeout=t), the Lockable trio and
/// owner_died(), over the type's own acquire(block, timeout) and release().
template <class Handle>
class LockableHandle {
public:
    /// acquire(true, timeout).
    bool acquire(Timeout timeout) const { return self().acquire(true, timeout); }

    /// Lockable, for std::lock_guard, std::unique_lock and std::scoped_lock. unlock() is
    /// release(), except that it does not throw when the broker is gone (it runs in destructors).
    void lock() const { (void)self().acquire(true, forever); }
    void unlock() const { unlock_quietly(handle_); }
    bool try_lock() const { return self().acquire(false, forever); }

    /// True if the calling thread's most recent successful acquire() of this object took it (or,
    /// for a Semaphore, took a unit) over from a process that died holding it.
    bool owner_died() const { return detail::owner_died(handle_); }

    // A hidden friend, symmetric: as a member of this base, `a == b` and its C++20 reversed form
    // would both match, and clang calls the comparison ambiguous.
    friend bool operator==(const Handle& a, const Handle& b) { return a.handle().same_object(b.handle()); }
    /// For zmp's own code.
    const ObjectHandle& handle() const { return handle_; }

protected:
    explicit LockableHandle(ObjectHandle handle) : handle_(std::move(handle)) {}
    ObjectHandle handle_;

private:
    const Handle& self() const { return static_cast<const Handle&>(*this); }
};
}  // namespace detail

/// A non-recursive lock. Any process or thread may release it (as in Python).
///
///     zmp::Lock lock;
///     { std::lock_guard guard(lock); ... }           // or: if (lock.acquire(false)) { ...; lock.release(); }
class Lock : public detail::LockableHandle<Lock> {
public:
    /// A new lock, unlocked.
    Lock();

    /// Waits until the lock is free and takes it; true if taken. block=false: only tries.
    /// `timeout` bounds the wait (zmp::forever: none). Python's acquire(block, timeout).
    bool acquire(bool block = true, Timeout timeout = forever) const;
    using LockableHandle::acquire;
    /// Frees the lock. ValueError if it is not locked.
    void release() const;

    explicit Lock(detail::ObjectHandle handle) : LockableHandle(std::move(handle)) {}
};

/// A recursive lock, owned by one (process, thread): the owner may acquire it again, and must
/// release it as many times.
///
///     zmp::RLock r;  r.acquire(); r.acquire(); r.release(); r.release();
class RLock : public detail::LockableHandle<RLock> {
public:
    RLock();

    /// As Lock::acquire(); the owner acquires again at once (one more level).
    bool acquire(bool block = true, Timeout timeout = forever) const;
    using LockableHandle::acquire;
    /// Releases one level. ValueError unless the calling thread owns it.
    void release() const;

    explicit RLock(detail::ObjectHandle handle) : LockableHandle(std::move(handle)) {}
};

/// A counting semaphore. release() may raise the value beyond its initial value.
///
///     zmp::Semaphore slots(2);
///     std::lock_guard guard(slots);                 // at most two holders at once
///
/// A process holds the units it acquired and has not released (a release by a process that
/// holds none is nobody's); the broker returns a killed holder's units. Up to 32 semaphores per
/// process are tracked at once on the fast path.
class Semaphore : public detail::LockableHandle<Semaphore> {
public:
    /// ValueError if `value` is negative.
    explicit Semaphore(int value = 1);

    /// Takes one unit, waiting while the value is 0; true if taken (as Lock::acquire()).
    bool acquire(bool block = true, Timeout timeout = forever) const;
    using LockableHandle::acquire;
    /// Gives one unit back (any process may). ValueError beyond 2^31 - 1 (or, for a
    /// BoundedSemaphore, beyond its initial value).
    void release() const;
    /// The current value.
    int get_value() const;

    explicit Semaphore(detail::ObjectHandle handle) : LockableHandle(std::move(handle)) {}

protected:
    struct Bounded {};
    Semaphore(int value, Bounded);
};

/// A semaphore whose value may never exceed its initial value: one release() too many raises
/// ValueError("semaphore or lock released too many times").
class BoundedSemaphore : public Semaphore {
public:
    explicit BoundedSemaphore(int value = 1);
    explicit BoundedSemaphore(detail::ObjectHandle handle) : Semaphore(std::move(handle)) {}
};

/// A flag that processes can wait for.
///
///     zmp::Event ready;   /* child: */ ready.set();   /* parent: */ ready.wait();
class Event {
public:
    /// A new event, clear.
    Event();

    void set() const;
    void clear() const;
    bool is_set() const;
    /// Waits until the flag is set; returns the flag (false only when `timeout` passed first).
    bool wait(Timeout timeout = forever) const;

    bool operator==(const Event& other) const { return handle_.same_object(other.handle_); }

    explicit Event(detail::ObjectHandle handle) : handle_(std::move(handle)) {}
    const detail::ObjectHandle& handle() const { return handle_; }

private:
    detail::ObjectHandle handle_;
};

/// A condition variable over a Lock or an RLock (by default a new RLock).
///
///     std::unique_lock guard(cond);
///     cond.wait_for([&] { return ready(); }, 5s);   // elsewhere: { std::lock_guard g(cond); make_ready();
///     cond.notify(); }
///
/// wait() releases every recursion level of the lock, sleeps until notified or timed out, and
/// re-acquires the lock (with its levels) before returning, whatever the outcome. A waiter that
/// timed out never absorbs a notify(): the broker removes it from the queue atomically.
class Condition {
public:
    Condition();
    explicit Condition(Lock lock);
    explicit Condition(RLock lock);

    /// The lock's acquire() and release().
    bool acquire(bool block = true, Timeout timeout = forever) const;
    bool acquire(Timeout timeout) const { return acquire(true, timeout); }
    void release() const;
    void lock() const { (void)acquire(); }
    void unlock() const;
    bool try_lock() const { return acquire(false); }

    /// Waits for a notify(); false if `timeout` passed first. ValueError unless the calling
    /// thread owns the lock.
    bool wait(Timeout timeout = forever) const;
    /// Waits until pred() is true, with one deadline across every wake-up; returns the last
    /// value of pred() (false: timed out).
    template <class Predicate>
    bool wait_for(Predicate pred, Timeout timeout = forever) const;
    /// Wakes up to `n` waiting threads (none waiting: nothing happens). ValueError unless the
    /// calling thread owns the lock.
    void notify(int n = 1) const;
    void notify_all() const;

    bool operator==(const Condition& other) const { return handle_.same_object(other.handle_); }

    Condition(detail::ObjectHandle handle, detail::ObjectHandle lock_handle)
        : handle_(std::move(handle)), lock_(std::move(lock_handle)) {}
    const detail::ObjectHandle& handle() const { return handle_; }
    const detail::ObjectHandle& lock_handle() const { return lock_; }

private:
    void check_owned(const char* what) const;

    detail::ObjectHandle handle_;
    detail::ObjectHandle lock_;  // a Lock or an RLock
};

/// A barrier for `parties` parties (threading.Barrier's semantics, across processes).
///
///     zmp::Barrier b(3);
///     int index = b.wait();          // 0..2, one per party; each round starts afresh
///
/// The last party to arrive runs `action` (if any) in its own process, before anyone is released;
/// if the action throws, the exception reaches that party and the barrier breaks. A timeout (the
/// wait's, or else the barrier's), abort(), the death of a waiting party, or reset() while parties
/// wait, break it: every party waiting then, and every later wait(), raises BrokenBarrierError
/// until reset(). A C++ callable cannot travel: a Barrier with an action reaches other processes
/// by fork only (putting it in a message raises ValueError). On the fast path the broker can
/// repair a death for up to 16 threads of one process waiting at barriers at once.
class Barrier {
public:
    /// ValueError if `parties` < 1. `timeout`: the default for wait() (zmp::forever: none).
    explicit Barrier(int parties, std::function<void()> action = {}, Timeout timeout = forever);

    /// Waits until `parties` parties have called wait(); returns this party's arrival index.
    /// `timeout`: for this wait (std::nullopt, the default: the barrier's own).
    int wait(Timeout timeout = std::nullopt) const;
    /// Breaks the barrier.
    void abort() const;
    /// Returns it to its initial, empty state; parties waiting now get BrokenBarrierError.
    void reset() const;

    int parties() const;
    /// Parties waiting now.
    int n_waiting() const;
    bool broken() const;

    bool operator==(const Barrier& other) const { return handle_.same_object(other.handle_); }

    explicit Barrier(detail::ObjectHandle handle) : handle_(std::move(handle)) {}
    const detail::ObjectHandle& handle() const { return handle_; }
    bool has_action() const { return action_ && *action_; }

private:
    detail::ObjectHandle handle_;
    std::shared_ptr<const std::function<void()>> action_;
};

template <class Predicate>
bool Condition::wait_for(Predicate pred, Timeout timeout) const {
    const auto deadline = detail::Deadline::after(timeout);
    bool result = static_cast<bool>(pred());
    while (!result) {
        Timeout left;
        if (!deadline.is_never()) {
            if (deadline.passed()) break;
            left = std::chrono::duration_cast<Seconds>(deadline.remaining());
        }
        (void)wait(left);
        result = static_cast<bool>(pred());
    }
    return result;
}

}  // namespace zmp

// Every handle travels (handle_codec.hpp): as a Process or Pool argument under any start method,
// in any message. A handle is an ObjectWire; a Condition is [its wire, its lock's wire].
namespace zmp::detail {

/// Which handle types a received wire may become.
enum class SyncType : std::uint8_t {
    lock,
    rlock,
    semaphore,
    bounded_semaphore,
    event,
    condition,
    condition_lock,
    barrier
};

/// The wire of a synchronization handle (sets a reference aside for the receiver, see Lifetime).
ObjectWire sync_to_wire(const ObjectHandle& handle);
/// A received synchronization handle. ProtocolError unless `obj` is one of an object `type`
/// accepts (a Semaphore accepts a BoundedSemaphore; a Condition's lock is a Lock or an RLock)
/// that this process can reach.
ObjectHandle sync_from_wire(const msgpack::object& obj, SyncType type);

template <class H>
inline constexpr SyncType sync_type_of = SyncType::lock;
template <>
inline constexpr SyncType sync_type_of<RLock> = SyncType::rlock;
template <>
inline constexpr SyncType sync_type_of<Semaphore> = SyncType::semaphore;
template <>
inline constexpr SyncType sync_type_of<BoundedSemaphore> = SyncType::bounded_semaphore;
template <>
inline constexpr SyncType sync_type_of<Event> = SyncType::event;
template <>
inline constexpr SyncType sync_type_of<Barrier> = SyncType::barrier;

template <class H>
requires std::is_same_v<H, Lock> || std::is_same_v<H, RLock> || std::is_same_v<H, Semaphore> ||
    std::is_same_v<H, BoundedSemaphore> || std::is_same_v<H, Event> || std::is_same_v<H, Barrier>
struct HandleCodec<H> {
    static ObjectWire to_wire(const H& handle) {
        if constexpr (std::is_same_v<H, Barrier>) {
            if (handle.has_action()) {
                throw ValueError(
                    "a Barrier with an action cannot travel in a message (its action is a C++ callable); share it by "
                    "fork");
            }
        }
        return sync_to_wire(handle.handle());
    }
    static H from_wire(const msgpack::object& obj) { return H(sync_from_wire(obj, sync_type_of<H>)); }
};

template <>
struct HandleCodec<Condition> {
    static std::pair<ObjectWire, ObjectWire> to_wire(const Condition& cond) {
        return {sync_to_wire(cond.handle()), sync_to_wire(cond.lock_handle())};
    }
    static Condition from_wire(const msgpack::object& obj) {
        if (obj.type != msgpack::type::ARRAY || obj.via.array.size != 2) {
            throw ProtocolError("received a value that is not a Condition where one was expected");
        }
        return Condition(sync_from_wire(obj.via.array.ptr[0], SyncType::condition),
                         sync_from_wire(obj.via.array.ptr[1], SyncType::condition_lock));
    }
};

}  // namespace zmp::detail
