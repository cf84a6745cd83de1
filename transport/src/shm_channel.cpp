#include "zmp/transport/shm_channel.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>
#include <optional>
#include <string>

#include "shm_layout.hpp"
#include "socket_io.hpp"
#include "zmp/detail/deadline.hpp"
#include "zmp/detail/error_texts.hpp"
#include "zmp/errors.hpp"

namespace zmp::transport {
namespace {

using namespace shm_layout;
using Clock = std::chrono::steady_clock;
using zmp::detail::Deadline;
constexpr auto relaxed = std::memory_order_relaxed;
constexpr auto acquire = std::memory_order_acquire;
constexpr auto release = std::memory_order_release;

[[noreturn]] void corrupt(const std::string& what) { throw ProtocolError("channel stream is corrupt: " + what); }

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// ---- locks -----------------------------------------------------------------------------------

void init_robust_mutex(pthread_mutex_t* m) {
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    const int rc = pthread_mutex_init(m, &attr);
    pthread_mutexattr_destroy(&attr);
    if (rc != 0) throw_os_error("pthread_mutex_init", rc);
}

// Holds a robust process-shared mutex; `owner_died` says its last holder died holding it.
class SharedLock {
public:
    explicit SharedLock(pthread_mutex_t* m) : m_(m) { finish(pthread_mutex_lock(m_)); }
    SharedLock(pthread_mutex_t* m, const Deadline& deadline) : m_(m) {
        if (deadline.is_never()) {
            finish(pthread_mutex_lock(m_));
            return;
        }
        const timespec at = deadline.monotonic_timespec();
        const int rc = pthread_mutex_clocklock(m_, CLOCK_MONOTONIC, &at);
        if (rc == ETIMEDOUT) {
            m_ = nullptr;
            return;
        }
        finish(rc);
    }
    static SharedLock try_lock(pthread_mutex_t* m) {
        SharedLock lock;
        const int rc = pthread_mutex_trylock(m);
        if (rc == EBUSY) return lock;
        lock.m_ = m;
        lock.finish(rc);
        return lock;
    }
    SharedLock(const SharedLock&) = delete;
    SharedLock& operator=(const SharedLock&) = delete;
    SharedLock(SharedLock&& other) noexcept : owner_died(other.owner_died), m_(std::exchange(other.m_, nullptr)) {}
    ~SharedLock() {
        if (m_ != nullptr) pthread_mutex_unlock(m_);
    }
    bool held() const { return m_ != nullptr; }
    bool owner_died = false;

private:
    SharedLock() = default;
    void finish(int rc) {
        if (rc == EOWNERDEAD) {
            pthread_mutex_consistent(m_);
            owner_died = true;
        } else if (rc != 0) {
            m_ = nullptr;
            throw_os_error("lock a channel", rc);
        }
    }
    pthread_mutex_t* m_ = nullptr;
};

// ---- the adaptive spin -------------------------------------------------------------------------
//
// A reader spins only while it pays. Spinning pays when the peer runs at the same time on another
// core; it costs when a runnable thread (perhaps the very peer that is to answer) waits for a
// core. So nothing spins while the machine has more runnable threads than online cores (sampled
// from /proc/loadavg every few milliseconds), and otherwise a reader's budget doubles after each
// wait the spin caught and after each sleep that ended within kMaxSpin (a longer spin would have
// caught it), and halves after each wait that outlasted it, down to kMinSpin. A reader inside a
// message (the next chunk is on its way) and a writer waiting for room spin up to kStreamSpin.
// (sched_yield() does not help: the scheduler gives the core back at once.) ZMP_SPIN=always in
// the environment spins whatever the load (processes pinned to cores of their own, on a machine
// busy elsewhere); ZMP_SPIN=never does not spin at all.

constexpr std::int64_t kMinSpinNs = 500;
constexpr std::int64_t kMaxSpinNs = 50'000;
constexpr std::int64_t kStreamSpinNs = 100'000;
constexpr auto kLoadSample = std::chrono::milliseconds(4);

enum class SpinPolicy { automatic, always, never };

SpinPolicy spin_policy() {
    static const SpinPolicy policy = [] {
        const char* value = std::getenv("ZMP_SPIN");
        if (value != nullptr && std::strcmp(value, "always") == 0) return SpinPolicy::always;
        if (value != nullptr && std::strcmp(value, "never") == 0) return SpinPolicy::never;
        return SpinPolicy::automatic;
    }();
    return policy;
}

// Runnable threads on the machine right now (the fourth field of /proc/loadavg: "R/T"), or -1.
int runnable_threads() {
    const int fd = ::open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char text[128];
    const ssize_t n = ::read(fd, text, sizeof text - 1);
    ::close(fd);
    if (n <= 0) return -1;
    text[n] = '\0';
    const char* field = text;
    for (int spaces = 0; spaces < 3 && field != nullptr; ++spaces) {
        field = std::strchr(field, ' ');
        if (field != nullptr) ++field;
    }
    return field != nullptr ? std::atoi(field) : -1;
}

// Whether more threads want to run than there are cores, smoothed over a few samples.
bool cores_contended() {
    static std::atomic<std::int64_t> next_sample{0};
    static std::atomic<int> smoothed_x4{0};  // four times the smoothed runnable count
    static std::atomic<bool> contended{false};
    static const int cores = static_cast<int>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));
    const std::int64_t now = Clock::now().time_since_epoch().count();
    std::int64_t due = next_sample.load(relaxed);
    if (now >= due && next_sample.compare_exchange_strong(due, now + std::chrono::nanoseconds(kLoadSample).count())) {
        const int runnable = runnable_threads();
        if (runnable >= 0) smoothed_x4.store((3 * smoothed_x4.load(relaxed) + 4 * runnable + 2) / 4, relaxed);
        // Hysteresis: contended above one thread more than the cores, free again at their count.
        const int load_x4 = smoothed_x4.load(relaxed);
        if (load_x4 > 4 * (cores + 1))
            contended.store(true, relaxed);
        else if (load_x4 <= 4 * cores)
            contended.store(false, relaxed);
    }
    return contended.load(relaxed);
}

// Whether a waiter may spin now.
bool spinning_pays() {
    switch (spin_policy()) {
        case SpinPolicy::always:
            return true;
        case SpinPolicy::never:
            return false;
        case SpinPolicy::automatic:
            break;
    }
    return !cores_contended();
}

template <class Ready>
bool spin_until(Ready&& ready, std::int64_t budget_ns, const Deadline& deadline) {
    if (!spinning_pays()) return ready();
    const auto start = Clock::now();
    auto stop = start + std::chrono::nanoseconds(budget_ns);
    if (deadline.time_or_max() < stop) stop = deadline.time_or_max();
    for (unsigned i = 1;; ++i) {
        if (ready()) return true;
        cpu_relax();
        if ((i & 7) == 0 && Clock::now() >= stop) return ready();
    }
}

class SpinBudget {
public:
    std::int64_t ns() const { return ns_; }
    void caught() { ns_ = std::min(kMaxSpinNs, ns_ * 2); }
    void missed() { ns_ = std::max(kMinSpinNs, ns_ / 2); }
    // After a sleep of `slept`: had the spin lasted that long, it would have caught the message.
    void slept(Clock::duration slept) {
        if (slept < std::chrono::nanoseconds(kMaxSpinNs)) caught();
    }

private:
    std::int64_t ns_ = 20'000;
};

// ---- copying in and out of a ring ------------------------------------------------------------

// Both return at once for n == 0: the storage of an empty message may be a null pointer, which
// memcpy must not get even for no bytes.
void copy_to_ring(char* data, std::size_t capacity, std::uint64_t position, const char* from, std::size_t n) {
    if (n == 0) return;
    const std::size_t offset = static_cast<std::size_t>(position & (capacity - 1));
    const std::size_t first = std::min(n, capacity - offset);
    std::memcpy(data + offset, from, first);
    if (n > first) std::memcpy(data, from + first, n - first);
}

void copy_from_ring(const char* data, std::size_t capacity, std::uint64_t position, char* to, std::size_t n) {
    if (n == 0) return;
    const std::size_t offset = static_cast<std::size_t>(position & (capacity - 1));
    const std::size_t first = std::min(n, capacity - offset);
    std::memcpy(to, data + offset, first);
    if (n > first) std::memcpy(to + first, data, n - first);
}

// The bytes of a message still to send, over the caller's parts.
class Cursor {
public:
    explicit Cursor(std::span<const iovec> parts) : parts_(parts) {}
    // Copies the next `n` bytes into the ring at `position`.
    void copy_to(char* data, std::size_t capacity, std::uint64_t position, std::size_t n) {
        while (n > 0) {
            const iovec& part = parts_[index_];
            const std::size_t take = std::min(n, part.iov_len - offset_);
            copy_to_ring(data, capacity, position, static_cast<const char*>(part.iov_base) + offset_, take);
            position += take;
            n -= take;
            offset_ += take;
            if (offset_ == part.iov_len) next_part();
        }
    }
    // What is left, as iovecs (for a frame).
    void append_rest(std::vector<iovec>& out) {
        skip_empty();
        for (std::size_t i = index_; i < parts_.size(); ++i) {
            const std::size_t from = i == index_ ? offset_ : 0;
            if (parts_[i].iov_len > from)
                out.push_back({static_cast<char*>(parts_[i].iov_base) + from, parts_[i].iov_len - from});
        }
    }

private:
    void next_part() {
        ++index_;
        offset_ = 0;
        skip_empty();
    }
    void skip_empty() {
        while (index_ < parts_.size() && parts_[index_].iov_len == offset_) {
            ++index_;
            offset_ = 0;
        }
    }
    std::span<const iovec> parts_;
    std::size_t index_ = 0;
    std::size_t offset_ = 0;
};

void close_fd(int& fd) {
    if (fd >= 0) ::close(std::exchange(fd, -1));
}

}  // namespace

// ---- one end's view of the segment -----------------------------------------------------------

// The segment as this process holds it: its descriptor (what travels) and one mapping. The two ends
// of a pair made here share it, so a Pipe costs one descriptor more than its socket pair.
struct Segment {
    Segment(int fd_, char* base_, std::size_t ring_) : fd(fd_), base(base_), ring_bytes(ring_) {}
    ~Segment() {
        ::munmap(base, segment_bytes(ring_bytes));
        ::close(fd);
    }
    Segment(const Segment&) = delete;
    Segment& operator=(const Segment&) = delete;
    const int fd;
    char* const base;
    const std::size_t ring_bytes;
};

struct ShmChannel::Ring {
    Ring(std::shared_ptr<const Segment> segment_, int side_, std::uint64_t max)
        : segment(std::move(segment_)), capacity(segment->ring_bytes), side(side_), max_message(max) {
        out = reinterpret_cast<Control*>(segment->base + control_offset(side));
        in = reinterpret_cast<Control*>(segment->base + control_offset(1 - side));
        out_data = segment->base + data_offset(capacity, side);
        in_data = segment->base + data_offset(capacity, 1 - side);
    }
    ~Ring() { close_readiness(); }
    void close_readiness() {
        close_fd(epoll_fd);
        close_fd(event_fd);
        event_set = false;
    }

    // Kept until this end is destroyed, so that a thread still inside a call cannot fault.
    const std::shared_ptr<const Segment> segment;
    const std::size_t capacity;  // learnt when the end was made; never read from the segment again
    const int side;
    const std::uint64_t max_message;
    Control* out;
    Control* in;
    char* out_data;
    char* in_data;

    // Writer's side, under out->producer.lock.
    std::uint64_t cached_head = 0;  // a lower bound of the reader's position (it only grows)

    // Reader's side, under in->consumer.lock.
    SpinBudget spin;
    bool eof = false;  // every copy of the writer's end is closed: for good
    bool broken = false;
    int epoll_fd = -1;
    int event_fd = -1;
    bool event_set = false;

    // ---- writer ----

    std::uint64_t room(std::uint64_t tail, std::uint64_t want) {
        // cached_head may lag far behind when other processes wrote since: it is only a fast path.
        if (tail - cached_head <= capacity && capacity - (tail - cached_head) >= want)
            return capacity - (tail - cached_head);
        const std::uint64_t head = out->consumer.head.load(acquire);
        if (head > tail || tail - head > capacity) corrupt("the reader's position is outside the ring");
        cached_head = head;
        return capacity - (tail - head);
    }

    bool drained(std::uint64_t tail) { return out->consumer.head.load(acquire) == tail; }

    void publish(std::uint64_t tail, int socket_fd) {
        out->producer.tail.store(tail, release);
        ring_bell(socket_fd);
    }

    // After a publish: wakes the reader if it announced it is going to sleep. A bell that finds
    // the socket full is not needed (the reader has bytes to wake for); EPIPE means no reader is
    // left anywhere.
    void ring_bell(int socket_fd, bool always = false) {
        std::atomic_thread_fence(std::memory_order_seq_cst);  // the tail before the doorbell word
        std::atomic<std::uint32_t>& word = out->bell.word;
        const std::uint32_t seen = word.load(relaxed);
        if (!always && Doorbell::state_of(seen) != kArmed) return;
        const char byte = static_cast<char>(kBell);
        ssize_t n;
        do n = ::send(socket_fd, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
            out->producer.reader_gone.store(1, relaxed);
            throw OSError("the other end of the channel is closed", errno);
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) throw_os_error("send on channel", errno);
        if (Doorbell::state_of(seen) != kArmed) return;
        std::uint32_t expected = seen;
        word.compare_exchange_strong(expected, (seen & ~3u) | kRung, relaxed, relaxed);
    }

    void send_frame(int socket_fd, FrameKind kind, std::uint64_t size, Cursor* rest, std::span<const int> fds,
                    Mode next) {
        ProducerSide& p = out->producer;
        const unsigned char tag = kTag;
        FrameHeader header{size, static_cast<std::uint32_t>(fds.size()), kFrameMagic, kind,
                           static_cast<std::uint8_t>(next)};
        std::vector<iovec> iov{{const_cast<unsigned char*>(&tag), 1}, {&header, sizeof header}};
        if (rest != nullptr) rest->append_rest(iov);
        p.in_frame.store(1, relaxed);
        try {
            socket_io::send_all(socket_fd, iov, fds);
        } catch (const OSError& e) {
            p.in_frame.store(0, relaxed);
            if (e.code() == EPIPE || e.code() == ECONNRESET) p.reader_gone.store(1, relaxed);
            throw;
        }
        p.in_frame.store(0, relaxed);
        p.mode.store(next, relaxed);
    }

    // The rest of the message (all of it if nothing went through the ring) goes on the socket,
    // after a marker in the ring. The ring always keeps room for one marker.
    void spill(int socket_fd, std::uint64_t tail, FrameKind kind, std::uint64_t size, Cursor* rest,
               std::span<const int> fds) {
        // The stream comes back to the ring at once when a marker leaves room for another.
        const Mode next =
            room(tail, 2 * kRecord) >= 2 * kRecord && kind == kWhole && !fds.empty() ? kRingMode : kSocketMode;
        const Record marker{kToSocket, 0, 0, 0};
        copy_to_ring(out_data, capacity, tail, reinterpret_cast<const char*>(&marker), kRecord);
        out->producer.marker_pending.store(1, relaxed);
        publish(tail + kRecord, socket_fd);
        send_frame(socket_fd, kind, size, rest, fds, next);
        out->producer.marker_pending.store(0, relaxed);
    }

    // Called by a writer that took the lock from a writer that died holding it.
    void repair_writer(int socket_fd) {
        ProducerSide& p = out->producer;
        if (p.in_frame.load(relaxed) != 0) {
            p.torn.store(1, relaxed);  // part of a frame is on the socket: nothing can follow it
            return;
        }
        // Where the reader will look next: the socket if the dead writer published a marker and
        // did not get to send its frame (the next frame stands in for it).
        const bool socket_next = p.mode.load(relaxed) == kSocketMode || p.marker_pending.load(relaxed) != 0;
        if (p.in_message.load(relaxed) != 0) {
            // Its reader holds the start of a message that will never end: tell it to drop it.
            if (!socket_next) {  // the dead writer left room for this marker, as every writer does
                const std::uint64_t tail = p.tail.load(relaxed);
                const Record marker{kToSocket, 0, 0, 0};
                copy_to_ring(out_data, capacity, tail, reinterpret_cast<const char*>(&marker), kRecord);
                publish(tail + kRecord, socket_fd);
            }
            send_frame(socket_fd, kAbort, 0, nullptr, {}, kSocketMode);
            p.in_message.store(0, relaxed);
        } else if (socket_next) {
            p.mode.store(kSocketMode, relaxed);
        }
        p.marker_pending.store(0, relaxed);
        ring_bell(socket_fd, true);  // it may have died between a publish and its doorbell
    }

    // ---- reader ----

    bool available() const { return in->producer.tail.load(acquire) != in->consumer.head.load(relaxed); }

    enum class Wake { ready, end, timeout };

    enum class Woke { bell, frame, end, timeout, nothing };

    // Sleeps on the socket until something arrives: doorbells (taken), a frame's start (left for
    // the reader), end of stream, or the deadline.
    Woke sleep_on_socket(int socket_fd, const Deadline& deadline) {
        if (!deadline.is_never() && !socket_io::wait_readable(socket_fd, deadline)) return Woke::timeout;
        unsigned char bytes[16];
        // Without a deadline, the peek itself is where the reader sleeps.
        const ssize_t n = socket_io::peek_some(socket_fd, bytes, sizeof bytes, deadline.is_never() ? 0 : MSG_DONTWAIT);
        if (n == 0) return Woke::end;
        if (n < 0) return Woke::nothing;  // another reader took it
        if (bytes[0] == kTag) return Woke::frame;
        if (bytes[0] != kBell) corrupt("unexpected bytes on the socket");
        take_bells(socket_fd, bytes, static_cast<std::size_t>(n));
        return Woke::bell;
    }

    // Takes the doorbells at the front of the `n` bytes peeked into `bytes`.
    static void take_bells(int socket_fd, unsigned char* bytes, std::size_t n) {
        std::size_t bells = 0;
        while (bells < n && bytes[bells] == kBell) ++bells;
        if (bells == 0) return;
        ssize_t taken;
        do taken = ::recv(socket_fd, bytes, bells, MSG_DONTWAIT);
        while (taken < 0 && errno == EINTR);
    }

    // Waits until the ring holds a record. `end` once every writer is gone and the ring is empty.
    // `streaming`: inside a message, whose writer is at work.
    Wake wait_record(int socket_fd, const Deadline& deadline, bool streaming = false) {
        if (available()) return Wake::ready;
        if (eof) return Wake::end;
        Doorbell& bell = in->bell;
        bell.wake();
        const bool caught = spin_until([this] { return available(); }, streaming ? kStreamSpinNs : spin.ns(), deadline);
        if (!streaming) caught ? spin.caught() : spin.missed();
        if (caught) return Wake::ready;
        const auto asleep = Clock::now();
        for (;;) {
            bell.arm();  // then look once more, then sleep
            if (available()) break;
            const Woke woke = sleep_on_socket(socket_fd, deadline);
            if (woke == Woke::end) {
                eof = true;
                return available() ? Wake::ready : Wake::end;
            }
            if (woke == Woke::timeout) return available() ? Wake::ready : Wake::timeout;
            if (available()) break;
            // A frame is announced by a marker published before it was written.
            if (woke == Woke::frame) corrupt("a frame on the socket without its marker in the ring");
        }
        bell.wake();
        if (!streaming) spin.slept(Clock::now() - asleep);
        return Wake::ready;
    }

    // Makes the readiness eventfd say whether a message waits in the ring (the socket says the
    // rest: doorbells, frames, end of stream). Called by a reader holding the lock.
    void settle(int socket_fd) {
        if (epoll_fd < 0) return;
        in->bell.arm();  // from now on, writers ring
        bool ready = available() || broken;
        if (!ready && in->consumer.mode.load(relaxed) == kRingMode) {
            // Doorbells for messages already taken would make the socket look readable.
            unsigned char bytes[16];
            const ssize_t n = socket_io::peek_some(socket_fd, bytes, sizeof bytes, MSG_DONTWAIT);
            if (n > 0) take_bells(socket_fd, bytes, static_cast<std::size_t>(n));
            ready = available();
        }
        if (ready && !event_set) {
            const std::uint64_t one = 1;
            if (::write(event_fd, &one, sizeof one) == sizeof one) event_set = true;
        } else if (!ready && event_set) {
            std::uint64_t count;
            if (::read(event_fd, &count, sizeof count) == sizeof count) event_set = false;
        }
    }
};

// ---- the message being received --------------------------------------------------------------

namespace {

// A message's announced size sets nothing aside: its room starts at kFirstRoom and doubles as
// bytes arrive (as FdChannel's), so a size that lies costs the receiver little.
struct Assembly {
    const std::function<char*(std::size_t, std::size_t)>& storage;
    char* data = nullptr;
    std::uint64_t total = 0;
    std::uint64_t got = 0;
    std::uint64_t room = 0;
    bool started = false;

    void start(std::uint64_t size) {
        total = size;
        got = 0;
        room = std::min<std::uint64_t>(size, kFirstRoom);
        data = storage(static_cast<std::size_t>(total), static_cast<std::size_t>(room));
        started = true;
    }
    // Makes room for `n` more bytes after those received.
    void make_room(std::uint64_t n) {
        if (got + n <= room) return;
        while (room < got + n) room = room > total / 2 ? total : 2 * room;
        data = storage(static_cast<std::size_t>(total), static_cast<std::size_t>(room));
    }
    // Reads `n` bytes from the socket; false at end of stream before they all came.
    bool read(int fd, std::uint64_t n) {
        const std::uint64_t end = got + n;
        while (got < end) {
            if (got == room) make_room(1);
            const auto want = static_cast<std::size_t>(std::min(room, end) - got);
            const std::size_t came = socket_io::read_fully(fd, data + got, want);
            got += came;
            if (came != want) return false;
        }
        return true;
    }
    void drop() {
        started = false;
        data = nullptr;
        total = got = room = 0;
    }
};

}  // namespace

// ---- ShmChannel ------------------------------------------------------------------------------

ShmChannel::ShmChannel(FdChannel socket) noexcept : socket_(std::move(socket)) {}

ShmChannel::ShmChannel(ShmChannel&&) noexcept = default;
ShmChannel& ShmChannel::operator=(ShmChannel&&) noexcept = default;
ShmChannel::~ShmChannel() = default;

std::pair<ShmChannel, ShmChannel> ShmChannel::pair(const ShmChannelOptions& options) {
    const std::size_t ring = options.ring_bytes;
    if (ring < kMinRing || ring > kMaxRing || (ring & (ring - 1)) != 0)
        throw ValueError("a channel's ring must be a power of two from 4 KiB to 64 MiB, not " + std::to_string(ring));
    const std::size_t bytes = segment_bytes(ring);

    int fd = ::memfd_create("zmp-channel", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) throw_os_error("memfd_create", errno);
    std::shared_ptr<Segment> segment;
    try {
        if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) throw_os_error("ftruncate", errno);
        // Sealed: nobody can shrink the file under a mapping (a reader would fault).
        if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
            throw_os_error("seal a channel segment", errno);
        void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) throw_os_error("mmap a channel segment", errno);
        segment = std::make_shared<Segment>(fd, static_cast<char*>(p), ring);
    } catch (...) {
        ::close(fd);
        throw;
    }
    auto* header = reinterpret_cast<SegmentHeader*>(segment->base);
    header->magic = kSegmentMagic;
    header->version = kSegmentVersion;
    header->ring_bytes = static_cast<std::uint32_t>(ring);
    for (int d = 0; d < 2; ++d) {
        auto* control = new (segment->base + control_offset(d)) Control{};
        init_robust_mutex(&control->producer.lock);
        init_robust_mutex(&control->consumer.lock);
        // Armed: a writer rings for a reader that has not started reading (it may be gone).
        control->bell.word.store(kArmed, relaxed);
    }
    auto [first_socket, second_socket] = FdChannel::pair();
    ShmChannel a(std::move(first_socket)), b(std::move(second_socket));
    a.ring_ = std::make_unique<Ring>(segment, 0, options.max_message);
    b.ring_ = std::make_unique<Ring>(segment, 1, options.max_message);
    return {std::move(a), std::move(b)};
}

ShmChannel::ShmChannel(FdChannel socket, int segment_fd, int side, std::uint64_t max_message)
    : socket_(std::move(socket)) {
    auto reject = [&](const std::string& why) {
        ::close(segment_fd);
        throw ProtocolError("not a channel segment: " + why);
    };
    if (side != 0 && side != 1) reject("bad side");
    const int seals = ::fcntl(segment_fd, F_GET_SEALS);
    if (seals < 0 || (seals & F_SEAL_SHRINK) == 0) reject("it is not sealed against shrinking");
    struct stat st {};
    if (::fstat(segment_fd, &st) != 0) reject(std::strerror(errno));
    SegmentHeader header{};
    if (static_cast<std::size_t>(st.st_size) < kPage ||
        ::pread(segment_fd, &header, sizeof header, 0) != static_cast<ssize_t>(sizeof header))
        reject("too small");
    const std::size_t ring = header.ring_bytes;
    if (header.magic != kSegmentMagic || header.version != kSegmentVersion) reject("bad magic or version");
    if (ring < kMinRing || ring > kMaxRing || (ring & (ring - 1)) != 0) reject("bad ring size");
    if (static_cast<std::size_t>(st.st_size) != segment_bytes(ring)) reject("wrong size");
    void* p = ::mmap(nullptr, segment_bytes(ring), PROT_READ | PROT_WRITE, MAP_SHARED, segment_fd, 0);
    if (p == MAP_FAILED) {
        const int err = errno;
        ::close(segment_fd);
        throw_os_error("mmap a channel segment", err);
    }
    std::shared_ptr<Segment> segment;
    try {
        segment = std::make_shared<Segment>(segment_fd, static_cast<char*>(p), ring);
    } catch (...) {
        ::munmap(p, segment_bytes(ring));
        ::close(segment_fd);
        throw;
    }
    ring_ = std::make_unique<Ring>(std::move(segment), side, max_message);
}

int ShmChannel::segment_fd() const noexcept { return ring_ && socket_.is_open() ? ring_->segment->fd : -1; }

int ShmChannel::segment_side() const noexcept { return ring_ ? ring_->side : 0; }

void ShmChannel::close() noexcept {
    if (ring_ && socket_.is_open()) {
        // A writer that sends next rings, and learns (EPIPE) whether any reader is left.
        ring_->in->bell.arm();
        ring_->close_readiness();
    }
    socket_.close();
}

void ShmChannel::send(const void* data, std::size_t size, std::span<const int> fds) {
    iovec part{const_cast<void*>(data), size};
    send(std::span<const iovec>(&part, 1), fds);
}

void ShmChannel::send(std::span<const iovec> parts, std::span<const int> fds) {
    if (!ring_) return socket_.send(parts, fds);
    const int fd = socket_.fd();
    if (fd < 0) throw OSError(zmp::detail::texts::kHandleClosed, EBADF);
    Ring& r = *ring_;
    if (fds.size() > socket_io::kMaxFds) throw ValueError("too many file descriptors in one message");
    std::uint64_t total = 0;
    for (const iovec& part : parts) total += part.iov_len;
    if (total > r.max_message) {
        throw ValueError("message of " + std::to_string(total) + " bytes exceeds the channel limit of " +
                         std::to_string(r.max_message) + " bytes");
    }
    ProducerSide& p = r.out->producer;
    SharedLock lock(&p.lock);
    if (lock.owner_died) r.repair_writer(fd);
    if (p.torn.load(relaxed) != 0)
        throw OSError("the channel is unusable: a writer died in the middle of a message", EPIPE);
    if (p.reader_gone.load(relaxed) != 0) throw OSError("the other end of the channel is closed", EPIPE);

    Cursor rest(parts);
    std::uint64_t tail = p.tail.load(relaxed);
    if (p.mode.load(relaxed) == kSocketMode) {
        // The reader reads the socket now; it comes back to the ring once the ring is drained.
        r.send_frame(fd, kWhole, total, &rest, fds, r.drained(tail) ? kRingMode : kSocketMode);
        return;
    }
    if (!fds.empty()) return r.spill(fd, tail, kWhole, total, &rest, fds);

    // Through the ring: a message that fits in a quarter of it as one record, a larger one in
    // chunks of that size, each published as soon as it is written.
    const std::uint64_t chunk = r.capacity / 4;
    std::uint64_t left = total;
    bool first = true;
    for (;;) {
        const std::uint64_t length = std::min(left, chunk);
        const std::uint64_t need = kRecord + pad16(length) + kRecord;  // and room for a marker after it
        if (r.room(tail, need) < need) {
            if (!spin_until([&] { return r.room(tail, need) >= need; }, kStreamSpinNs, Deadline::never())) {
                r.spill(fd, tail, first ? kWhole : kRest, left, &rest, {});
                break;
            }
        }
        const Record record{kChunk, static_cast<std::uint16_t>((first ? kFirst : 0) | (length == left ? kLast : 0)),
                            static_cast<std::uint32_t>(length), total};
        copy_to_ring(r.out_data, r.capacity, tail, reinterpret_cast<const char*>(&record), kRecord);
        rest.copy_to(r.out_data, r.capacity, tail + kRecord, static_cast<std::size_t>(length));
        if (first && length != left) p.in_message.store(1, relaxed);
        tail += kRecord + pad16(length);
        r.publish(tail, fd);
        left -= length;
        first = false;
        if (left == 0) break;
    }
    p.in_message.store(0, relaxed);
}

bool ShmChannel::recv(ChannelMessage& out) {
    out.fds.clear();
    out.size = 0;
    return recv([&out](std::size_t, std::size_t needed) { return out.grow(needed); }, out.fds);
}

bool ShmChannel::recv(const std::function<char*(std::size_t, std::size_t)>& storage, std::vector<int>& fds) {
    if (!ring_) return socket_.recv(storage, fds);
    const int fd = socket_.fd();
    if (fd < 0) throw OSError(zmp::detail::texts::kHandleClosed, EBADF);
    Ring& r = *ring_;
    if (r.broken) throw ProtocolError("channel is unusable after an earlier framing error");
    ConsumerSide& c = r.in->consumer;
    SharedLock lock(&c.lock);
    if (lock.owner_died && c.in_message.load(relaxed) != 0) c.broken.store(1, relaxed);
    if (c.broken.load(relaxed) != 0) {
        r.broken = true;
        throw ProtocolError("channel is unusable: a reader died in the middle of a message, or met garbage");
    }

    const std::size_t fds_before = fds.size();
    auto drop_fds = [&] {
        for (std::size_t i = fds_before; i < fds.size(); ++i) ::close(fds[i]);
        fds.resize(fds_before);
    };
    Assembly message{storage};
    // End of stream inside a message: the part received is dropped, never delivered.
    auto end_of_stream = [&] {
        drop_fds();
        c.in_message.store(0, relaxed);
        r.settle(fd);
        return false;
    };
    try {
        for (;;) {
            if (c.mode.load(relaxed) == kSocketMode) {
                FrameHeader header{};
                const std::size_t fds_at_frame = fds.size();
                bool tagged = false;
                std::size_t have = 0;
                unsigned char bytes[1 + sizeof header];
                while (have < sizeof header) {
                    const std::size_t want = tagged ? sizeof header - have : sizeof bytes;
                    const ssize_t n = socket_io::recv_some(fd, bytes, want, fds);
                    if (n == 0) return end_of_stream();
                    std::size_t i = 0;
                    if (!tagged) {
                        while (i < static_cast<std::size_t>(n) && bytes[i] == kBell) ++i;
                        if (i == static_cast<std::size_t>(n)) continue;
                        if (bytes[i] != kTag) corrupt("a frame does not start with its tag");
                        tagged = true;
                        ++i;
                    }
                    std::memcpy(reinterpret_cast<char*>(&header) + have, bytes + i, static_cast<std::size_t>(n) - i);
                    have += static_cast<std::size_t>(n) - i;
                }
                if (header.magic != kFrameMagic || header.next > kSocketMode ||
                    header.nfds != fds.size() - fds_at_frame || (header.nfds != 0 && header.kind != kWhole))
                    corrupt("bad frame header");
                if (header.kind == kAbort) {
                    if (header.size != 0) corrupt("an abort with a payload");
                    drop_fds();
                    message.drop();
                    c.in_message.store(0, relaxed);
                    c.mode.store(header.next, relaxed);
                    continue;
                }
                if (header.kind == kWhole) {
                    if (message.started) corrupt("a whole message inside another");
                    if (header.size > r.max_message) corrupt("a message over the limit");
                    message.start(header.size);
                } else if (header.kind == kRest) {
                    if (!message.started || header.size != message.total - message.got)
                        corrupt("the rest of a message does not match its start");
                } else {
                    corrupt("unknown frame kind");
                }
                c.in_message.store(1, relaxed);
                if (!message.read(fd, header.size)) return end_of_stream();
                c.in_message.store(0, relaxed);
                c.mode.store(header.next, relaxed);
                r.settle(fd);
                return true;
            }

            if (r.wait_record(fd, Deadline::never(), message.started) == Ring::Wake::end) return end_of_stream();
            // A record is there. Everything in it is checked against what this end knows.
            std::uint64_t head = c.head.load(relaxed);
            const std::uint64_t tail = r.in->producer.tail.load(acquire);
            const std::uint64_t filled = tail - head;
            if (filled > r.capacity || filled % 16 != 0 || head % 16 != 0 || filled < kRecord)
                corrupt("the ring's positions are inconsistent");
            Record record;
            copy_from_ring(r.in_data, r.capacity, head, reinterpret_cast<char*>(&record), kRecord);
            if (record.type == kToSocket) {
                c.head.store(head + kRecord, release);
                c.mode.store(kSocketMode, relaxed);
                continue;
            }
            if (record.type != kChunk) corrupt("unknown record type");
            if (pad16(record.length) > filled - kRecord) corrupt("a record longer than what is in the ring");
            if ((record.flags & kFirst) != 0) {
                if (message.started) corrupt("a message starts inside another");
                if (record.total > r.max_message)
                    corrupt("bad message length: " + std::to_string(record.total) + " bytes exceeds the limit of " +
                            std::to_string(r.max_message));
                message.start(record.total);
            } else if (!message.started || record.total != message.total) {
                corrupt("a chunk without the start of its message");
            }
            if (record.length > message.total - message.got) corrupt("a chunk beyond the end of its message");
            message.make_room(record.length);
            copy_from_ring(r.in_data, r.capacity, head + kRecord, message.data + message.got, record.length);
            message.got += record.length;
            const bool last = message.got == message.total;
            if (((record.flags & kLast) != 0) != last) corrupt("a message's last chunk is not where its size says");
            c.in_message.store(last ? 0 : 1, relaxed);
            c.head.store(head + kRecord + pad16(record.length), release);
            if (last) {
                r.settle(fd);
                return true;
            }
        }
    } catch (const ProtocolError&) {
        drop_fds();
        r.broken = true;
        c.broken.store(1, relaxed);
        throw;
    }
}

bool ShmChannel::poll(int timeout_ms) {
    if (!ring_) return socket_.poll(timeout_ms);
    const int fd = socket_.fd();
    if (fd < 0) throw OSError(zmp::detail::texts::kHandleClosed, EBADF);
    Ring& r = *ring_;
    if (r.broken || r.eof) return true;
    ConsumerSide& c = r.in->consumer;
    const Deadline deadline =
        timeout_ms < 0 ? Deadline::never() : Deadline::after_ns(std::int64_t{timeout_ms} * 1'000'000);
    if (c.mode.load(relaxed) == kSocketMode) return socket_io::wait_readable(fd, deadline);
    if (r.available()) return true;
    if (timeout_ms == 0) {
        // A look without waiting. A doorbell seen before an empty ring is stale (it was rung after
        // its message was published, and that message has been taken): it is taken too, so that
        // what follows it, end of stream, can be seen.
        for (;;) {
            unsigned char bytes[16];
            const ssize_t n = socket_io::peek_some(fd, bytes, sizeof bytes, MSG_DONTWAIT);
            if (n == 0 || r.available()) return true;
            if (n < 0) return false;
            if (bytes[0] != kBell) return true;  // a frame without a marker: recv() will say what is wrong
            Ring::take_bells(fd, bytes, static_cast<std::size_t>(n));
        }
    }
    SharedLock lock(&c.lock, deadline);
    if (!lock.held()) return r.available();
    if (lock.owner_died && c.in_message.load(relaxed) != 0) c.broken.store(1, relaxed);
    if (c.broken.load(relaxed) != 0) return true;
    const Ring::Wake woke = r.wait_record(fd, deadline);
    r.settle(fd);
    return woke != Ring::Wake::timeout;
}

int ShmChannel::readiness_fd() {
    if (!ring_) return socket_.fd();
    const int fd = socket_.fd();
    if (fd < 0) throw OSError(zmp::detail::texts::kHandleClosed, EBADF);
    Ring& r = *ring_;
    if (r.epoll_fd < 0) {
        int event_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (event_fd < 0) throw_os_error("eventfd", errno);
        int epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
        if (epoll_fd < 0) {
            const int err = errno;
            ::close(event_fd);
            throw_os_error("epoll_create1", err);
        }
        epoll_event watch{};
        watch.events = EPOLLIN;
        watch.data.fd = fd;
        epoll_event event_watch{};
        event_watch.events = EPOLLIN;
        event_watch.data.fd = event_fd;
        if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &watch) != 0 ||
            ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, event_fd, &event_watch) != 0) {
            const int err = errno;
            ::close(event_fd);
            ::close(epoll_fd);
            throw_os_error("epoll_ctl", err);
        }
        r.epoll_fd = epoll_fd;
        r.event_fd = event_fd;
    }
    SharedLock lock = SharedLock::try_lock(&r.in->consumer.lock);
    if (lock.held()) r.settle(fd);
    return r.epoll_fd;
}

}  // namespace zmp::transport
