#pragma once
// ShmChannel: a message channel between processes on one host that moves its bytes through
// shared memory, with a Unix socket pair beside it as the side channel. The carrier under Pipe;
// built to carry other same-host links too (it knows nothing of processes or of Connection).
//
// Why this shape:
//  - One anonymous segment (memfd_create, sealed against shrinking) holds a single-producer /
//    single-consumer byte ring per direction. It has no name, so nothing can be left behind in
//    /dev/shm; its descriptor travels beside the socket's (SCM_RIGHTS) wherever an end goes, and
//    the kernel frees it with the last descriptor or mapping. A byte ring (records of any size,
//    16-byte aligned) rather than fixed slots: small messages cost their size, large ones stream.
//  - The socket pair stays, because only the kernel knows when every copy of an end is closed,
//    in any process, including by death: it gives Python's end-of-stream rule, a descriptor that
//    select/poll/epoll can watch, and a place to sleep. A reader that finds the ring empty spins
//    a bounded, adaptive time on shared memory (that is what makes a round trip cost about a
//    microsecond), then announces it is going to sleep (the ring's doorbell word), looks at the
//    ring once more and sleeps in the kernel on its socket end. A writer that publishes a record
//    and sees the announcement sends a one-byte doorbell. So a writer's death wakes the reader
//    (end of stream), and an idle reader costs nothing. A futex would wake faster but could not
//    be woken by a death nor watched by poll().
//  - The spin pays only while the peer runs on another core at the same time. It is at most
//    tens of microseconds, shrinks when waits outlast it, and is skipped altogether while the
//    machine has more runnable threads than cores: then a spinner would only keep a core from
//    someone, perhaps from the peer that is to answer, and the channel behaves as a socket does
//    (a doorbell and a wake-up per message, but the bytes still go through shared memory).
//    ZMP_SPIN=always (processes pinned to cores of their own on a machine busy elsewhere) or
//    ZMP_SPIN=never in the environment overrides that judgement.
//  - A full ring does not need a second sleeping place: a writer that cannot get room within a
//    bounded spin moves the rest of its message, and the messages after it, onto the socket (a
//    marker in the ring says where the stream continues), where the kernel blocks it and raises
//    EPIPE if the reader is gone; once the reader has drained the ring, the writer comes back to
//    it. Messages that carry descriptors take the same path, since only a socket can carry them.
//    So the ring is bounded (a reader that never reads blocks its writer, which resumes when it
//    reads), and the socket is also the fallback: an end without a segment (ends that are not
//    both on this host) is exactly an FdChannel.
//  - Large messages are not copied more than once on each side: the writer copies chunks of a
//    quarter of the ring straight from its buffers into the ring, and the reader, told the total
//    size by the first chunk, copies each chunk straight into the buffer the message ends in,
//    while the writer fills the next one.
//  - Several processes may hold copies of one end (a forked child does). Writers take turns
//    under a robust process-shared mutex in the segment, and readers under another, so that a
//    message is never interleaved, and the death of a holder frees the lock: a writer that dies
//    in the middle of a message is followed by an abort (or by end of stream), so a reader never
//    delivers a torn message; a reader that dies in the middle of one leaves the channel unusable
//    for the other readers (ProtocolError), as a torn byte stream would.
//  - Whatever the segment holds is checked before use: a same-user process can write into the
//    ring, so every record's type, length, total and position is validated against the ring's
//    capacity (learnt once, when the end is made) and the message limit, and a bad one raises
//    ProtocolError and makes the channel unusable; nothing is allocated beyond the limit. (The
//    mutexes live in the segment too; a process that overwrites them can stall the channel, as
//    it could by sending SIGSTOP.)
//
// Limits, documented rather than hidden: a writer only notices that the reader is gone when it
// rings a doorbell or writes to the socket, so messages sent to a reader that died while it was
// spinning (not sleeping) fill the ring silently before EPIPE comes, as they would fill a socket
// buffer. A writer killed in the instant between publishing a record and ringing leaves that
// record unannounced: the reader sees it at end of stream, or with the next writer's message.
//
// Threading: as FdChannel — one thread may send while another receives; concurrent senders (or
// receivers) in one process are serialised by the caller. Across processes the channel
// serialises them itself.

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "zmp/transport/fd_channel.hpp"

namespace zmp::transport {

/// Bytes of ring per direction in a new channel, unless told otherwise.
inline constexpr std::size_t kDefaultRingBytes = std::size_t{256} << 10;

struct ShmChannelOptions {
    /// Per direction: a power of two from 4 KiB to 64 MiB.
    std::size_t ring_bytes = kDefaultRingBytes;
    std::uint64_t max_message = kDefaultMaxChannelMessage;
};

class ShmChannel {
public:
    /// Two connected ends sharing one new segment. Throws OSError (memfd, mmap, socketpair),
    /// ValueError for a ring size that is not a power of two in range.
    ///
    ///     auto [a, b] = ShmChannel::pair();
    ///     a.send("hi", 2);  ChannelMessage m;  b.recv(m);
    static std::pair<ShmChannel, ShmChannel> pair(const ShmChannelOptions& options = {});

    ShmChannel() = default;
    /// An end without a segment: behaves exactly as `socket` does (the fallback path).
    explicit ShmChannel(FdChannel socket) noexcept;
    /// Adopts an end that arrived from elsewhere: its socket, the segment's descriptor and the side
    /// it is (0 or 1, as segment_side() said where it came from). Owns both descriptors from here
    /// on, also when it throws ProtocolError for a segment that is not a valid channel segment.
    ShmChannel(FdChannel socket, int segment_fd, int side, std::uint64_t max_message = kDefaultMaxChannelMessage);
    ShmChannel(ShmChannel&&) noexcept;
    ShmChannel& operator=(ShmChannel&&) noexcept;
    ShmChannel(const ShmChannel&) = delete;
    ShmChannel& operator=(const ShmChannel&) = delete;
    ~ShmChannel();

    bool has_ring() const noexcept { return ring_ != nullptr; }
    bool is_open() const noexcept { return socket_.is_open(); }
    /// The socket end (what travels first), -1 once closed.
    int socket_fd() const noexcept { return socket_.fd(); }
    /// The segment's descriptor (what travels beside the socket), -1 without a ring or once closed.
    int segment_fd() const noexcept;
    /// Which end of the segment this is (0 or 1); 0 without a ring.
    int segment_side() const noexcept;
    /// The side channel itself, for users of a ring-less end that speak FdChannel directly.
    FdChannel& socket() noexcept { return socket_; }

    /// Closes this end's socket (the peer sees end of stream once every copy is closed). The
    /// segment's descriptor and mapping stay until the object is destroyed (shared with the other
    /// end when both were made here), so that a thread still inside a call cannot fault.
    void close() noexcept;

    /// Sends one message made of `parts` (gathered), with `fds` attached. Blocks while the ring
    /// and the socket are full. Throws OSError (EPIPE when the reader is gone), ValueError for a
    /// message over the limit or too many descriptors, ProtocolError if the segment is corrupt.
    void send(std::span<const iovec> parts, std::span<const int> fds = {});
    void send(const void* data, std::size_t size, std::span<const int> fds = {});

    /// Receives one whole message; false at end of stream (every copy of the peer's end is closed
    /// and nothing is left; a message the peer did not finish is dropped). ProtocolError for a
    /// corrupt or oversized message (the channel is unusable afterwards), OSError otherwise.
    bool recv(ChannelMessage& out);
    /// The same, with the bytes going where `storage(announced, needed)` says, room growing as
    /// they arrive (see FdChannel::recv).
    bool recv(const std::function<char*(std::size_t announced, std::size_t needed)>& storage, std::vector<int>& fds);

    /// Waits up to `timeout_ms` (negative: for ever) until a message or end of stream can be
    /// read. True if recv() would not block.
    bool poll(int timeout_ms);

    /// A descriptor that polls readable while a message or end of stream is waiting: the socket
    /// for a ring-less end; otherwise an epoll descriptor (made on first use, owned by this end)
    /// that watches the socket and an eventfd this end keeps in step with the ring after every
    /// recv() and poll(). It may report readable spuriously; poll(0) then says false.
    int readiness_fd();

private:
    struct Ring;
    FdChannel socket_;
    std::unique_ptr<Ring> ring_;
};

}  // namespace zmp::transport
