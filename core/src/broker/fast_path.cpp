#include "broker/fast_path.hpp"

#include <algorithm>
#include <climits>

#include "zmp/errors.hpp"
#include "zmp/detail/error_texts.hpp"

namespace zmp::detail::broker {
namespace {

constexpr auto relaxed = std::memory_order_relaxed;
constexpr auto acquire_order = std::memory_order_acquire;
constexpr auto release_order = std::memory_order_release;

constexpr std::uint32_t kMaxValue = INT32_MAX;

std::uint32_t owner_of(std::uint32_t word) { return word & kOwnerMask; }
bool is_free(std::uint32_t word) {
    const std::uint32_t owner = owner_of(word);
    return owner == 0 || owner == kDiedOwner;
}

// ---- lock words ----------------------------------------------------------------------------

constexpr int kSpins = 1000;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// Spins a few microseconds (never long enough to matter when the holder is descheduled) for the
// word to become free; true with `c` holding the free value if it did.
bool spin_until_free(const std::atomic<std::uint32_t>& word, std::uint32_t& c) {
    for (int i = 0; i < kSpins; ++i) {
        cpu_relax();
        c = word.load(relaxed);
        if (is_free(c) || (c & kContended) != 0) return is_free(c);
    }
    return false;
}

Acquired word_lock(Arena& arena, std::atomic<std::uint32_t>& word, std::uint32_t me, bool block,
                   const Deadline& deadline) {
    std::uint32_t c = 0;
    if (word.compare_exchange_strong(c, me, acquire_order, relaxed)) return {true, false};
    bool slept = false;
    for (;;) {
        if (is_free(c)) {
            // After sleeping, others may sleep too: keep the contended bit so that release wakes them.
            const std::uint32_t next = me | (slept || (c & kContended) != 0 ? kContended : 0);
            if (word.compare_exchange_weak(c, next, acquire_order, relaxed)) return {true, owner_of(c) == kDiedOwner};
            continue;
        }
        if (!block) return {false, false};
        // Locks are held for short sections: a brief spin usually sees the release, and then
        // neither side pays a futex system call (the holder wakes no one it does not have to).
        if (!slept && (c & kContended) == 0 && spin_until_free(word, c)) continue;
        if ((c & kContended) == 0) {
            if (!word.compare_exchange_weak(c, c | kContended, relaxed, relaxed)) continue;
            c |= kContended;
        }
        if (arena.sleep(word, c, deadline) == FutexWait::timed_out) return {false, false};
        slept = true;
        c = word.load(relaxed);
    }
}

// False if the word was not locked. (Releasing a lock freed after its owner died, before anyone
// took it, is that error too; it clears the "owner died" mark.)
bool word_unlock(std::atomic<std::uint32_t>& word) {
    const std::uint32_t c = word.exchange(0, release_order);
    if (is_free(c)) return false;
    if ((c & kContended) != 0) futex_wake(word, 1);
    return true;
}

// ---- semaphore holdings (what the broker returns if this process dies) -----------------------

constexpr std::uint64_t holding_key(std::uint32_t index) { return (std::uint64_t{index} + 1) << 32; }

void note_holding(ClientRecord* record, std::uint32_t index, int delta) {
    if (record == nullptr) return;
    const std::uint64_t key = holding_key(index);
    for (auto& entry : record->holdings) {
        std::uint64_t cur = entry.load(relaxed);
        while ((cur & ~std::uint64_t{0xffffffff}) == key) {
            const std::int64_t n = static_cast<std::int64_t>(cur & 0xffffffff) + delta;
            const std::uint64_t next = n <= 0 ? 0 : key | static_cast<std::uint64_t>(n);
            if (entry.compare_exchange_weak(cur, next, release_order, relaxed)) return;
        }
    }
    if (delta <= 0) return;  // released a slot this process did not hold: nobody's
    for (auto& entry : record->holdings) {
        std::uint64_t expected = 0;
        if (entry.compare_exchange_strong(expected, key | static_cast<std::uint64_t>(delta), release_order, relaxed))
            return;
    }
    // Every entry is in use: this slot is not tracked (documented limit).
}

bool take_credit(Slot& s) {
    std::uint32_t c = s.credits.load(relaxed);
    while (c > 0)
        if (s.credits.compare_exchange_weak(c, c - 1, relaxed, relaxed)) return true;
    return false;
}

// ---- barrier ---------------------------------------------------------------------------------

enum BarrierState : std::uint32_t { filling = 0, releasing, draining, resetting, broken };

void barrier_lock(Arena& arena, Slot& s, Self me) {
    (void)word_lock(arena, s.word, me.client, true, Deadline::never());
}
void barrier_unlock(Slot& s) { (void)word_unlock(s.word); }

// Everyone sleeping on the barrier looks again.
void barrier_bump(Slot& s) {
    s.seq.fetch_add(1, release_order);
    futex_wake(s.seq);
}

// Condition-variable wait on the barrier's state: called and returns with the mutex held.
// False on timeout.
bool barrier_sleep(Arena& arena, Slot& s, Self me, const Deadline& deadline) {
    const std::uint32_t seen = s.seq.load(relaxed);
    barrier_unlock(s);
    const FutexWait result = arena.sleep(s.seq, seen, deadline);  // BrokerLost: the mutex is not held
    barrier_lock(arena, s, me);
    return result == FutexWait::woken;
}

void barrier_break(Slot& s) {
    s.state.store(broken, relaxed);
    barrier_bump(s);
}

// Python's _exit(): the last party out of a released or reset round lets the next one fill.
void barrier_exit(Slot& s) {
    const std::uint32_t st = s.state.load(relaxed);
    if (s.count.load(relaxed) == 0 && (st == resetting || st == draining)) {
        s.state.store(filling, relaxed);
        barrier_bump(s);
    }
}

// Count updates are journaled in the marker, so that the broker can finish or undo them if this
// process dies in the middle (it holds the mutex then, and the broker takes it over).
void barrier_arrive(Slot& s, BarrierMarker* m) {
    const std::uint32_t before = s.count.load(relaxed);
    if (m != nullptr) {
        m->before.store(before, relaxed);
        m->phase.store(static_cast<std::uint32_t>(MarkerPhase::arriving), relaxed);
    }
    s.count.store(before + 1, relaxed);
    if (m != nullptr) m->phase.store(static_cast<std::uint32_t>(MarkerPhase::inside), relaxed);
}

void barrier_leave(Slot& s, BarrierMarker* m) {
    const std::uint32_t before = s.count.load(relaxed);
    if (m != nullptr) {
        m->before.store(before, relaxed);
        m->phase.store(static_cast<std::uint32_t>(MarkerPhase::leaving), relaxed);
    }
    s.count.store(before - 1, relaxed);
    barrier_exit(s);
    if (m != nullptr) m->phase.store(static_cast<std::uint32_t>(MarkerPhase::entering), relaxed);
}

BarrierMarker* claim_marker(ClientRecord* record, std::uint32_t index) {
    if (record == nullptr) return nullptr;
    for (auto& m : record->markers) {
        std::uint32_t expected = 0;
        if (m.slot.compare_exchange_strong(expected, index + 1, acquire_order, relaxed)) {
            m.phase.store(static_cast<std::uint32_t>(MarkerPhase::entering), relaxed);
            return &m;
        }
    }
    return nullptr;  // every marker in use: this wait is not repaired if the process dies
}

struct MarkerScope {
    BarrierMarker* marker;
    ~MarkerScope() {
        if (marker != nullptr) marker->slot.store(0, release_order);
    }
};

bool waits_while_entering(std::uint32_t st) { return st == draining || st == resetting || st == releasing; }

}  // namespace

// ---- Lock, RLock -----------------------------------------------------------------------------

Acquired lock_acquire(Arena& arena, Slot& s, Self me, bool recursive, bool block, const Deadline& deadline) {
    if (recursive && owner_of(s.word.load(relaxed)) == me.client && s.tid.load(relaxed) == me.tid) {
        s.depth.store(s.depth.load(relaxed) + 1, relaxed);
        return {true, false};
    }
    const Acquired got = word_lock(arena, s.word, me.client, block, deadline);
    if (got.acquired) {
        s.tid.store(me.tid, relaxed);
        if (recursive) s.depth.store(1, relaxed);
    }
    return got;
}

bool lock_owned(const Slot& s, Self me) {
    return owner_of(s.word.load(acquire_order)) == me.client && s.tid.load(relaxed) == me.tid;
}

void lock_release(Slot& s, Self me, bool recursive) {
    if (recursive) {
        if (!lock_owned(s, me)) throw ValueError(texts::kReleaseUnacquired);
        const std::uint32_t depth = s.depth.load(relaxed);
        if (depth > 1) {
            s.depth.store(depth - 1, relaxed);
            return;
        }
        s.depth.store(0, relaxed);
    }
    s.tid.store(0, relaxed);
    if (!word_unlock(s.word)) throw ValueError(texts::kReleasedTooManyTimes);
}

std::uint32_t lock_release_all(Slot& s, Self me, bool recursive) {
    if (!lock_owned(s, me)) throw ValueError(texts::kReleaseUnacquired);
    const std::uint32_t depth = recursive ? s.depth.load(relaxed) : 1;
    s.depth.store(0, relaxed);
    s.tid.store(0, relaxed);
    (void)word_unlock(s.word);
    return depth;
}

Acquired lock_restore(Arena& arena, Slot& s, Self me, std::uint32_t depth) {
    const Acquired got = word_lock(arena, s.word, me.client, true, Deadline::never());
    s.tid.store(me.tid, relaxed);
    s.depth.store(depth, relaxed);
    return got;
}

// ---- Semaphore -------------------------------------------------------------------------------

Acquired semaphore_acquire(Arena& arena, Slot& s, ClientRecord* record, std::uint32_t index, bool block,
                           const Deadline& deadline) {
    for (;;) {
        std::uint32_t v = s.word.load(relaxed);
        while (v > 0) {
            if (s.word.compare_exchange_weak(v, v - 1, acquire_order, relaxed)) {
                note_holding(record, index, +1);  // dying before this leaks the slot rather than doubling it
                return {true, take_credit(s)};
            }
        }
        if (!block) return {false, false};
        // The releaser increments the value, then reads `waiters`; both sequentially consistent,
        // so either it sees this sleeper or the futex sees the new value.
        s.waiters.fetch_add(1);
        struct Leave {
            Slot& s;
            ~Leave() { s.waiters.fetch_sub(1); }
        } leave{s};
        const FutexWait result = arena.sleep(s.word, 0, deadline);
        if (result == FutexWait::timed_out) return {false, false};
    }
}

void semaphore_release(Slot& s, ClientRecord* record, std::uint32_t index) {
    const std::uint32_t bound = s.bound.load(relaxed);
    const std::uint32_t limit = bound != 0 ? bound : kMaxValue;
    if (s.word.load(relaxed) >= limit) throw ValueError(texts::kReleasedTooManyTimes);
    note_holding(record, index, -1);  // dying after this leaks the slot rather than doubling it
    std::uint32_t v = s.word.load(relaxed);
    do {
        if (v >= limit) {
            note_holding(record, index, +1);
            throw ValueError(texts::kReleasedTooManyTimes);
        }
    } while (!s.word.compare_exchange_weak(v, v + 1));
    if (s.waiters.load() > 0) futex_wake(s.word, 1);
}

int semaphore_value(const Slot& s) { return static_cast<int>(s.word.load(relaxed)); }

// ---- Event -----------------------------------------------------------------------------------

void event_set(Slot& s) {
    if (s.word.exchange(1) == 0 && s.waiters.load() > 0) futex_wake(s.word);
}

void event_clear(Slot& s) { s.word.store(0, release_order); }

bool event_is_set(const Slot& s) { return s.word.load(acquire_order) != 0; }

bool event_wait(Arena& arena, Slot& s, const Deadline& deadline) {
    if (s.word.load(acquire_order) != 0) return true;
    if (deadline.passed()) return false;
    s.waiters.fetch_add(1);
    struct Leave {
        Slot& s;
        ~Leave() { s.waiters.fetch_sub(1); }
    } leave{s};
    for (;;) {
        if (s.word.load() != 0) return true;
        if (arena.sleep(s.word, 0, deadline) == FutexWait::timed_out) return s.word.load() != 0;
    }
}

// ---- Barrier ---------------------------------------------------------------------------------

int barrier_wait(Arena& arena, Slot& s, ClientRecord* record, std::uint32_t index, Self me, const Deadline& deadline,
                 const std::function<void()>* action) {
    MarkerScope scope{claim_marker(record, index)};
    BarrierMarker* m = scope.marker;
    barrier_lock(arena, s, me);
    // Python's _enter(): wait while the previous round drains, resets, or runs its action.
    while (waits_while_entering(s.state.load(relaxed))) (void)barrier_sleep(arena, s, me, Deadline::never());
    if (s.state.load(relaxed) == broken) {
        barrier_unlock(s);
        throw BrokenBarrierError(texts::kBarrierBroken);
    }
    const std::uint32_t arrival = s.count.load(relaxed);
    barrier_arrive(s, m);
    if (arrival + 1 == s.parties.load(relaxed)) {
        // The last arrival: run the action, then release everyone.
        if (action != nullptr && *action) {
            s.state.store(releasing, relaxed);
            barrier_unlock(s);
            try {
                (*action)();
            } catch (...) {
                barrier_lock(arena, s, me);
                barrier_break(s);
                barrier_leave(s, m);
                barrier_unlock(s);
                throw;
            }
            barrier_lock(arena, s, me);
            if (s.state.load(relaxed) != releasing) {  // broken meanwhile (a party died)
                barrier_leave(s, m);
                barrier_unlock(s);
                throw BrokenBarrierError(texts::kBarrierBroken);
            }
        }
        s.state.store(draining, relaxed);
        barrier_bump(s);
        barrier_leave(s, m);
        barrier_unlock(s);
        return static_cast<int>(arrival);
    }
    // Python's _wait(): until released or broken; a timeout breaks it, except while the action
    // runs (Python's waiter then blocks on the lock until the round is released).
    bool timed_out = false;
    for (;;) {
        const std::uint32_t st = s.state.load(relaxed);
        if (st != filling && st != releasing) break;
        if (timed_out && st == filling) {
            barrier_break(s);
            break;
        }
        timed_out = !barrier_sleep(arena, s, me, st == releasing ? Deadline::never() : deadline);
    }
    const std::uint32_t st = s.state.load(relaxed);
    barrier_leave(s, m);
    barrier_unlock(s);
    if (st != draining) throw BrokenBarrierError(texts::kBarrierBroken);
    return static_cast<int>(arrival);
}

void barrier_abort(Arena& arena, Slot& s, Self me) {
    barrier_lock(arena, s, me);
    while (s.state.load(relaxed) == releasing) (void)barrier_sleep(arena, s, me, Deadline::never());
    barrier_break(s);
    barrier_unlock(s);
}

void barrier_reset(Arena& arena, Slot& s, Self me) {
    barrier_lock(arena, s, me);
    while (s.state.load(relaxed) == releasing) (void)barrier_sleep(arena, s, me, Deadline::never());
    const std::uint32_t st = s.state.load(relaxed);
    if (s.count.load(relaxed) > 0) {
        // The parties inside leave with BrokenBarrierError; the last one out lets it fill again.
        if (st == filling || st == broken) s.state.store(resetting, relaxed);
    } else {
        s.state.store(filling, relaxed);
    }
    barrier_bump(s);
    barrier_unlock(s);
}

BarrierInfo barrier_info(Arena& arena, Slot& s, Self me) {
    barrier_lock(arena, s, me);
    const std::uint32_t st = s.state.load(relaxed);
    const BarrierInfo info{static_cast<int>(s.parties.load(relaxed)),
                           st == filling || st == releasing ? static_cast<int>(s.count.load(relaxed)) : 0,
                           st == broken};
    barrier_unlock(s);
    return info;
}

// ---- broker side -----------------------------------------------------------------------------

std::uint32_t describe_slot(const Slot& s, Kind kind, std::vector<std::pair<std::string, std::int64_t>>& out) {
    const std::uint32_t word = s.word.load(acquire_order);
    switch (kind) {
        case Kind::lock:
        case Kind::rlock:
            if (kind == Kind::rlock) out.emplace_back("depth", owner_of(word) != 0 ? s.depth.load(relaxed) : 0);
            out.emplace_back("contended", (word & kContended) != 0 ? 1 : 0);
            return owner_of(word);
        case Kind::semaphore:
        case Kind::bounded_semaphore:
            out.emplace_back("value", word);
            out.emplace_back("waiters", s.waiters.load(relaxed));
            return 0;
        case Kind::event:
            out.emplace_back("is_set", word != 0 ? 1 : 0);
            out.emplace_back("waiters", s.waiters.load(relaxed));
            return 0;
        case Kind::barrier: {
            const std::uint32_t st = s.state.load(relaxed);
            out.emplace_back("parties", s.parties.load(relaxed));
            out.emplace_back("n_waiting", st == filling || st == releasing ? s.count.load(relaxed) : 0);
            out.emplace_back("broken", st == broken ? 1 : 0);
            return 0;
        }
        default:
            return 0;
    }
}

void init_slot(Slot& s, std::uint64_t id, Kind kind, std::int64_t value, std::int64_t timeout_ns) {
    s.word.store(0, relaxed);
    s.waiters.store(0, relaxed);
    s.tid.store(0, relaxed);
    s.depth.store(0, relaxed);
    s.bound.store(0, relaxed);
    s.credits.store(0, relaxed);
    s.seq.store(0, relaxed);
    s.state.store(filling, relaxed);
    s.count.store(0, relaxed);
    s.parties.store(0, relaxed);
    s.timeout_ns.store(timeout_ns, relaxed);
    switch (kind) {
        case Kind::semaphore:
        case Kind::bounded_semaphore:
            s.word.store(static_cast<std::uint32_t>(value), relaxed);
            if (kind == Kind::bounded_semaphore) s.bound.store(static_cast<std::uint32_t>(value), relaxed);
            break;
        case Kind::barrier:
            s.parties.store(static_cast<std::uint32_t>(value), relaxed);
            break;
        default:
            break;
    }
    s.kind.store(static_cast<std::uint32_t>(kind), relaxed);
    s.id.store(id, release_order);  // last: a handle that sees its id sees the rest
}

namespace {

// The broker takes a barrier's mutex. Returns the client that held it if that one is dead (its
// half-done update must be finished), else 0. A live holder is inside a short critical section
// (no user code runs under this mutex); the wait is bounded so that its death is noticed too.
std::uint32_t broker_lock(Slot& s, std::uint32_t dead, const std::function<bool(std::uint32_t)>& is_dead) {
    std::uint32_t c = s.word.load(relaxed);
    for (;;) {
        const std::uint32_t owner = owner_of(c);
        const bool holder_dead = owner != 0 && owner != kDiedOwner && (owner == dead || is_dead(owner));
        if (is_free(c) || holder_dead) {
            if (s.word.compare_exchange_weak(c, kBrokerOwner | (c & kContended), acquire_order, relaxed)) {
                return holder_dead ? owner : 0;
            }
            continue;
        }
        if ((c & kContended) == 0 && !s.word.compare_exchange_weak(c, c | kContended, relaxed, relaxed)) continue;
        (void)futex_wait(s.word, c | kContended, Deadline::after(std::chrono::milliseconds(5)));
        c = s.word.load(relaxed);
    }
}

// Finishes or undoes the count update a dead thread was making inside barrier `s`, and breaks the
// barrier if the thread was waiting at it (or running its action). Called with the mutex held.
void repair_marker(Slot& s, BarrierMarker& m) {
    const auto phase = static_cast<MarkerPhase>(m.phase.load(relaxed));
    const std::uint32_t before = m.before.load(relaxed);
    const std::uint32_t count = s.count.load(relaxed);
    if (phase == MarkerPhase::leaving) {
        if (count == before) s.count.store(count - 1, relaxed);
        barrier_exit(s);
    } else if (phase == MarkerPhase::inside || (phase == MarkerPhase::arriving && count == before + 1)) {
        const std::uint32_t st = s.state.load(relaxed);
        if (st == filling || st == releasing) s.state.store(broken, relaxed);
        s.count.store(count - 1, relaxed);
        barrier_exit(s);
    }
    m.phase.store(static_cast<std::uint32_t>(MarkerPhase::entering), relaxed);
    m.slot.store(0, release_order);
}

BarrierMarker* marker_for(ClientRecord& record, std::uint32_t index) {
    for (auto& m : record.markers)
        if (m.slot.load(acquire_order) == index + 1) return &m;
    return nullptr;
}

void repair_barrier(Arena& arena, std::uint32_t index, std::uint32_t dead, BarrierMarker* dead_marker,
                    const std::function<bool(std::uint32_t)>& is_dead) {
    Slot& s = arena.slot(index);
    const std::uint32_t holder = broker_lock(s, dead, is_dead);
    if (holder != 0 && holder != dead) {
        // Another dead client holds it: its update in progress comes first.
        if (BarrierMarker* m = marker_for(arena.client(holder), index)) repair_marker(s, *m);
    }
    if (dead_marker != nullptr) repair_marker(s, *dead_marker);
    barrier_bump(s);
    (void)word_unlock(s.word);
}

}  // namespace

std::vector<std::uint64_t> repair_client(Arena& arena, std::uint32_t dead,
                                         const std::function<bool(std::uint32_t)>& is_dead) {
    std::vector<std::uint64_t> freed_locks;
    ClientRecord& record = arena.client(dead);
    // Barriers it was inside of.
    for (auto& m : record.markers) {
        const std::uint32_t slot = m.slot.load(acquire_order);
        if (slot != 0) repair_barrier(arena, slot - 1, dead, &m, is_dead);
    }
    // Lock words it holds.
    const std::uint32_t slots = arena.slot_count();
    for (std::uint32_t i = 0; i < slots; ++i) {
        Slot& s = arena.slot(i);
        const auto kind = static_cast<Kind>(s.kind.load(acquire_order));
        if (owner_of(s.word.load(relaxed)) != dead) continue;
        if (kind == Kind::lock || kind == Kind::rlock) {
            std::uint32_t c = s.word.load(relaxed);
            while (owner_of(c) == dead) {
                if (s.word.compare_exchange_weak(c, kDiedOwner | (c & kContended), release_order, relaxed)) {
                    futex_wake(s.word, 1);
                    freed_locks.push_back(s.id.load(relaxed));
                    break;
                }
            }
        } else if (kind == Kind::barrier) {
            repair_barrier(arena, i, dead, nullptr, is_dead);  // it died in abort(), reset() or a query
        }
    }
    // Semaphore slots it held.
    for (auto& entry : record.holdings) {
        const std::uint64_t e = entry.exchange(0, acquire_order);
        if (e == 0) continue;
        const std::uint32_t index = static_cast<std::uint32_t>(e >> 32) - 1;
        const std::uint32_t held = static_cast<std::uint32_t>(e & 0xffffffff);
        if (index >= slots) continue;
        Slot& s = arena.slot(index);
        const auto kind = static_cast<Kind>(s.kind.load(acquire_order));
        if (kind != Kind::semaphore && kind != Kind::bounded_semaphore) continue;
        const std::uint32_t bound = s.bound.load(relaxed);
        const std::uint32_t limit = bound != 0 ? bound : kMaxValue;
        std::uint32_t v = s.word.load(relaxed);
        for (;;) {
            const std::uint32_t returned = std::min(held, limit > v ? limit - v : 0);
            if (returned == 0) break;
            // The credits first: whoever takes a returned slot must find its note.
            s.credits.fetch_add(returned, relaxed);
            if (s.word.compare_exchange_weak(v, v + returned)) {
                if (s.waiters.load() > 0) futex_wake(s.word, static_cast<int>(returned));
                break;
            }
            s.credits.fetch_sub(returned, relaxed);
        }
    }
    for (auto& m : record.markers) {
        m.slot.store(0, relaxed);
        m.phase.store(0, relaxed);
    }
    return freed_locks;
}

}  // namespace zmp::detail::broker
