// zmp::Pipe / Connection: Python's semantics, tested across real processes.
#include <catch2/catch.hpp>

#include <signal.h>

#include <map>
#include <thread>

#include "test_util.hpp"
#include "zmp/pipe.hpp"
#include "zmp/process.hpp"
#include "zmp/transport/codec.hpp"

using namespace std::chrono_literals;
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
