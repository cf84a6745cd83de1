// The shared-memory channel under Pipes (zmp/transport/shm_channel.hpp): what a reader finds in
// the ring and on the socket beside it, both writable by any process that holds the writer's end.
// The input: 8 bytes of the writer's published position (little-endian; odd first byte: taken as
// it is, even: kept within the ring, on a record boundary), 2 bytes saying how many of the
// following bytes fill the ring from its start, and what is left, written raw on the writer's
// socket. Then the writer's end closes.
// Contract: the reader returns whole messages within its limit, then false at end of stream, or
// raises ProtocolError (and only that) and raises it again on the next recv; it never asks for
// room beyond the limit, never returns descriptors nobody sent, never hangs (libFuzzer's
// -timeout catches that).
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "contract.hpp"
#include "shm_layout.hpp"
#include "zmp/errors.hpp"
#include "zmp/transport/shm_channel.hpp"

namespace {

namespace layout = zmp::transport::shm_layout;
using zmp::transport::ShmChannel;
using zmp_fuzz::expect;
using zmp_fuzz::violated;

constexpr std::uint64_t kLimit = 1 << 20;
constexpr std::size_t kRing = 4096;
constexpr std::size_t kMaxSocketBytes = 16 * 1024;  // fits the socket buffer in one write

std::uint64_t little_endian(const std::uint8_t* p, std::size_t n) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v |= std::uint64_t{p[i]} << (8 * i);
    return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 10) return 0;
    const std::uint64_t raw_tail = little_endian(data, 8);
    const std::size_t ring_bytes = std::min<std::size_t>({little_endian(data + 8, 2), kRing, size - 10});
    const std::uint8_t* socket_bytes = data + 10 + ring_bytes;
    const std::size_t socket_size = std::min(size - 10 - ring_bytes, kMaxSocketBytes);

    auto [writer, reader] = ShmChannel::pair({.ring_bytes = kRing, .max_message = kLimit});
    expect(writer.has_ring() && reader.has_ring(), "harness: a pair made on one host has no ring");
    {
        struct stat st {};
        if (::fstat(writer.segment_fd(), &st) != 0) violated("harness: fstat of the segment");
        const auto mapped = static_cast<std::size_t>(st.st_size);
        void* base = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_SHARED, writer.segment_fd(), 0);
        if (base == MAP_FAILED) violated("harness: mmap of the segment");
        char* bytes = static_cast<char*>(base);
        const int side = writer.segment_side();
        std::memcpy(bytes + layout::data_offset(kRing, side), data + 10, ring_bytes);
        auto& control = *reinterpret_cast<layout::Control*>(bytes + layout::control_offset(side));
        const std::uint64_t tail = (data[0] & 1) != 0 ? raw_tail : raw_tail % (kRing + 1) / 16 * 16;
        control.producer.tail.store(tail);
        ::munmap(base, mapped);
    }
    for (std::size_t done = 0; done < socket_size;) {
        const ssize_t n = ::send(writer.socket_fd(), socket_bytes + done, socket_size - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // the reader's buffer is full: what is written is the input
        done += static_cast<std::size_t>(n);
    }
    writer.close();

    std::size_t largest_asked = 0;
    std::vector<char> sink;
    std::vector<int> fds;
    auto storage = [&](std::size_t announced, std::size_t needed) {
        largest_asked = std::max({largest_asked, announced, needed});
        expect(largest_asked <= kLimit, "the reader asked for room beyond its limit: " + std::to_string(largest_asked));
        sink.resize(needed);
        return sink.data();
    };
    try {
        for (int messages = 0; reader.recv(storage, fds); ++messages) {
            expect(fds.empty(), "the reader returned descriptors nobody sent");
            expect(messages < 100000, "the reader returned more messages than the input can hold");
        }
    } catch (const zmp::ProtocolError&) {
        try {
            (void)reader.recv(storage, fds);
            violated("a reader that raised ProtocolError received again");
        } catch (const zmp::ProtocolError&) {
        }
    } catch (const std::exception& e) {
        violated(std::string("the reader raised something other than ProtocolError: ") + e.what());
    }
    for (int fd : fds) ::close(fd);
    return 0;
}
