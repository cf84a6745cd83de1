#pragma once
// A message channel over one end of a Unix stream socket: the same-host fast path under Pipe and
// under the spawn / forkserver hand-off. Messages keep their boundaries (0-byte messages are
// messages), may be of any size up to a limit, and may carry file descriptors (SCM_RIGHTS).
// The kernel gives the end-of-stream semantics Python's Pipe has: EOF once every copy of the
// peer's end, in every process, is closed, including by the death of its holder.
//
// Threading: one thread may send while another receives; two concurrent senders (or receivers)
// on the same channel must be serialised by the caller.

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace zmp::transport {

/// Largest message a channel accepts unless told otherwise: 1 GiB.
inline constexpr std::uint64_t kDefaultMaxChannelMessage = std::uint64_t{1} << 30;

/// A received message: its bytes and the descriptors that came with it, which the receiver now
/// owns. Reusing one ChannelMessage for many recv() calls reuses its storage.
struct ChannelMessage {
    std::unique_ptr<char[]> data;
    std::size_t size = 0;
    std::size_t capacity = 0;
    std::vector<int> fds;

    /// Room for a message of `n` bytes (the storage a channel's recv() asks for).
    char* reserve(std::size_t n) {
        if (n > capacity || !data) {
            data.reset(new char[n > 0 ? n : 1]);
            capacity = n;
        }
        size = n;
        return data.get();
    }
};

class FdChannel {
public:
    /// Two connected ends (socketpair, close-on-exec).
    static std::pair<FdChannel, FdChannel> pair();

    FdChannel() = default;
    /// Adopts `fd`, a connected Unix stream socket.
    explicit FdChannel(int fd, std::uint64_t max_message = kDefaultMaxChannelMessage) noexcept
        : fd_(fd), max_message_(max_message) {}
    FdChannel(FdChannel&& other) noexcept;
    FdChannel& operator=(FdChannel&& other) noexcept;
    FdChannel(const FdChannel&) = delete;
    FdChannel& operator=(const FdChannel&) = delete;
    ~FdChannel();

    int fd() const noexcept { return fd_; }
    bool is_open() const noexcept { return fd_ >= 0; }
    /// Gives up ownership of the descriptor without closing it.
    int release() noexcept;
    void close() noexcept;

    /// Sends one message made of `parts` (gathered, not copied), with `fds` attached.
    /// Throws OSError (EPIPE when the peer is gone).
    void send(std::span<const iovec> parts, std::span<const int> fds = {});
    void send(const void* data, std::size_t size, std::span<const int> fds = {});

    /// Receives one whole message. Returns false at end of stream: the peer closed and nothing is
    /// left (a message it did not finish is dropped, never delivered in part). Throws
    /// ProtocolError for a corrupt header or a message over the limit (the channel is unusable
    /// afterwards), OSError for other failures.
    bool recv(ChannelMessage& out);

    /// The same, but the bytes go where `storage(size)` says: it is called once the size is
    /// known and returns room for exactly that many bytes (so a message can land in its final
    /// place without a copy). Descriptors are appended to `fds`.
    bool recv(const std::function<char*(std::size_t)>& storage, std::vector<int>& fds);

    /// Waits up to `timeout_ms` (negative: for ever) until a message or end of stream can be
    /// read. True if recv() would not block.
    bool poll(int timeout_ms) const;

private:
    int fd_ = -1;
    std::uint64_t max_message_ = kDefaultMaxChannelMessage;
    bool broken_ = false;
};

/// The sending side of an FdChannel for an event loop: messages go out with the channel's
/// framing, but a send never blocks — what the socket cannot take now waits here until the
/// loop sees the descriptor writable and calls flush().
class Outbox {
public:
    explicit Outbox(int fd) : fd_(fd) {}
    Outbox(const Outbox&) = delete;
    Outbox& operator=(const Outbox&) = delete;
    ~Outbox();
    /// Queues one message (its parts gathered, with duplicates of `fds` attached) and writes as
    /// much as the socket takes. Throws OSError (EPIPE when the peer is gone).
    void send(std::span<const iovec> parts, std::span<const int> fds = {});
    /// Writes what is queued; true when nothing is left.
    bool flush();
    bool empty() const noexcept { return pending_.size() == sent_; }
    std::size_t queued_bytes() const noexcept { return pending_.size() - sent_; }

private:
    struct Attached {
        std::size_t offset;    // where the message starts in pending_
        std::vector<int> fds;  // owned duplicates, closed once sent
    };
    int fd_;
    std::string pending_;
    std::size_t sent_ = 0;
    std::vector<Attached> attached_;
};

}  // namespace zmp::transport
