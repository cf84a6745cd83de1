#pragma once
// The same-host fast path: each object's semantics on its arena slot (arena.hpp), run by the
// process that calls, with atomics and futexes. The broker only creates slots (init_slot) and
// repairs what a dead client left (repair_client). Every sleep goes through Arena::sleep: a call
// blocked here raises BrokerLost (a ProcessError) as soon as the broker dies.
//
// Lock words (Lock, RLock, and a Barrier's internal mutex): 0 when free, else the owner's client
// index, with kContended set when someone may sleep on it. A lock whose owner died holds
// kDiedOwner until the next acquirer takes it, and learns so.

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "base/futex.hpp"
#include "broker/arena.hpp"
#include "broker/protocol.hpp"

namespace zmp::detail::broker {

inline constexpr std::uint32_t kContended = 0x80000000u;
inline constexpr std::uint32_t kOwnerMask = 0x3fffffffu;
inline constexpr std::uint32_t kDiedOwner = 0x3fffffffu;
inline constexpr std::uint32_t kBrokerOwner = 0x3ffffffeu;  // the broker, while it repairs a barrier

/// Who calls: the process's client index at the broker and the thread's id.
struct Self {
    std::uint32_t client;
    std::uint32_t tid;
};

struct Acquired {
    bool acquired = false;
    bool owner_died = false;  // taken over from a process that died holding it
};

// Lock (recursive=false) and RLock (recursive=true).
Acquired lock_acquire(Arena& arena, Slot& s, Self me, bool recursive, bool block, const Deadline& deadline);
void lock_release(Slot& s, Self me, bool recursive);  // ValueError
bool lock_owned(const Slot& s, Self me);
/// Releases every level (Condition.wait); ValueError unless owned. Returns the depth.
std::uint32_t lock_release_all(Slot& s, Self me, bool recursive);
/// Takes the lock again, blocking, with `depth` levels.
Acquired lock_restore(Arena& arena, Slot& s, Self me, std::uint32_t depth);

// Semaphore and BoundedSemaphore. `record` (may be null) notes the slots this process holds.
Acquired semaphore_acquire(Arena& arena, Slot& s, ClientRecord* record, std::uint32_t index, bool block,
                           const Deadline& deadline);
void semaphore_release(Slot& s, ClientRecord* record, std::uint32_t index);  // ValueError
int semaphore_value(const Slot& s);

// Event.
void event_set(Slot& s);
void event_clear(Slot& s);
bool event_is_set(const Slot& s);
bool event_wait(Arena& arena, Slot& s, const Deadline& deadline);

// Barrier: threading.Barrier's state machine under a robust internal mutex.
int barrier_wait(Arena& arena, Slot& s, ClientRecord* record, std::uint32_t index, Self me, const Deadline& deadline,
                 const std::function<void()>* action);
void barrier_abort(Arena& arena, Slot& s, Self me);
void barrier_reset(Arena& arena, Slot& s, Self me);
struct BarrierInfo {
    int parties;
    int n_waiting;
    bool broken;
};
BarrierInfo barrier_info(Arena& arena, Slot& s, Self me);

// Broker side.
/// For a status request: what slot `s` (an object of `kind`) holds, read without taking its locks
/// (a moment's picture), as named numbers; returns a Lock's or RLock's owner (a client index; 0:
/// free or none; kDiedOwner: its owner died and nobody took it since).
std::uint32_t describe_slot(const Slot& s, Kind kind, std::vector<std::pair<std::string, std::int64_t>>& out);
/// Initialises a fresh slot for object `id` (value: a semaphore's value or a barrier's parties).
void init_slot(Slot& s, std::uint64_t id, Kind kind, std::int64_t value, std::int64_t timeout_ns);
/// Undoes what client `dead` left in `arena`: frees the locks it held (marking them for the next
/// owner), returns the semaphore slots it held, breaks the barriers it was inside of, and clears
/// its record. `is_dead(index)` tells whether another client is dead too (it may hold a barrier's
/// mutex the repair needs). Returns the object ids of the locks it freed.
std::vector<std::uint64_t> repair_client(Arena& arena, std::uint32_t dead,
                                         const std::function<bool(std::uint32_t)>& is_dead);

}  // namespace zmp::detail::broker
