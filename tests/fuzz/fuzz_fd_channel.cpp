// The fd-channel framing (zmp/transport/fd_channel.hpp), which carries Pipes and the spawn and
// forkserver hand-offs: the input is what the other end of a socket pair wrote before closing.
// Contract: FdChannel::recv returns whole messages, then false at end of stream (dropping a last
// message the peer did not finish, and nothing else), or raises ProtocolError (and only that) and
// stays unusable; the messages it returned, framed again by FdChannel::send, are exactly the bytes
// they were read from.
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "contract.hpp"
#include "zmp/errors.hpp"
#include "zmp/transport/fd_channel.hpp"

namespace {

using zmp::ProtocolError;
using zmp::transport::ChannelMessage;
using zmp::transport::FdChannel;
using zmp_fuzz::expect;
using zmp_fuzz::violated;

// A limit of its own (the constructor's argument), small enough that a header announcing the
// largest message costs little: with the default 1 GiB, every lying header would cost a 1 GiB
// allocation and most of the run's time.
constexpr std::uint64_t kLimit = 1 << 20;
// Larger inputs would not fit in the socket buffer in one write.
constexpr std::size_t kMaxInput = 64 * 1024;

void write_all(int fd, const std::uint8_t* data, std::size_t size) {
    while (size > 0) {
        const ssize_t n = ::write(fd, data, size);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) violated(std::string("harness: write to socket pair: ") + std::strerror(errno));
        data += n;
        size -= static_cast<std::size_t>(n);
    }
}

// The bytes FdChannel::send puts on the wire for `message`.
std::string framed(const ChannelMessage& message) {
    auto [in, out] = FdChannel::pair();
    in.send(message.data.get(), message.size);
    in.close();
    std::string bytes;
    char chunk[4096];
    for (;;) {
        const ssize_t n = ::read(out.fd(), chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) violated(std::string("harness: read from socket pair: ") + std::strerror(errno));
        if (n == 0) break;
        bytes.append(chunk, static_cast<std::size_t>(n));
    }
    return bytes;
}

// Whether `rest`, what is left of the input after the messages received, is one message the peer
// did not finish (or nothing): a header cut short, or a sound header whose body is cut short.
bool unfinished_message(const std::uint8_t* rest, std::size_t n) {
    constexpr std::size_t kHeader = 16;  // size (8 bytes), descriptor count (4), magic (4)
    if (n < kHeader) return true;
    std::uint64_t announced = 0;
    std::memcpy(&announced, rest, sizeof announced);
    return announced <= kLimit && n - kHeader < announced;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > kMaxInput) return 0;
    int ends[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0) violated("harness: socketpair failed");
    FdChannel channel(ends[0], kLimit);
    write_all(ends[1], data, size);
    ::close(ends[1]);

    std::size_t consumed = 0;  // input bytes accounted for by the messages received so far
    ChannelMessage message;
    for (;;) {
        bool got = false;
        try {
            got = channel.recv(message);
        } catch (const ProtocolError&) {
            try {
                channel.recv(message);
                violated("recv succeeded on a channel after a framing error");
            } catch (const ProtocolError&) {
            }
            break;
        } catch (const std::exception& e) {
            violated(std::string("recv raised something other than ProtocolError: ") + e.what());
        }
        if (!got) {
            expect(unfinished_message(data + consumed, size - consumed),
                   "end of stream reported with " + std::to_string(size - consumed) +
                       " input bytes that are not a message cut short");
            break;
        }
        expect(message.fds.empty(), "recv returned descriptors that nobody sent");
        expect(message.size <= kLimit, "recv returned a message over the channel's limit");
        const std::string frame = framed(message);
        expect(consumed + frame.size() <= size && std::memcmp(frame.data(), data + consumed, frame.size()) == 0,
               "a received message, framed again, differs from the bytes it came from");
        consumed += frame.size();
    }
    return 0;
}
