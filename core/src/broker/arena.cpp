#include "broker/arena.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "runtime/runtime.hpp"
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
        clients_.store(static_cast<ClientRecord*>(map(clients_name(prefix_), kClientBytes)), std::memory_order_release);
    }
}

Arena::~Arena() {
    // Clients never destroy their arenas (their links live for ever); the broker does, at exit.
    for (std::uint32_t k = 0; k < kMaxSegments; ++k) {
        Slot* segment = segments_[k].load();
        if (segment == nullptr) continue;
        ::munmap(segment, kSegmentBytes);
        if (role_ == Role::owner) {
            ::shm_unlink(segment_name(prefix_, k).c_str());
            Runtime::instance().unregister_segment(segment_name(prefix_, k));
        }
    }
    if (ClientRecord* records = clients_.load()) {
        ::munmap(records, kClientBytes);
        if (role_ == Role::owner) {
            ::shm_unlink(clients_name(prefix_).c_str());
            Runtime::instance().unregister_segment(clients_name(prefix_));
        }
    }
}

void* Arena::map(const std::string& name, std::size_t size) {
    const bool create = role_ == Role::owner;
    if (create) Runtime::instance().register_segment(name);  // removed even if this process is killed
    const int fd = ::shm_open(name.c_str(), create ? O_RDWR | O_CREAT | O_EXCL : O_RDWR, 0600);
    if (fd < 0) {
        if (!create && errno == ENOENT) throw ProtocolError("no shared object state named " + name);
        throw_os_error("shm_open " + name, errno);
    }
    if (create && ::ftruncate(fd, static_cast<off_t>(size)) != 0) {
        const int error = errno;
        ::close(fd);
        throw_os_error("ftruncate " + name, error);
    }
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    const int error = errno;
    ::close(fd);
    if (p == MAP_FAILED) throw_os_error("mmap " + name, error);
    return p;
}

Slot& Arena::slot(std::uint32_t index) {
    const std::uint32_t k = index / kSlotsPerSegment;
    if (k >= kMaxSegments) throw ProtocolError("object slot " + std::to_string(index) + " is out of range");
    Slot* segment = segments_[k].load(std::memory_order_acquire);
    if (segment == nullptr) {
        if (role_ == Role::owner) throw ProtocolError("object slot " + std::to_string(index) + " does not exist");
        // Lock-free, so that fork() can never leave a lock held: two threads may both map it;
        // the loser unmaps its copy.
        auto* mapped = static_cast<Slot*>(map(segment_name(prefix_, k), kSegmentBytes));
        if (segments_[k].compare_exchange_strong(segment, mapped, std::memory_order_acq_rel)) {
            segment = mapped;
        } else {
            ::munmap(mapped, kSegmentBytes);
        }
    }
    return segment[index % kSlotsPerSegment];
}

ClientRecord& Arena::client(std::uint32_t index) {
    if (index == 0 || index >= kMaxClientRecords) throw ProtocolError("client index out of range");
    ClientRecord* records = clients_.load(std::memory_order_acquire);
    if (records == nullptr) {
        auto* mapped = static_cast<ClientRecord*>(map(clients_name(prefix_), kClientBytes));
        if (clients_.compare_exchange_strong(records, mapped, std::memory_order_acq_rel)) {
            records = mapped;
        } else {
            ::munmap(mapped, kClientBytes);
        }
    }
    return records[index];
}

std::uint32_t Arena::allocate_slot() {
    std::lock_guard lock(mutex_);
    const std::uint32_t index = next_slot_;
    const std::uint32_t k = index / kSlotsPerSegment;
    if (k >= kMaxSegments) throw OSError("the broker's arena is full", ENOSPC);
    if (segments_[k].load() == nullptr) {
        segments_[k].store(static_cast<Slot*>(map(segment_name(prefix_, k), kSegmentBytes)), std::memory_order_release);
    }
    ++next_slot_;
    return index;  // a fresh segment is zero-filled
}

}  // namespace zmp::detail::broker
