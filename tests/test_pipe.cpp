// zmp::Pipe / Connection: Python's semantics, tested across real processes. Every test runs twice:
// over the shared-memory channel (the default), and over the socket pair alone (ZMP_PIPE=socket,
// the path of connections that are not both on one host).
#include <catch2/catch.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <atomic>
#include <map>
#include <new>
#include <thread>

#include "test_util.hpp"
#include "zmp/pipe.hpp"
#include "zmp/process.hpp"
#include "zmp/transport/codec.hpp"
#include "zmp/transport/shm_channel.hpp"

using namespace std::chrono_literals;
using test_util::pattern;
using test_util::seconds_since;
using Clock = std::chrono::steady_clock;

namespace {

// A child that echoes every byte message back until EOF. As in Python, a forked child inherits
// every descriptor, the parent's end included; it closes that copy so that it can see EOF.
zmp::Process start_echo(zmp::Connection parent_end, zmp::Connection child_end) {
    zmp::Process p([c = child_end, inherited = parent_end]() mutable {
        inherited.close();
        try {
            for (;;) c.send_bytes(c.recv_bytes());
        } catch (const zmp::EOFError&) {
        }
    });
    p.start();
    return p;
}

}  // namespace

TEST_CASE("typed values go both ways through a duplex pipe") {
    auto [here, there] = zmp::Pipe();
    zmp::Process p([c = there]() mutable {
        auto v = c.recv<std::map<std::string, std::vector<int>>>();
        v["added"] = {42};
        c.send(v);
        c.send(std::make_tuple(42, std::optional<int>{}, std::string("hello")));
    });
    p.start();
    there.close();
    here.send(std::map<std::string, std::vector<int>>{{"a", {1, 2}}, {"b", {}}});
    auto back = here.recv<std::map<std::string, std::vector<int>>>();
    CHECK(back.size() == 3);
    CHECK(back["added"] == std::vector<int>{42});
    auto [n, none, s] = here.recv<std::tuple<int, std::optional<int>, std::string>>();
    CHECK(n == 42);
    CHECK_FALSE(none.has_value());
    CHECK(s == "hello");
    p.join();
    CHECK(p.exitcode() == 0);
}

TEST_CASE("byte messages keep their boundaries, empty messages are messages") {
    auto [a, b] = zmp::Pipe();
    b.send_bytes("a");
    b.send_bytes("");
    b.send_bytes("b");
    b.send_bytes("cd");
    CHECK(a.poll());
    CHECK(a.recv_bytes() == "a");
    CHECK(a.poll());
    CHECK(a.recv_bytes().empty());
    CHECK(a.recv_bytes() == "b");
    CHECK(a.recv_bytes() == "cd");
    CHECK_FALSE(a.poll());
}

TEST_CASE("16 MiB round-trips through a child") {
    auto [here, there] = zmp::Pipe();
    zmp::Process echo = start_echo(here, there);
    there.close();
    std::string big(16 << 20, '\0');
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 2654435761u >> 13);
    here.send_bytes(big);
    CHECK(here.recv_bytes() == big);
    here.close();
    echo.join();
    CHECK(echo.exitcode() == 0);
}

TEST_CASE("poll: false at once when empty, waits for its timeout, true when data or EOF is there") {
    auto [a, b] = zmp::Pipe();
    CHECK_FALSE(a.poll());
    CHECK_FALSE(a.poll(-1s));
    auto start = Clock::now();
    CHECK_FALSE(a.poll(0.2s));
    CHECK(seconds_since(start) >= 0.19);
    b.send(1);
    CHECK(a.poll(zmp::forever));
    CHECK(a.recv<int>() == 1);
    b.close();
    CHECK(a.poll());  // EOF counts as readable
    CHECK_THROWS_AS(a.recv<int>(), zmp::EOFError);
}

TEST_CASE("EOF once the child closes its end, and after it is SIGKILLed") {
    SECTION("close") {
        auto [here, there] = zmp::Pipe();
        zmp::Process p([c = there]() mutable {
            c.send(std::string("last words"));
            c.close();
            std::this_thread::sleep_for(100s);
        });
        p.start();
        there.close();
        CHECK(here.recv<std::string>() == "last words");
        CHECK_THROWS_AS(here.recv<std::string>(), zmp::EOFError);
        CHECK_THROWS_AS(here.recv_bytes(), zmp::EOFError);
        p.kill();
        p.join();
    }
    SECTION("SIGKILL") {
        auto [here, there] = zmp::Pipe();
        zmp::Process p([c = there]() mutable {
            c.send(1);
            std::this_thread::sleep_for(100s);
        });
        p.start();
        there.close();
        CHECK(here.recv<int>() == 1);
        p.kill();
        CHECK(here.poll(30s));
        CHECK_THROWS_AS(here.recv<int>(), zmp::EOFError);
        p.join();
        CHECK(p.exitcode() == -SIGKILL);
    }
}

TEST_CASE("Pipe(false) gives a reader and a writer, wrong directions are errors") {
    auto [reader, writer] = zmp::Pipe(false);
    CHECK(reader.readable());
    CHECK_FALSE(reader.writable());
    CHECK(writer.writable());
    CHECK_FALSE(writer.readable());
    CHECK_THROWS_AS(reader.send(1), zmp::OSError);
    CHECK_THROWS_AS(reader.send_bytes("x"), zmp::OSError);
    CHECK_THROWS_AS(writer.recv<int>(), zmp::OSError);
    CHECK_THROWS_AS(writer.recv_bytes(), zmp::OSError);
    CHECK_THROWS_AS(writer.poll(), zmp::OSError);
    writer.send(5);
    CHECK(reader.recv<int>() == 5);
    auto [c1, c2] = zmp::Pipe();
    CHECK(c1.readable());
    CHECK(c1.writable());
}

TEST_CASE("a closed connection raises on every use, close is idempotent and shared by copies") {
    auto [a, b] = zmp::Pipe();
    zmp::Connection copy = a;
    CHECK_FALSE(a.closed());
    a.close();
    a.close();
    CHECK(a.closed());
    CHECK(copy.closed());
    CHECK_THROWS_AS(copy.send(1), zmp::OSError);
    CHECK_THROWS_AS(a.recv<int>(), zmp::OSError);
    CHECK_THROWS_AS(a.poll(), zmp::OSError);
    CHECK_THROWS_AS(a.fileno(), zmp::OSError);
    zmp::Connection empty;
    CHECK(empty.closed());
    CHECK_THROWS_AS(empty.send(1), zmp::OSError);
}

TEST_CASE("send_bytes with offset and size, and its argument errors") {
    auto [a, b] = zmp::Pipe();
    const std::string data = "abcdefgh";
    b.send_bytes(data, 2, 3);
    CHECK(a.recv_bytes() == "cde");
    b.send_bytes(data, 5);
    CHECK(a.recv_bytes() == "fgh");
    b.send_bytes(data, data.size());
    CHECK(a.recv_bytes().empty());
    CHECK_THROWS_AS(b.send_bytes(data, 9), zmp::ValueError);
    CHECK_THROWS_AS(b.send_bytes(data, 4, 5), zmp::ValueError);
}

TEST_CASE("recv_bytes with a max length, and recv_bytes_into") {
    auto [a, b] = zmp::Pipe();
    b.send_bytes("hello");
    std::array<std::byte, 16> buffer{};
    CHECK(a.recv_bytes_into(buffer, 3) == 5);
    CHECK(std::string(reinterpret_cast<const char*>(buffer.data()) + 3, 5) == "hello");

    b.send_bytes(std::string(32, 'z'));
    try {
        a.recv_bytes_into(buffer);
        FAIL("no BufferTooShort");
    } catch (const zmp::BufferTooShort& e) {
        CHECK(e.message() == std::string(32, 'z'));
    }
    CHECK_THROWS_AS(a.recv_bytes_into(buffer, 17), zmp::ValueError);

    b.send_bytes(std::string(100, 'y'));
    CHECK_THROWS_AS(a.recv_bytes(10), zmp::ProtocolError);
    CHECK(a.closed());  // unusable afterwards, as in Python
}

TEST_CASE("a value of the wrong type is a ProtocolError") {
    auto [a, b] = zmp::Pipe();
    b.send(std::string("text"));
    CHECK_THROWS_AS(a.recv<int>(), zmp::ProtocolError);
    b.send_bytes("\xc1");  // not msgpack at all
    CHECK_THROWS_AS(a.recv<int>(), zmp::ProtocolError);
    b.send(3);  // the stream is still in step
    CHECK(a.recv<int>() == 3);
}

TEST_CASE("a Connection sent through a Pipe keeps working in the other process") {
    auto [here, there] = zmp::Pipe();
    zmp::Process p([c = there]() mutable {
        auto passed = c.recv<zmp::Connection>();
        passed.send(std::string("through the passed end"));
        c.send(passed.recv<int>() + 1);
    });
    p.start();
    there.close();
    auto [mine, theirs] = zmp::Pipe();
    here.send(theirs);
    theirs.close();
    CHECK(mine.recv<std::string>() == "through the passed end");
    mine.send(41);
    CHECK(here.recv<int>() == 42);
    p.join();
    CHECK(p.exitcode() == 0);
}

TEST_CASE("a Connection cannot be packed where no descriptor can travel") {
    auto [a, b] = zmp::Pipe();
    CHECK_THROWS_AS(zmp::transport::encode(a), zmp::ValueError);
    // A message that brought a descriptor the receiver did not ask for does not leak it.
    auto [x, y] = zmp::Pipe();
    b.send(std::make_tuple(1, y));
    CHECK_THROWS_AS(a.recv<int>(), zmp::ProtocolError);
}

TEST_CASE("two threads sending on one end never interleave their messages") {
    auto ends = zmp::Pipe();  // named, not bound: clang 14 cannot capture a structured binding
    auto& a = ends.first;
    auto& b = ends.second;
    const std::string one(100000, '1'), two(100000, '2');
    auto sender = [&](const std::string& text) {
        for (int i = 0; i < 50; ++i) b.send_bytes(text);
    };
    std::thread t1(sender, one), t2(sender, two);
    int ones = 0, twos = 0;
    for (int i = 0; i < 100; ++i) {
        std::string m = a.recv_bytes();
        if (m == one)
            ++ones;
        else if (m == two)
            ++twos;
    }
    t1.join();
    t2.join();
    CHECK(ones == 50);
    CHECK(twos == 50);
}

TEST_CASE("a child's send to a closed peer raises instead of killing it with SIGPIPE") {
    auto [a, b] = zmp::Pipe();
    a.close();
    CHECK_THROWS_AS(b.send_bytes("nobody listens"), zmp::OSError);
}

namespace {

// A counter that a forked child and its parent both see.
struct SharedCounter {
    SharedCounter()
        : page(::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)),
          value(new (page) std::atomic<long>(0)) {}
    ~SharedCounter() { ::munmap(page, 4096); }
    void* page;
    std::atomic<long>* value;
};

bool fd_readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
}

}  // namespace

TEST_CASE("messages of 0 B, 1 B, around the ring's size and 16 MiB round-trip intact") {
    auto [here, there] = zmp::Pipe();
    zmp::Process echo = start_echo(here, there);
    there.close();
    const std::size_t ring = zmp::transport::kDefaultRingBytes;
    unsigned seed = 7;
    for (std::size_t size : {std::size_t{0}, std::size_t{1}, ring - 1, ring, ring + 1, std::size_t{16} << 20}) {
        const std::string m = pattern(size, seed++);
        here.send_bytes(m);
        CHECK(here.recv_bytes() == m);
    }
    here.close();
    echo.join();
    CHECK(echo.exitcode() == 0);
}

TEST_CASE("a writer SIGKILLed in the middle of a message: the reader gets EOF, never part of it") {
    auto [here, there] = zmp::Pipe();
    SharedCounter started;
    zmp::Process writer([c = there, h = here, &started]() mutable {
        h.close();
        c.send_bytes("complete");
        started.value->store(1);
        c.send_bytes(std::string(64 << 20, 'x'));  // far more than the ring and the socket hold
        std::this_thread::sleep_for(100s);
    });
    writer.start();
    there.close();
    const auto deadline = Clock::now() + 30s;
    while (started.value->load() == 0 && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
    REQUIRE(started.value->load() == 1);
    CHECK(here.recv_bytes() == "complete");
    REQUIRE(here.poll(30s));             // the big message has begun
    std::this_thread::sleep_for(100ms);  // and the writer is blocked inside it
    writer.kill();
    writer.join();
    CHECK_THROWS_AS(here.recv_bytes(), zmp::EOFError);
    CHECK_THROWS_AS(here.recv_bytes(), zmp::EOFError);
    CHECK(here.poll());
}

TEST_CASE("a writer whose reader does not read blocks, and resumes when the reader reads") {
    auto [reader, writer] = zmp::Pipe(false);
    constexpr long kMessages = 64;  // 4 MiB: far more than the ring and the socket buffer
    SharedCounter sent;
    zmp::Process p([w = writer, r = reader, &sent]() mutable {
        r.close();
        for (long i = 0; i < kMessages; ++i) {
            w.send_bytes(pattern(64 << 10, static_cast<unsigned>(i)));
            sent.value->store(i + 1);
        }
    });
    p.start();
    writer.close();
    // Wait until the writer stops making progress: it is blocked, not finished.
    long seen = -1;
    const auto deadline = Clock::now() + 60s;
    while (Clock::now() < deadline) {
        std::this_thread::sleep_for(300ms);
        const long now = sent.value->load();
        if (now == seen && now > 0) break;
        seen = now;
    }
    CHECK(seen > 0);
    CHECK(seen < kMessages);
    CHECK(p.is_alive());
    for (long i = 0; i < kMessages; ++i) CHECK(reader.recv_bytes() == pattern(64 << 10, static_cast<unsigned>(i)));
    p.join();
    CHECK(p.exitcode() == 0);
    CHECK(sent.value->load() == kMessages);
    CHECK_THROWS_AS(reader.recv_bytes(), zmp::EOFError);
}

TEST_CASE("a process blocked in recv() for a second uses almost no CPU") {
    // A resource bound, not a speed claim: the wait spins a bounded few microseconds, then sleeps
    // in the kernel. 50 ms of CPU over a second of waiting would mean it kept spinning or polling.
    auto [here, there] = zmp::Pipe();
    zmp::Process sleeper([c = there, h = here]() mutable {
        h.close();
        (void)c.recv_bytes();  // the first message: both sides are warm
        c.send_bytes("ready");
        rusage before{}, after{};
        ::getrusage(RUSAGE_THREAD, &before);
        (void)c.recv_bytes();
        ::getrusage(RUSAGE_THREAD, &after);
        auto micros = [](const rusage& u) {
            return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1000000L + u.ru_utime.tv_usec + u.ru_stime.tv_usec;
        };
        c.send(micros(after) - micros(before));
    });
    sleeper.start();
    there.close();
    here.send_bytes("warm up");
    CHECK(here.recv_bytes() == "ready");
    std::this_thread::sleep_for(1s);
    here.send_bytes("wake up");
    const long cpu_us = here.recv<long>();
    CHECK(cpu_us < 50000);
    sleeper.join();
}

TEST_CASE("fileno() is readable while a message or EOF waits, for select() on many connections") {
    auto a_b = zmp::Pipe();
    auto& a = a_b.first;
    auto& b = a_b.second;
    auto c_d = zmp::Pipe();
    auto& c = c_d.first;
    auto& d = c_d.second;
    zmp::Process p([b, d, a, c]() mutable {
        a.close();
        c.close();
        (void)b.recv_bytes();
        d.send_bytes("on the second");
        (void)b.recv_bytes();
        b.send_bytes("on the first");
        b.send_bytes("and again");
    });
    p.start();
    b.close();
    d.close();
    CHECK_FALSE(fd_readable(a.fileno()));
    CHECK_FALSE(fd_readable(c.fileno()));
    a.send_bytes("go");
    pollfd both[2] = {{a.fileno(), POLLIN, 0}, {c.fileno(), POLLIN, 0}};
    REQUIRE(::poll(both, 2, 30000) == 1);
    CHECK(both[1].revents != 0);
    CHECK(c.recv_bytes() == "on the second");
    a.send_bytes("go again");
    pollfd first{a.fileno(), POLLIN, 0};
    REQUIRE(::poll(&first, 1, 30000) == 1);
    CHECK(a.recv_bytes() == "on the first");
    p.join();
    CHECK(fd_readable(a.fileno()));  // "and again" is waiting
    CHECK(a.recv_bytes() == "and again");
    CHECK(fd_readable(a.fileno()));  // and then end of stream
    CHECK(a.poll());
    CHECK_THROWS_AS(a.recv_bytes(), zmp::EOFError);
}

TEST_CASE("processes holding copies of one end take turns reading it") {
    auto [reader, writer] = zmp::Pipe(false);
    writer.send(1);
    CHECK(reader.recv<int>() == 1);
    writer.send(2);
    zmp::Process child([r = reader]() mutable { zmp::exit(r.recv<int>() == 2 ? 0 : 1); });
    child.start();
    child.join();
    CHECK(child.exitcode() == 0);
    writer.send(3);
    CHECK(reader.recv<int>() == 3);
    // A copy killed while it waited leaves the end to the others.
    zmp::Process waiter([r = reader]() mutable { (void)r.recv<int>(); });
    waiter.start();
    std::this_thread::sleep_for(200ms);
    waiter.kill();
    waiter.join();
    writer.send(4);
    CHECK(reader.recv<int>() == 4);
}
