#include "broker/arena.hpp"

#include <linux/futex.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>

#include "broker/protocol.hpp"
#include "shm/segment.hpp"
#include "zmp/errors.hpp"

namespace zmp::detail::broker {
namespace {

constexpr std::size_t kSegmentBytes = std::size_t{kSlotsPerSegment} * sizeof(Slot);
constexpr std::size_t kClientBytes = std::size_t{kMaxClientRecords} * sizeof(ClientRecord);

std::string segment_name(const std::string& prefix, std::uint32_t k) { return prefix + "-s" + std::to_string(k); }
std::string clients_name(const std::string& prefix) { return prefix + "-c"; }

// Prefixes arrive inside handles from other processes: only "/zmp-" and [0-9a-z-] are accepted.
bool valid_prefix(const std::string& p) {
    if (p.size() < 6 || p.size() > 48 || p.rfind("/zmp-", 0) != 0) return false;
    for (std::size_t i = 1; i < p.size(); ++i) {
        const char c = p[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '-')) return false;
    }
    return true;
}

// owner: a new segment, recorded with the runtime before it exists (removed even if this process
// is killed). client: the broker's segment; one that is not there is a handle naming nothing.
void* map_segment(const std::string& name, std::size_t size, Arena::Role role) {
    if (role == Arena::Role::owner) return create_segment(name, size, RecordSegment::before_create).base;
    MappedSegment mapped;
    try {
        mapped = attach_segment(name);
    } catch (const FileNotFoundError&) {
        throw ProtocolError("no shared object state named " + name);
    }
    if (mapped.size != size) {
        unmap_segment(mapped);
        throw ProtocolError("shared object state " + name + " has the wrong size");
    }
    return mapped.base;
}

void drop_segment(const std::string& name, void* base, std::size_t size, Arena::Role role) noexcept {
    MappedSegment mapped{static_cast<std::byte*>(base), size};
    unmap_segment(mapped);
    if (role != Arena::Role::owner) return;
    try {
        unlink_segment(name);
    } catch (const ProcessError&) {
        // Already gone (removed by hand, or by a root cleaning up after a killed one).
    }
}

}  // namespace

std::string Arena::make_prefix() {
    std::uint32_t nonce = 0;
    while (::getrandom(&nonce, sizeof nonce, 0) != sizeof nonce) {
        if (errno != EINTR) throw_os_error("getrandom", errno);
    }
    char buffer[48];
    std::snprintf(buffer, sizeof buffer, "/zmp-%d-%08x", static_cast<int>(::getpid()), nonce);
    return buffer;
}

Arena::Arena(std::string prefix, Role role)
    : prefix_(std::move(prefix)), role_(role), segments_(new std::atomic<Slot*>[kMaxSegments]) {
    if (!valid_prefix(prefix_)) throw ProtocolError("malformed arena name '" + prefix_ + "'");
    for (std::uint32_t k = 0; k < kMaxSegments; ++k) segments_[k].store(nullptr, std::memory_order_relaxed);
    if (role_ == Role::owner) {
        auto* records = static_cast<ClientRecord*>(map_segment(clients_name(prefix_), kClientBytes, role_));
        auto* header = reinterpret_cast<ArenaHeader*>(records);
        pthread_mutexattr_t attr;
        ::pthread_mutexattr_init(&attr);
        ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
        ::pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
        ::pthread_mutex_init(&header->life, &attr);
        ::pthread_mutexattr_destroy(&attr);
        clients_.store(records, std::memory_order_release);
    }
}

Arena::~Arena() {
    // Clients never destroy their arenas (their links live for ever); the broker does, at exit.
    for (std::uint32_t k = 0; k < kMaxSegments; ++k) {
        if (Slot* segment = segments_[k].load()) drop_segment(segment_name(prefix_, k), segment, kSegmentBytes, role_);
    }
    if (ClientRecord* records = clients_.load()) drop_segment(clients_name(prefix_), records, kClientBytes, role_);
}

Slot& Arena::slot(std::uint32_t index) {
    const std::uint32_t k = index / kSlotsPerSegment;
    if (k >= kMaxSegments) throw ProtocolError("object slot " + std::to_string(index) + " is out of range");
    Slot* segment = segments_[k].load(std::memory_order_acquire);
    if (segment == nullptr) {
        if (role_ == Role::owner) throw ProtocolError("object slot " + std::to_string(index) + " does not exist");
        // Lock-free, so that fork() can never leave a lock held: two threads may both map it;
        // the loser unmaps its copy.
        auto* mapped = static_cast<Slot*>(map_segment(segment_name(prefix_, k), kSegmentBytes, role_));
        if (segments_[k].compare_exchange_strong(segment, mapped, std::memory_order_acq_rel)) {
            segment = mapped;
        } else {
            MappedSegment loser{reinterpret_cast<std::byte*>(mapped), kSegmentBytes};
            unmap_segment(loser);
        }
    }
    return segment[index % kSlotsPerSegment];
}

ClientRecord* Arena::client_records() {
    ClientRecord* records = clients_.load(std::memory_order_acquire);
    if (records == nullptr) {
        auto* mapped = static_cast<ClientRecord*>(map_segment(clients_name(prefix_), kClientBytes, role_));
        if (clients_.compare_exchange_strong(records, mapped, std::memory_order_acq_rel)) {
            records = mapped;
        } else {
            MappedSegment loser{reinterpret_cast<std::byte*>(mapped), kClientBytes};
            unmap_segment(loser);
        }
    }
    return records;
}

ClientRecord& Arena::client(std::uint32_t index) {
    if (index == 0 || index >= kMaxClientRecords) throw ProtocolError("client index out of range");
    return client_records()[index];
}

// ---- the broker's life ---------------------------------------------------------------------------
//
// Why a robust mutex rather than a watcher thread per client process (a thread blocked on the
// broker's pidfd that wakes its process's sleepers): the kernel itself marks the word when the
// broker's thread dies, so no client process needs a thread of its own (nothing to start lazily,
// nothing to redo after fork), and the word is in the arena every sleeper has mapped already.
// A sleeper waits on two words at once (futex_waitv): the word it sleeps on, and the mutex's word.
// The kernel wakes one sleeper of the mutex's word when the broker dies; that one wakes the rest.

std::atomic<std::uint32_t>& Arena::life_word() {
    static_assert(sizeof(int) == sizeof(std::atomic<std::uint32_t>));
    auto& header = *reinterpret_cast<ArenaHeader*>(&client_records()[0]);
    // glibc's mutex word, the one the kernel's robust-list handling marks: (tid | flags).
    return *reinterpret_cast<std::atomic<std::uint32_t>*>(&header.life.__data.__lock);
}

void Arena::hold_life() {
    auto& header = *reinterpret_cast<ArenaHeader*>(&client_records()[0]);
    const int rc = ::pthread_mutex_lock(&header.life);
    if (rc == EOWNERDEAD) ::pthread_mutex_consistent(&header.life);
}

void Arena::release_life() {
    auto& header = *reinterpret_cast<ArenaHeader*>(&client_records()[0]);
    ::pthread_mutex_unlock(&header.life);
}

namespace {

bool broker_gone(std::uint32_t life) { return (life & FUTEX_OWNER_DIED) != 0 || (life & FUTEX_TID_MASK) == 0; }

[[noreturn]] void raise_broker_gone(std::atomic<std::uint32_t>& life) {
    futex_wake(life);  // the other sleepers learn it too
    throw BrokerLost("the broker is gone");
}

std::atomic<bool> have_futex_waitv{true};  // false on kernels before 5.16: sleeps then do not see the broker's death

}  // namespace

FutexWait Arena::sleep(std::atomic<std::uint32_t>& word, std::uint32_t expected, const Deadline& deadline) {
    std::atomic<std::uint32_t>& life = life_word();
    std::uint32_t seen = life.load(std::memory_order_acquire);
    for (;;) {
        if (broker_gone(seen)) raise_broker_gone(life);
        if ((seen & FUTEX_WAITERS) != 0) break;
        // Asks the kernel to wake a sleeper when the broker dies (it only does when this bit is set).
        if (life.compare_exchange_weak(seen, seen | FUTEX_WAITERS, std::memory_order_acq_rel)) {
            seen |= FUTEX_WAITERS;
            break;
        }
    }
    if (have_futex_waitv.load(std::memory_order_relaxed)) {
        const std::optional<FutexWait> result = futex_wait_either(word, expected, life, seen, deadline);
        if (broker_gone(life.load(std::memory_order_acquire))) raise_broker_gone(life);
        if (result) return *result;
        have_futex_waitv.store(false, std::memory_order_relaxed);
    }
    return futex_wait(word, expected, deadline);
}

std::uint32_t Arena::allocate_slot() {
    std::lock_guard lock(mutex_);
    if (!free_.empty()) {
        const std::uint32_t index = free_.back();
        free_.pop_back();
        return index;  // zeroed when released
    }
    const std::uint32_t index = next_slot_;
    const std::uint32_t k = index / kSlotsPerSegment;
    if (k >= kMaxSegments) throw OSError("the broker's arena is full", ENOSPC);
    if (segments_[k].load() == nullptr) {
        segments_[k].store(static_cast<Slot*>(map_segment(segment_name(prefix_, k), kSegmentBytes, role_)),
                           std::memory_order_release);
    }
    ++next_slot_;
    return index;  // a fresh segment is zero-filled
}

void Arena::release_slot(std::uint32_t index) {
    std::lock_guard lock(mutex_);
    Slot& s = slot(index);
    s.id.store(0, std::memory_order_release);
    for (auto* field :
         {&s.kind, &s.word, &s.waiters, &s.tid, &s.depth, &s.bound, &s.credits, &s.seq, &s.state, &s.count, &s.parties})
        field->store(0, std::memory_order_relaxed);
    s.timeout_ns.store(0, std::memory_order_relaxed);
    free_.push_back(index);
}

}  // namespace zmp::detail::broker
