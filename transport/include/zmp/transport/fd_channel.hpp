#pragma once
// A message channel over one end of a Unix stream socket: the same-host fast path under Pipe and
// under the spawn / forkserver hand-off. Messages keep their boundaries (0-byte messages are
// messages), may be of any size up to a limit, and may carry file descriptors (SCM_RIGHTS).
//
// The peer is trusted for nothing: a header announcing more than the channel's limit is a
// ProtocolError before anything is set aside, and what is set aside for a message grows with the
// bytes that actually arrive (from kFirstRoom, doubling), so a header that lies costs the
// receiver at most kFirstRoom. Each use picks the limit that fits it (max_message).
// The kernel gives the end-of-stream semantics Python's Pipe has: EOF once every copy of the
// peer's end, in every process, is closed, including by the death of its holder.
//
// Threading: one thread may send while another receives; two concurrent senders (or receivers)
// on the same channel must be serialised by the caller.

#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace zmp::transport {

/// Largest message a channel accepts unless told otherwise: 1 GiB (a Pipe's limit).
inline constexpr std::uint64_t kDefaultMaxChannelMessage = std::uint64_t{1} << 30;
/// What a receiver sets aside for a message before its bytes arrive; the room then doubles as
/// they do.
inline constexpr std::size_t kFirstRoom = 64 * 1024;

/// A received message: its bytes and the descriptors that came with it, which the receiver now
/// owns. Reusing one ChannelMessage for many recv() calls reuses its storage.
struct ChannelMessage {
    std::unique_ptr<char[]> data;
    std::size_t size = 0;
    std::size_t capacity = 0;
    std::vector<int> fds;

    /// Room for the first `n` bytes of the message being received, keeping those already in it:
    /// the storage a channel's recv() asks for, with a growing `n`, as a message's bytes arrive.
    char* grow(std::size_t n) {
        if (n > capacity || !data) {
            std::unique_ptr<char[]> grown(new char[n > 0 ? n : 1]);
            if (size > 0) std::memcpy(grown.get(), data.get(), std::min(size, n));
            data = std::move(grown);
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
    /// The largest message this end sends or accepts, in bytes.
    std::uint64_t max_message() const noexcept { return max_message_; }
    void set_max_message(std::uint64_t limit) noexcept { max_message_ = limit; }
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

    /// The same, but the bytes go where `storage` says, so that a message can land in its final
    /// place without a copy. storage(announced, needed) returns room for `needed` bytes that
    /// starts with the bytes written into the room it returned before (as std::string::resize
    /// keeps them); it is called with a growing `needed` as bytes arrive, up to `announced`, the
    /// size the header announces (already checked against the limit): decide with `announced`,
    /// allocate only `needed`. Descriptors are appended to `fds`.
    bool recv(const std::function<char*(std::size_t announced, std::size_t needed)>& storage, std::vector<int>& fds);

    /// Waits up to `timeout_ms` (negative: for ever) until a message or end of stream can be
    /// read. True if recv() would not block.
    bool poll(int timeout_ms) const;

private:
    /// Reads a header and its descriptors; nullopt at end of stream.
    std::optional<std::size_t> recv_header(std::vector<int>& fds);
    /// Reads a `size`-byte body into room that grows as it arrives (see recv(storage, fds));
    /// false at end of stream before its end (the part received is dropped).
    bool recv_body(std::size_t size, const std::function<char*(std::size_t, std::size_t)>& storage);

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
