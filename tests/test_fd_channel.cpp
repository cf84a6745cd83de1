// The fd channel's framing trusts no length a peer announces: a header is checked against the
// channel's limit before anything is set aside, and the room for a message grows only with the
// bytes that actually arrive. Real socket pairs, a real child process under an address-space
// limit.
#include <catch2/catch.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"
#include "zmp/transport/fd_channel.hpp"

using zmp::transport::ChannelMessage;
using zmp::transport::FdChannel;

namespace {

// The channel's header as it travels (fd_channel.cpp): size, descriptor count, magic.
struct RawHeader {
    std::uint64_t size;
    std::uint32_t nfds;
    std::uint32_t magic;
};
constexpr std::uint32_t kMagic = 0x7a6d7046;

void write_all(int fd, const void* data, std::size_t size) {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
        const ssize_t n = ::write(fd, p, size);
        REQUIRE(n > 0);
        p += n;
        size -= static_cast<std::size_t>(n);
    }
}

// Writes a header announcing `announced` bytes, then `sent` bytes of body, then closes.
void lie(FdChannel& writer, std::uint64_t announced, std::size_t sent) {
    const RawHeader header{announced, 0, kMagic};
    write_all(writer.fd(), &header, sizeof header);
    const std::string body(sent, 'x');
    write_all(writer.fd(), body.data(), body.size());
    writer.close();
}

// Caps this process's address space at 256 MiB above what it uses now: an allocation of 1 GiB
// then fails with std::bad_alloc instead of being granted untouched.
void cap_address_space() {
    std::ifstream status("/proc/self/status");
    std::string line;
    std::uint64_t vm_kb = 0;
    while (std::getline(status, line)) {
        if (line.rfind("VmSize:", 0) == 0) vm_kb = std::stoull(line.substr(7));
    }
    const rlim_t cap = static_cast<rlim_t>(vm_kb * 1024 + (std::uint64_t{256} << 20));
    const rlimit limit{cap, cap};
    ::setrlimit(RLIMIT_AS, &limit);
}

// Exit codes of the receiving child.
constexpr int kCutShort = 0;   // end of stream: the message cut short is dropped
constexpr int kAllocated = 2;  // std::bad_alloc: it tried to set aside what the header said
constexpr int kOtherError = 3;
constexpr int kNoError = 4;

}  // namespace

TEST_CASE("a header announcing 1 GiB followed by 10 bytes costs the receiver no allocation of its size") {
    auto reader_writer = FdChannel::pair();
    auto& reader = reader_writer.first;
    auto& writer = reader_writer.second;
    lie(writer, (std::uint64_t{1} << 30) - 1, 10);  // within the default limit
    const bool with_storage = GENERATE(false, true);
    const int code = test_util::in_child([&reader, with_storage] {
        cap_address_space();
        try {
            if (with_storage) {
                std::string bytes;
                std::vector<int> fds;
                if (!reader.recv(
                        [&](std::size_t, std::size_t needed) {
                            bytes.resize(needed);
                            return bytes.data();
                        },
                        fds))
                    return kCutShort;
            } else {
                ChannelMessage message;
                if (!reader.recv(message)) return kCutShort;
            }
            return kNoError;
        } catch (const std::bad_alloc&) {
            return kAllocated;
        } catch (...) {
            return kOtherError;
        }
    });
    CHECK(code == kCutShort);
}

TEST_CASE("storage is asked for room as bytes arrive, never for the announced size up front") {
    auto [reader, writer] = FdChannel::pair();
    lie(writer, std::uint64_t{1} << 29, 100000);
    std::vector<std::size_t> asked;
    std::string bytes;
    std::vector<int> fds;
    CHECK_FALSE(reader.recv(
        [&](std::size_t announced, std::size_t needed) {
            CHECK(announced == std::size_t{1} << 29);
            asked.push_back(needed);
            bytes.resize(needed);
            return bytes.data();
        },
        fds));
    REQUIRE_FALSE(asked.empty());
    CHECK(asked.front() == zmp::transport::kFirstRoom);
    // 100,000 bytes arrived: the room grew once, to twice the first.
    CHECK(asked.back() == 2 * zmp::transport::kFirstRoom);
    // A message cut short by the end of the stream is dropped, never delivered in part; the end stays.
    ChannelMessage again;
    CHECK_FALSE(reader.recv(again));
}

TEST_CASE("a header over the channel's limit is refused before its body is read") {
    auto [reader, writer] = FdChannel::pair();
    reader.set_max_message(4096);
    CHECK(reader.max_message() == 4096);
    lie(writer, 4097, 4097);
    ChannelMessage message;
    try {
        reader.recv(message);
        FAIL("no error");
    } catch (const zmp::ProtocolError& e) {
        CHECK(std::string(e.what()).find("exceeds the limit of 4096") != std::string::npos);
    }
    CHECK(message.capacity == 0);  // nothing was set aside
    // A sender is held to the same limit.
    auto [a, b] = FdChannel::pair();
    a.set_max_message(16);
    CHECK_THROWS_AS(a.send(std::string(17, 'y').data(), 17), zmp::ValueError);
}

TEST_CASE("large messages arrive whole as the room grows, into a message or a storage, reused or not") {
    auto reader_writer = FdChannel::pair();
    auto& reader = reader_writer.first;
    auto& writer = reader_writer.second;
    std::vector<std::string> sent;
    for (std::size_t size : {std::size_t{0}, std::size_t{1}, zmp::transport::kFirstRoom, zmp::transport::kFirstRoom + 1,
                             std::size_t{5} << 20, std::size_t{3} << 20}) {
        std::string m(size, '\0');
        for (std::size_t i = 0; i < size; ++i) m[i] = static_cast<char>((i * 7919) % 251);
        sent.push_back(std::move(m));
    }
    std::thread sender([&writer, &sent] {
        for (int round = 0; round < 2; ++round)
            for (const auto& m : sent) writer.send(m.data(), m.size());
    });
    ChannelMessage reused;  // grows once, then serves the rest from its room
    for (const auto& expected : sent) {
        REQUIRE(reader.recv(reused));
        CHECK(std::string(reused.data.get(), reused.size) == expected);
    }
    for (const auto& expected : sent) {
        std::string bytes;
        std::vector<int> fds;
        std::size_t last = 0;
        REQUIRE(reader.recv(
            [&](std::size_t announced, std::size_t needed) {
                CHECK(announced == expected.size());
                CHECK(needed >= last);
                last = needed;
                bytes.resize(needed);
                return bytes.data();
            },
            fds));
        CHECK(bytes == expected);
    }
    sender.join();
    writer.close();
    ChannelMessage end;
    CHECK_FALSE(reader.recv(end));
}
