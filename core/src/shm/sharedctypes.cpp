// Value/Array segments ("library segments"), their per-process mapping cache, and ValueLock.
//
// A library segment is named "/<run directory's name>-<16 random hex digits>", so that every
// segment of a run shares its run's prefix. Layout:
//
//     [0, 64)     BlockHeader: magic, element type, count, where the data and the lock are
//     [64, 128)   LockCell, when the segment has its own lock
//     data        aligned for the element type
//
// Each process maps a segment once: handles decoded from messages find the mapping through the
// cache (name -> weak_ptr), copies share it through shared_ptr. The process that created a
// segment removes its name when its last mapping of it goes.

#include "zmp/sharedctypes.hpp"

#include <pthread.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <unordered_map>

#include "base/fork.hpp"
#include "runtime/identity.hpp"
#include "runtime/run_directory.hpp"
#include "zmp/detail/deadline.hpp"
#include "shm/segment.hpp"
#include "zmp/detail/error_texts.hpp"

namespace zmp::detail {

namespace {

constexpr std::uint64_t kMagic = 0x316d68732e706d7aULL;  // "zmp.shm1"
constexpr std::size_t kHeaderSize = 64;
constexpr std::size_t kLockOffset = 64;
constexpr std::size_t kLockSize = 64;
static_assert(sizeof(LockCell) <= kLockSize);
static_assert(sizeof(pthread_mutex_t) <= sizeof(LockCell::mutex) && alignof(pthread_mutex_t) <= alignof(LockCell),
              "LockCell's room for the mutex (zmp/detail/lock_cell.hpp) does not fit this platform's pthread_mutex_t");

struct BlockHeader {
    std::uint64_t magic;
    std::uint32_t kind, size, align, reserved;
    std::uint64_t count;
    std::uint64_t data_offset;
    std::uint64_t lock_offset;  // 0: no lock cell
    ElementType type() const { return {kind, size, align}; }
};
static_assert(sizeof(BlockHeader) <= kHeaderSize);

std::size_t align_up(std::size_t n, std::size_t align) { return (n + align - 1) / align * align; }

}  // namespace

class SharedBlock {
public:
    SharedBlock(std::string name, MappedSegment mapping, pid_t creator)
        : name_(std::move(name)), mapping_(mapping), creator_(creator) {}
    ~SharedBlock();
    SharedBlock(const SharedBlock&) = delete;
    SharedBlock& operator=(const SharedBlock&) = delete;

    const std::string& name() const { return name_; }
    std::byte* base() const { return mapping_.base; }
    const BlockHeader& header() const { return *reinterpret_cast<const BlockHeader*>(mapping_.base); }
    LockCell* lock_cell() const {
        const std::uint64_t offset = header().lock_offset;
        return offset == 0 ? nullptr : reinterpret_cast<LockCell*>(mapping_.base + offset);
    }

private:
    std::string name_;
    MappedSegment mapping_;
    pid_t creator_;  // 0 when this process attached it
};

namespace {

// Every library segment this process has mapped, by name. Leaked on purpose: handles in statics
// may outlive any static cache. Its mutex is never held while calling into the runtime.
struct BlockCache {
    std::mutex mutex;
    std::unordered_map<std::string, std::weak_ptr<SharedBlock>> blocks;

    static BlockCache& instance() {
        static BlockCache* cache = [] {
            auto* made = new BlockCache;
            on_fork(ForkLayer::service, {[] { instance().mutex.lock(); }, [] { instance().mutex.unlock(); },
                                         [] { instance().mutex.unlock(); }});
            return made;
        }();
        return *cache;
    }
};

// The mutex in a cell's opaque room: made there by init_lock, used in place by every process.
pthread_mutex_t* mutex_of(LockCell& cell) { return std::launder(reinterpret_cast<pthread_mutex_t*>(cell.mutex)); }

std::atomic_ref<std::int32_t> owner_pid_of(LockCell& cell) { return std::atomic_ref<std::int32_t>(cell.owner_pid); }

void init_lock(LockCell& cell) {
    pthread_mutexattr_t attr;
    ::pthread_mutexattr_init(&attr);
    ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    ::pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    const int rc = ::pthread_mutex_init(::new (cell.mutex) pthread_mutex_t, &attr);
    ::pthread_mutexattr_destroy(&attr);
    if (rc != 0) throw_os_error("cannot make a process-shared lock", rc);
}

std::shared_ptr<SharedBlock> create_block(ElementType type, std::size_t count, bool with_lock) {
    const std::size_t data_offset = align_up(with_lock ? kLockOffset + kLockSize : kHeaderSize, type.align);
    if (count > (std::numeric_limits<std::size_t>::max() - data_offset) / type.size) {
        throw ValueError("too many elements for shared memory: " + std::to_string(count));
    }
    const std::string& dir = run_directory().path();
    std::string name = dir.substr(dir.rfind('/'));  // "/zmp-<pid>-XXXXXX"
    name += '-';
    name += random_hex(8);
    MappedSegment mapping = create_segment(name, data_offset + count * type.size, RecordSegment::before_create);
    auto* header = ::new (mapping.base)
        BlockHeader{kMagic, type.kind, type.size, type.align, 0, count, data_offset, with_lock ? kLockOffset : 0};
    auto block = std::make_shared<SharedBlock>(name, mapping, this_process().pid());  // from here on it cleans up
    if (header->lock_offset != 0) init_lock(*::new (mapping.base + kLockOffset) LockCell{});
    BlockCache& cache = BlockCache::instance();
    std::lock_guard guard(cache.mutex);
    cache.blocks[name] = block;
    return block;
}

// A block made by another process must describe itself consistently before anything trusts it.
bool well_formed(const BlockHeader& h, std::size_t size) {
    if (h.magic != kMagic || h.size == 0 || h.align == 0 || (h.align & (h.align - 1)) != 0) return false;
    if (h.data_offset < kHeaderSize || h.data_offset > size || h.data_offset % h.align != 0) return false;
    if (h.count > (size - h.data_offset) / h.size) return false;
    if (h.lock_offset == 0) return true;
    return h.lock_offset == kLockOffset && h.data_offset >= kLockOffset + kLockSize;
}

std::shared_ptr<SharedBlock> attach_block(const std::string& name) {
    if (!name.starts_with("/zmp-") || name.find('/', 1) != std::string::npos || name.size() > 255) {
        throw ProtocolError("received a shared segment name that zmp did not make: '" + name + "'");
    }
    BlockCache& cache = BlockCache::instance();
    std::lock_guard guard(cache.mutex);
    if (auto it = cache.blocks.find(name); it != cache.blocks.end()) {
        if (auto block = it->second.lock()) return block;
    }
    MappedSegment mapping = attach_segment(name);
    if (mapping.size < kHeaderSize || !well_formed(*reinterpret_cast<const BlockHeader*>(mapping.base), mapping.size)) {
        unmap_segment(mapping);
        throw ProtocolError("shared memory '" + name.substr(1) + "' does not hold a zmp Value or Array");
    }
    auto block = std::make_shared<SharedBlock>(name, mapping, 0);
    cache.blocks[name] = block;
    return block;
}

// The pid of the process that made current_thread_token (tokens are renewed after fork).
constinit thread_local pid_t token_pid = 0;

// Records a successful pthread_mutex_*lock (rc 0 or EOWNERDEAD) as this thread's first hold.
void took(LockCell& cell, int rc, std::uint64_t me) {
    std::uint32_t died = 0;
    if (rc == EOWNERDEAD) {
        ::pthread_mutex_consistent(mutex_of(cell));
        died = 1;
    } else if (rc != 0) {
        throw_os_error("cannot acquire the lock", rc);
    }
    owner_of(cell).store(me, std::memory_order_relaxed);
    owner_pid_of(cell).store(token_pid, std::memory_order_relaxed);
    cell.depth = 1;
    cell.owner_died = died;
}

}  // namespace

constinit thread_local std::uint64_t current_thread_token = 0;

std::uint64_t new_thread_token() {
    static const bool forget_on_fork = [] {
        on_fork(ForkLayer::service, {nullptr, nullptr, [] { current_thread_token = 0; }});
        return true;
    }();
    (void)forget_on_fork;
    std::uint64_t token = 0;
    while (token == 0) {
        if (::getrandom(&token, sizeof token, 0) != static_cast<ssize_t>(sizeof token) && errno != EINTR) {
            throw_os_error("getrandom", errno);
        }
    }
    token_pid = ::getpid();
    return current_thread_token = token;
}

SharedBlock::~SharedBlock() {
    {
        BlockCache& cache = BlockCache::instance();
        std::lock_guard guard(cache.mutex);
        auto it = cache.blocks.find(name_);
        if (it != cache.blocks.end() && it->second.expired()) cache.blocks.erase(it);
    }
    const pid_t me = this_process().pid();
    // glibc links the robust mutexes a thread holds into a list it walks later: a held one must
    // stay mapped.
    LockCell* cell = lock_cell();
    if (cell == nullptr || owner_pid_of(*cell).load(std::memory_order_relaxed) != me) unmap_segment(mapping_);
    if (creator_ == me) {
        ::shm_unlink(name_.c_str());
        try {
            run_directory().unregister_segment(name_);
        } catch (...) {
        }
    }
}

SharedArrayCore::SharedArrayCore(ElementType type, std::size_t count, const LockOption& lock) {
    if (lock.existing() && lock.existing()->cell() == nullptr) throw ValueError("the lock given is an empty handle");
    block_ = create_block(type, count, lock.make());
    data_ = block_->base() + block_->header().data_offset;
    count_ = count;
    if (lock.make())
        lock_ = ValueLock(block_, block_->lock_cell());
    else if (lock.existing())
        lock_ = *lock.existing();
}

SharedArrayCore SharedArrayCore::from_wire(const SharedArrayWire& wire, std::string_view what, ElementType type,
                                           bool with_lock) {
    const std::string expected(what);
    if (wire.what != expected)
        throw ProtocolError("received a " + wire.what + " where a " + expected + " was expected");
    if (wire.type != type) throw ProtocolError("received a " + expected + " of another element type");
    SharedArrayCore core;
    core.block_ = attach_block(wire.segment);
    const BlockHeader& header = core.block_->header();
    if (header.type() != type || header.count != wire.count) {
        throw ProtocolError("shared memory '" + wire.segment.substr(1) + "' does not hold the " + expected +
                            " received");
    }
    core.data_ = core.block_->base() + header.data_offset;
    core.count_ = header.count;
    if (with_lock && wire.lock) {
        auto lock_block = wire.lock->segment == wire.segment ? core.block_ : attach_block(wire.lock->segment);
        if (lock_block->lock_cell() == nullptr || lock_block->header().lock_offset != wire.lock->offset) {
            throw ProtocolError("received a " + expected + " whose lock is not where it says");
        }
        core.lock_ = ValueLock(lock_block, lock_block->lock_cell());
    }
    return core;
}

SharedArrayWire SharedArrayCore::to_wire(std::string_view what) const {
    if (data_ == nullptr) throw_empty();
    SharedArrayWire wire{std::string(what), block_->name(), count_, block_->header().type(), std::nullopt};
    if (has_lock()) {
        const auto& lock_block = lock_.block();
        wire.lock =
            LockAddress{lock_block->name(),
                        static_cast<std::uint64_t>(reinterpret_cast<std::byte*>(lock_.cell()) - lock_block->base())};
    }
    return wire;
}

SharedArrayCore SharedArrayCore::synchronized(const LockOption& lock) const {
    if (data_ == nullptr) throw_empty();
    SharedArrayCore core = *this;
    if (lock.make()) {
        // A lock of its own beside the elements' segment, which has no room for one: the wire
        // form already lets a lock live in another segment (a Value made with another's lock).
        auto lock_block = create_block(ElementType{6, 1, 1}, 0, true);
        core.lock_ = ValueLock(lock_block, lock_block->lock_cell());
    } else if (lock.existing()) {
        if (lock.existing()->cell() == nullptr) throw ValueError("the lock given is an empty handle");
        core.lock_ = *lock.existing();
    } else {
        throw ValueError("synchronized() needs a lock: true for a new one, or an existing ValueLock");
    }
    return core;
}

SharedArrayCore SharedArrayCore::copied() const {
    if (data_ == nullptr) throw_empty();
    const ElementType type = block_->header().type();
    SharedArrayCore core;
    core.block_ = create_block(type, count_, false);
    core.data_ = core.block_->base() + core.block_->header().data_offset;
    core.count_ = count_;
    MaybeLocked guard(*this);
    if (count_ > 0) std::memcpy(core.data_, data_, count_ * type.size);
    return core;
}

void SharedArrayCore::throw_empty() const { throw ValueError("empty shared memory handle"); }
void SharedArrayCore::throw_no_lock() const { throw ValueError("this Value or Array has no lock (lock=false)"); }

std::size_t checked_index(std::ptrdiff_t index, std::size_t size) {
    const auto n = static_cast<std::ptrdiff_t>(size);
    const std::ptrdiff_t i = index < 0 ? index + n : index;
    if (i < 0 || i >= n) throw IndexError("invalid index");
    return static_cast<std::size_t>(i);
}

std::pair<std::size_t, std::size_t> slice_bounds(std::ptrdiff_t start, std::ptrdiff_t stop, std::size_t size) {
    const auto n = static_cast<std::ptrdiff_t>(size);
    auto clamp = [n](std::ptrdiff_t i) { return std::clamp(i < 0 ? i + n : i, std::ptrdiff_t{0}, n); };
    const std::ptrdiff_t from = clamp(start);
    const std::ptrdiff_t to = std::max(from, clamp(stop));
    return {static_cast<std::size_t>(from), static_cast<std::size_t>(to)};
}

}  // namespace zmp::detail

namespace zmp {

using detail::LockCell;

void ValueLock::throw_empty() { throw ValueError("empty lock handle"); }

void ValueLock::throw_not_owned() { throw ValueError(detail::texts::kReleaseUnacquired); }

void ValueLock::take(LockCell& cell, std::uint64_t me) {
    detail::took(cell, ::pthread_mutex_lock(detail::mutex_of(cell)), me);
}

void ValueLock::give_back(LockCell& cell) {
    detail::owner_of(cell).store(0, std::memory_order_relaxed);
    detail::owner_pid_of(cell).store(0, std::memory_order_relaxed);
    ::pthread_mutex_unlock(detail::mutex_of(cell));
}

bool ValueLock::try_lock() const {
    LockCell& cell = checked_cell();
    const std::uint64_t me = detail::thread_token();
    if (detail::owner_of(cell).load(std::memory_order_relaxed) == me) {
        ++cell.depth;
        return true;
    }
    const int rc = ::pthread_mutex_trylock(detail::mutex_of(cell));
    if (rc == EBUSY) return false;
    detail::took(cell, rc, me);
    return true;
}

bool ValueLock::acquire(bool block, Timeout timeout) const {
    if (!block) return try_lock();
    const detail::Deadline deadline = detail::Deadline::after(timeout);
    if (deadline.is_never()) {
        lock();
        return true;
    }
    LockCell& cell = checked_cell();
    const std::uint64_t me = detail::thread_token();
    if (detail::owner_of(cell).load(std::memory_order_relaxed) == me) {
        ++cell.depth;
        return true;
    }
    const timespec at = deadline.monotonic_timespec();
    const int rc = ::pthread_mutex_clocklock(detail::mutex_of(cell), CLOCK_MONOTONIC, &at);
    if (rc == ETIMEDOUT) return false;
    detail::took(cell, rc, me);
    return true;
}

void ValueLock::release() const { unlock(); }

bool ValueLock::owner_died() const { return owned() && cell_->owner_died != 0; }

bool ValueLock::owned() const {
    return detail::owner_of(checked_cell()).load(std::memory_order_relaxed) == detail::thread_token();
}

}  // namespace zmp
