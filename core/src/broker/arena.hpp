#pragma once
// The same-host arena: shared-memory segments made by a broker whose clients are all on its host.
// The objects that take the fast path keep their state in a 64-byte slot of the arena and are
// operated on directly by every process that holds a handle (atomics and futexes: no message, no
// broker hop). The broker stays the authority: it creates and initialises slots, repairs them when
// a client process dies (fast_path.hpp), and takes them back when their object is freed.
//
// Segments (made with shm/segment.hpp, so that they are recorded with the runtime and a killed
// root's are removed too): "<prefix>-s<k>" hold slots (kSlotsPerSegment each, made as objects are
// created); "<prefix>-c" holds one ClientRecord per client index, where each process notes what
// the broker must undo if it dies (semaphore slots it holds, a barrier it is inside of).
//
// A slot holds either an object's state (Slot) or a queue delivery's cursor (CursorSlot): two
// layouts over the same 64 bytes, which share their first two words (the owner's id and kind).

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "base/futex.hpp"

namespace zmp::detail::broker {

inline constexpr std::uint32_t kSlotsPerSegment = 4096;  // 256 KiB
inline constexpr std::uint32_t kMaxSegments = 4096;      // 16 M slots
inline constexpr std::uint32_t kMaxClientRecords = 16384;
inline constexpr std::size_t kMarkers = 16;      // threads of one process inside barriers at once
inline constexpr std::size_t kHoldings = 32;     // semaphores one process holds slots of at once
inline constexpr std::size_t kForkEntries = 32;  // forks of one process the broker has not bound yet

/// One object's shared state; each kind uses its own fields (see fast_path.cpp).
struct alignas(64) Slot {
    std::atomic<std::uint64_t> id;  // the broker's object id: a handle checks it; 0 while free
    std::atomic<std::uint32_t> kind;
    std::atomic<std::uint32_t> word;       // lock word; semaphore value; event flag; barrier mutex
    std::atomic<std::uint32_t> waiters;    // semaphore and event sleepers
    std::atomic<std::uint32_t> tid;        // Lock/RLock: the owning thread
    std::atomic<std::uint32_t> depth;      // RLock recursion
    std::atomic<std::uint32_t> bound;      // BoundedSemaphore: the initial value (0: unbounded)
    std::atomic<std::uint32_t> credits;    // Semaphore: slots returned by dead holders, not taken yet
    std::atomic<std::uint32_t> seq;        // Barrier: bumped at every state change (the futex)
    std::atomic<std::uint32_t> state;      // Barrier: filling, releasing, draining, resetting, broken
    std::atomic<std::uint32_t> count;      // Barrier: parties inside
    std::atomic<std::uint32_t> parties;    // Barrier
    std::atomic<std::int64_t> timeout_ns;  // Barrier: default timeout, -1 none
};
static_assert(sizeof(Slot) == 64);

/// A queue's delivery to one client connection: the broker sends a connection up to `limit` items
/// and keeps them until taken. One word, limit << 32 | taken: the consumer takes item `taken` by
/// raising it while it is below `limit`; the broker takes unclaimed items back (for another
/// consumer, or after the consumer died) by lowering `limit` to `taken`. Both with
/// compare-and-swap, so each item is taken exactly once.
struct alignas(64) CursorSlot {
    std::atomic<std::uint64_t> id;    // the queue's object id
    std::atomic<std::uint32_t> kind;  // kCursorKind
    std::uint32_t reserved0;
    std::atomic<std::uint64_t> word;
    std::uint64_t reserved[5];
};
static_assert(sizeof(CursorSlot) == 64);
inline constexpr std::uint32_t kCursorKind = 0xC0;  // CursorSlot::kind

inline constexpr std::uint32_t cursor_taken(std::uint64_t word) { return static_cast<std::uint32_t>(word); }
inline constexpr std::uint32_t cursor_limit(std::uint64_t word) { return static_cast<std::uint32_t>(word >> 32); }
inline constexpr std::uint64_t cursor_word(std::uint32_t taken, std::uint32_t limit) {
    return (std::uint64_t{limit} << 32) | taken;
}

/// A thread of a client process inside a barrier: what its death leaves to undo. Written under
/// the barrier's mutex, so that the broker (which takes it too) reads a consistent record; if the
/// process died holding that mutex, `before` says whether its last count update happened.
struct BarrierMarker {
    std::atomic<std::uint32_t> slot;    // slot index + 1; 0: free
    std::atomic<std::uint32_t> phase;   // MarkerPhase
    std::atomic<std::uint32_t> before;  // the barrier's count before the update in progress
    std::atomic<std::uint32_t> reserved;
};

enum class MarkerPhase : std::uint32_t { entering = 0, arriving, inside, leaving };

/// A fork in progress (handle.hpp): the parent reserves an entry before fork() and tells the broker
/// (FORK_HOLD with the entry and its token); the child writes its pid here at once. The broker
/// reads the pid, gives the child the parent's references, and frees the entry.
struct ForkEntry {
    std::atomic<std::uint64_t> token;  // 0: free
    std::atomic<std::uint32_t> child;  // the child's pid, 0 until it wrote it
    std::uint32_t reserved;
};

struct ClientRecord {
    BarrierMarker markers[kMarkers];
    std::atomic<std::uint64_t> holdings[kHoldings];  // (slot index + 1) << 32 | slots held; 0: free
    ForkEntry forks[kForkEntries];
};
static_assert(sizeof(ClientRecord) == 1024);

/// Record 0 of the client segment (no client has index 0): the broker's life. The broker's thread
/// holds `life`, a robust process-shared mutex, while it serves; when that thread ends without
/// releasing it — its process was killed — the kernel marks the mutex's word "owner died" and
/// wakes a sleeper on it. A process that sleeps on an arena word sleeps on that word too
/// (Arena::sleep), so the broker's death wakes it at once.
struct ArenaHeader {
    pthread_mutex_t life;
};
static_assert(sizeof(ArenaHeader) <= sizeof(ClientRecord));

class Arena {
public:
    enum class Role { owner, client };

    /// owner (the broker): creates the segments, removes them when destroyed.
    /// client: maps segments on first use. ProtocolError for a malformed prefix.
    Arena(std::string prefix, Role role);
    ~Arena();
    Arena(const Arena&) = delete;
    Arena& operator=(const Arena&) = delete;

    /// A fresh prefix for a broker of this process.
    static std::string make_prefix();

    const std::string& prefix() const { return prefix_; }
    /// The slot at `index`, mapping its segment if needed. ProtocolError if there is no such slot.
    Slot& slot(std::uint32_t index);
    /// The same slot, as a queue delivery's cursor.
    CursorSlot& cursor(std::uint32_t index) { return *std::launder(reinterpret_cast<CursorSlot*>(&slot(index))); }
    ClientRecord& client(std::uint32_t index);

    /// owner: a zeroed slot, reused from those released or new (making a segment when needed).
    std::uint32_t allocate_slot();
    /// owner: zeroes the slot (its id first, so that a stale handle can no longer match it) and
    /// keeps it for the next allocate_slot().
    void release_slot(std::uint32_t index);
    /// owner: how many slots were ever made (released ones included): repairs scan these.
    std::uint32_t slot_count() const { return next_slot_; }
    /// owner: slots in use.
    std::uint32_t slots_in_use() const { return next_slot_ - static_cast<std::uint32_t>(free_.size()); }

    /// owner: the thread that serves holds the broker's life from here on (its death then wakes
    /// every sleeper), until release_life() on the same thread.
    void hold_life();
    void release_life();

    /// Sleeps while `word` (in this arena) holds `expected`, until woken or `deadline`, as
    /// futex_wait does; raises BrokerLost if the broker is gone, or goes while this sleeps.
    FutexWait sleep(std::atomic<std::uint32_t>& word, std::uint32_t expected, const Deadline& deadline);

private:
    ClientRecord* client_records();
    std::atomic<std::uint32_t>& life_word();

    std::string prefix_;
    Role role_;
    std::unique_ptr<std::atomic<Slot*>[]> segments_;
    std::atomic<ClientRecord*> clients_{nullptr};
    std::mutex mutex_;  // the owner's allocation
    std::uint32_t next_slot_ = 0;
    std::vector<std::uint32_t> free_;
};

}  // namespace zmp::detail::broker
