// zmp::transport::ShmChannel, the shared-memory channel under Pipe: white-box tests with real
// processes, including garbage written into its segment by whoever maps it, as a hostile process
// of the same user could.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "shm_layout.hpp"
#include "test_util.hpp"
#include "zmp/errors.hpp"
#include "zmp/process.hpp"
#include "zmp/transport/shm_channel.hpp"

using namespace std::chrono_literals;
using test_util::pattern;
using zmp::transport::ChannelMessage;
using zmp::transport::ShmChannel;
using zmp::transport::ShmChannelOptions;
namespace layout = zmp::transport::shm_layout;

namespace {

void send(ShmChannel& ch, const std::string& s) { ch.send(s.data(), s.size()); }

std::string receive(ShmChannel& ch) {
    ChannelMessage m;
    REQUIRE(ch.recv(m));
    return std::string(m.data.get(), m.size);
}

// One recv() whose exceptions reach the caller.
bool recv_once(ShmChannel& ch) {
    ChannelMessage m;
    return ch.recv(m);
}

// The segment as any process that holds its descriptor can map it.
struct Mapped {
    explicit Mapped(int fd) {
        struct stat st {};
        REQUIRE(::fstat(fd, &st) == 0);
        size = static_cast<std::size_t>(st.st_size);
        base = static_cast<char*>(::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
        REQUIRE(base != MAP_FAILED);
        ring_bytes = reinterpret_cast<layout::SegmentHeader*>(base)->ring_bytes;
    }
    ~Mapped() { ::munmap(base, size); }
    layout::Control& control(int ring) {
        return *reinterpret_cast<layout::Control*>(base + layout::control_offset(ring));
    }
    char* data(int ring) { return base + layout::data_offset(ring_bytes, ring); }
    // Appends raw bytes to ring `ring` at its tail and publishes them, as a writer would.
    void publish(int ring, const void* bytes, std::size_t n) {
        auto& tail = control(ring).producer.tail;
        const std::uint64_t at = tail.load();
        for (std::size_t i = 0; i < n; ++i)
            data(ring)[(at + i) & (ring_bytes - 1)] = static_cast<const char*>(bytes)[i];
        tail.store(at + layout::pad16(n));
    }
    char* base;
    std::size_t size;
    std::size_t ring_bytes;
};

// Receives what a scribbled ring holds once its writer has closed: a message within the limit,
// end of stream, or ProtocolError — never a crash, a hang, or an allocation over the limit.
void expect_survives(ShmChannel& reader, std::uint64_t limit) {
    std::size_t largest_asked = 0;
    std::vector<int> fds;
    try {
        while (reader.recv(
            [&](std::size_t announced, std::size_t needed) {
                largest_asked = std::max({largest_asked, announced, needed});
                static std::vector<char> sink;
                sink.resize(needed);
                return sink.data();
            },
            fds)) {
        }
    } catch (const zmp::ProtocolError&) {
        CHECK_THROWS_AS(reader.recv([](std::size_t, std::size_t) -> char* { return nullptr; }, fds),
                        zmp::ProtocolError);
    }
    CHECK(largest_asked <= limit);
    CHECK(fds.empty());
}

}  // namespace

TEST_CASE("a pair carries messages both ways, empty ones included, and keeps them in order") {
    auto [a, b] = ShmChannel::pair();
    REQUIRE(a.has_ring());
    REQUIRE(a.segment_side() == 0);
    REQUIRE(b.segment_side() == 1);
    for (int i = 0; i < 1000; ++i) send(a, std::to_string(i));
    send(a, "");
    for (int i = 0; i < 1000; ++i) CHECK(receive(b) == std::to_string(i));
    CHECK(receive(b).empty());
    CHECK_FALSE(b.poll(0));
    send(b, "back");
    CHECK(a.poll(0));
    CHECK(receive(a) == "back");
}

TEST_CASE("messages around the ring's and the chunk's sizes cross processes intact") {
    const std::size_t ring = 64 << 10;  // small, so that large messages wrap many times
    auto here_there = ShmChannel::pair({.ring_bytes = ring});
    auto& here = here_there.first;
    auto& there = here_there.second;
    zmp::Process echo([&] {
        here.close();
        ChannelMessage m;
        while (there.recv(m)) there.send(m.data.get(), m.size);
    });
    echo.start();
    there.close();
    std::vector<std::size_t> sizes{
        0,         1,        15,   16,       17,           ring / 4 - 1,         ring / 4, ring / 4 + 1, ring - 33,
        ring - 32, ring - 1, ring, ring + 1, 3 * ring + 7, std::size_t{16} << 20};
    unsigned seed = 1;
    for (std::size_t size : sizes) {
        const std::string m = pattern(size, seed++);
        send(here, m);
        CHECK(receive(here) == m);
    }
    here.close();
    echo.join();
    CHECK(echo.exitcode() == 0);
}

TEST_CASE("garbage written into the ring is a ProtocolError, never a crash or a huge allocation") {
    const std::uint64_t limit = 1 << 20;
    auto make = [&] { return ShmChannel::pair({.ring_bytes = 4096, .max_message = limit}); };

    SECTION("a record longer than what was published") {
        auto [a, b] = make();
        Mapped m(a.segment_fd());
        const layout::Record r{layout::kChunk, layout::kFirst | layout::kLast, 4000, 4000};
        m.publish(0, &r, sizeof r);
        CHECK_THROWS_AS(recv_once(b), zmp::ProtocolError);
        CHECK_THROWS_AS(recv_once(b), zmp::ProtocolError);  // and unusable afterwards
    }
    SECTION("a message over the limit is refused before anything is allocated") {
        auto [a, b] = make();
        Mapped m(a.segment_fd());
        const layout::Record r{layout::kChunk, layout::kFirst, 16, std::uint64_t{1} << 40};
        m.publish(0, &r, sizeof r);
        a.close();
        expect_survives(b, limit);
    }
    SECTION("the writer's position beyond the ring") {
        auto [a, b] = make();
        Mapped m(a.segment_fd());
        m.control(0).producer.tail.store(1 << 20);
        CHECK_THROWS_AS(recv_once(b), zmp::ProtocolError);
    }
    SECTION("a position that is not on a record boundary") {
        auto [a, b] = make();
        Mapped m(a.segment_fd());
        m.control(0).producer.tail.store(24);
        CHECK_THROWS_AS(recv_once(b), zmp::ProtocolError);
    }
    SECTION("an unknown record type, and a chunk without its message's start") {
        auto [a, b] = make();
        Mapped m(a.segment_fd());
        const layout::Record unknown{99, 0, 0, 0};
        m.publish(0, &unknown, sizeof unknown);
        CHECK_THROWS_AS(recv_once(b), zmp::ProtocolError);
        auto [c, d] = make();
        Mapped n(c.segment_fd());
        const layout::Record orphan{layout::kChunk, layout::kLast, 0, 5};
        n.publish(0, &orphan, sizeof orphan);
        CHECK_THROWS_AS(recv_once(d), zmp::ProtocolError);
    }
    SECTION("the reader's position moved under a writer") {
        auto [a, b] = make();
        Mapped m(a.segment_fd());
        send(a, "x");
        m.control(0).consumer.head.store(std::uint64_t{1} << 40);
        CHECK_THROWS_AS(send(a, std::string(4000, 'y')), zmp::ProtocolError);
    }
    SECTION("a byte on the socket that is neither a doorbell nor a frame") {
        auto [a, b] = make();
        const char junk = 'j';
        REQUIRE(::send(a.socket_fd(), &junk, 1, 0) == 1);
        CHECK_THROWS_AS(recv_once(b), zmp::ProtocolError);
    }
    SECTION("random bytes over the ring and its positions") {
        std::mt19937_64 random(42);
        for (int round = 0; round < 300; ++round) {
            auto [a, b] = make();
            Mapped m(a.segment_fd());
            for (std::size_t i = 0; i < m.ring_bytes; ++i) m.data(0)[i] = static_cast<char>(random());
            if (round % 3 == 0) {  // plausible headers, where the checks have to be careful
                for (std::size_t at = 0; at + 16 <= m.ring_bytes; at += 16 * (1 + random() % 8)) {
                    layout::Record r{static_cast<std::uint16_t>(1 + random() % 2),
                                     static_cast<std::uint16_t>(random() % 4),
                                     static_cast<std::uint32_t>(random() % 5000), random() % (2 * limit)};
                    std::memcpy(m.data(0) + at, &r, sizeof r);
                }
            }
            const std::uint64_t tail = round % 2 == 0 ? random() % (m.ring_bytes + 1) / 16 * 16 : random();
            m.control(0).producer.tail.store(tail);
            a.close();
            expect_survives(b, limit);
        }
    }
}

TEST_CASE("a writer that died inside a message is followed by an abort: the reader drops what it had") {
    auto a_b = ShmChannel::pair({.ring_bytes = 4096});
    auto& a = a_b.first;
    auto& b = a_b.second;
    const bool after_marker = GENERATE(false, true);
    // A writer that takes the lock, publishes the first chunk of a three-chunk message (and, in the
    // second case, the marker that sends the rest to the socket) and dies holding the lock, as one
    // SIGKILLed there would: its robust mutex then reports the death to the next writer.
    const int code = test_util::in_child([&] {
        Mapped m(a.segment_fd());
        auto& producer = m.control(0).producer;
        if (pthread_mutex_lock(&producer.lock) != 0) return 1;
        std::string record(sizeof(layout::Record), '\0');
        const layout::Record r{layout::kChunk, layout::kFirst, 100, 300};
        std::memcpy(record.data(), &r, sizeof r);
        record += std::string(100, 'p');
        producer.in_message.store(1);
        m.publish(0, record.data(), record.size());
        if (after_marker) {
            const layout::Record marker{layout::kToSocket, 0, 0, 0};
            producer.marker_pending.store(1);
            m.publish(0, &marker, sizeof marker);
        }
        ::_exit(0);  // with the lock held
        return 0;
    });
    REQUIRE(code == 0);
    send(a, "after the abort");  // this writer takes the dead one's lock and repairs the stream
    CHECK(receive(b) == "after the abort");
    send(a, "and the ring again");
    CHECK(receive(b) == "and the ring again");
}

TEST_CASE("a reader that died holding the lock between messages leaves the end usable") {
    auto a_b = ShmChannel::pair();
    auto& a = a_b.first;
    auto& b = a_b.second;
    zmp::Process waiter([&] {
        a.close();
        ChannelMessage m;
        (void)b.recv(m);  // sleeps holding the reader's lock until killed
    });
    waiter.start();
    std::this_thread::sleep_for(200ms);
    waiter.kill();
    waiter.join();
    send(a, "still here");
    CHECK(receive(b) == "still here");
}

TEST_CASE("several processes writing large messages on one end never interleave them") {
    auto reader_writer = ShmChannel::pair({.ring_bytes = 64 << 10});
    auto& reader = reader_writer.first;
    auto& writer = reader_writer.second;
    constexpr int kWriters = 4, kEach = 20;
    std::vector<zmp::Process> writers;
    for (int w = 0; w < kWriters; ++w) {
        writers.emplace_back([&, w] {
            reader.close();
            for (int i = 0; i < kEach; ++i) send(writer, std::to_string(w) + ":" + pattern(100000 + i, w * 100 + i));
        });
        writers.back().start();
    }
    writer.close();
    int count = 0;
    ChannelMessage m;
    while (reader.recv(m)) {
        const std::string s(m.data.get(), m.size);
        const auto colon = s.find(':');
        REQUIRE(colon != std::string::npos);
        const int w = std::stoi(s.substr(0, colon));
        const std::string body = s.substr(colon + 1);
        const int i = static_cast<int>(body.size()) - 100000;
        REQUIRE((i >= 0 && i < kEach));
        CHECK(body == pattern(body.size(), w * 100 + i));
        ++count;
    }
    CHECK(count == kWriters * kEach);
    for (auto& p : writers) {
        p.join();
        CHECK(p.exitcode() == 0);
    }
}

TEST_CASE("a sender and a receiver thread on each end of a duplex pair") {
    auto [a, b] = ShmChannel::pair({.ring_bytes = 16 << 10});
    constexpr int kCount = 200;
    auto sender = [](ShmChannel& ch, unsigned seed) {
        for (int i = 0; i < kCount; ++i) send(ch, pattern(1 + (i * 7919) % 50000, seed + i));
    };
    auto receiver = [](ShmChannel& ch, unsigned seed, int& good) {
        for (int i = 0; i < kCount; ++i) good += receive(ch) == pattern(1 + (i * 7919) % 50000, seed + i);
    };
    int good_a = 0, good_b = 0;
    std::thread t1(sender, std::ref(a), 1000), t2(sender, std::ref(b), 5000);
    std::thread t3(receiver, std::ref(b), 1000, std::ref(good_b)), t4(receiver, std::ref(a), 5000, std::ref(good_a));
    t1.join();
    t2.join();
    t3.join();
    t4.join();
    CHECK(good_a == kCount);
    CHECK(good_b == kCount);
}

TEST_CASE("descriptors travel through the socket beside the ring, in order with the messages") {
    auto [a, b] = ShmChannel::pair();
    int p[2];
    REQUIRE(::pipe(p) == 0);
    send(a, "before");
    a.send("with", 4, std::span<const int>(&p[1], 1));
    send(a, "after");
    ::close(p[1]);
    CHECK(receive(b) == "before");
    ChannelMessage m;
    REQUIRE(b.recv(m));
    CHECK(std::string(m.data.get(), m.size) == "with");
    REQUIRE(m.fds.size() == 1);
    REQUIRE(::write(m.fds[0], "!", 1) == 1);
    ::close(m.fds[0]);
    char c = 0;
    REQUIRE(::read(p[0], &c, 1) == 1);
    CHECK(c == '!');
    ::close(p[0]);
    CHECK(receive(b) == "after");
}

TEST_CASE("an end without a segment is the plain socket channel") {
    auto [x, y] = zmp::transport::FdChannel::pair();
    ShmChannel a(std::move(x)), b(std::move(y));
    CHECK_FALSE(a.has_ring());
    CHECK(a.segment_fd() == -1);
    send(a, "over the socket");
    CHECK(b.readiness_fd() == b.socket_fd());
    CHECK(receive(b) == "over the socket");
    a.close();
    ChannelMessage m;
    CHECK_FALSE(b.recv(m));
}

TEST_CASE("a descriptor that is not a channel segment is refused") {
    auto [x, y] = zmp::transport::FdChannel::pair();
    const int plain = ::memfd_create("not-a-channel", MFD_CLOEXEC);
    REQUIRE(::ftruncate(plain, 1 << 20) == 0);
    CHECK_THROWS_AS(ShmChannel(std::move(x), plain, 0), zmp::ProtocolError);  // not sealed
    CHECK(::fcntl(plain, F_GETFD) == -1);                                     // and closed
    const int sealed = ::memfd_create("not-a-channel", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    REQUIRE(::ftruncate(sealed, 1 << 20) == 0);
    REQUIRE(::fcntl(sealed, F_ADD_SEALS, F_SEAL_SHRINK) == 0);
    CHECK_THROWS_AS(ShmChannel(std::move(y), sealed, 1), zmp::ProtocolError);  // no magic
}

TEST_CASE("the readiness descriptor is readable exactly while a message or end of stream waits") {
    auto a_b = ShmChannel::pair();
    auto& a = a_b.first;
    auto& b = a_b.second;
    const int fd = b.readiness_fd();
    auto readable = [fd] {
        pollfd p{fd, POLLIN, 0};
        return ::poll(&p, 1, 0) == 1;
    };
    CHECK_FALSE(readable());
    send(a, "one");
    send(a, "two");
    CHECK(readable());
    CHECK(receive(b) == "one");
    CHECK(readable());
    CHECK(receive(b) == "two");
    CHECK_FALSE(readable());
    // Messages that arrive while the reader is spinning ring no doorbell; the reader's own
    // bookkeeping keeps the descriptor right.
    std::thread late([&] {
        std::this_thread::sleep_for(50ms);
        send(a, "three");
        send(a, "four");
    });
    CHECK(receive(b) == "three");
    late.join();
    CHECK(readable());
    CHECK(receive(b) == "four");
    CHECK_FALSE(readable());
    a.close();
    CHECK(readable());
    CHECK(b.poll(0));
    ChannelMessage m;
    CHECK_FALSE(b.recv(m));
}
