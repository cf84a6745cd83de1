// Python's multiprocessing.connection in zmp: Listener and Client over tcp and ipc (children that
// connect, send and leave; wrong keys refused at once while the Listener goes on; garbage at its
// port; peers that die seen as EOF), and zmp::wait over Pipes, Listener/Client Connections and
// process sentinels. (Across real "hosts": test_connection_multihost.)
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "tcp_peers.hpp"
#include "test_util.hpp"
#include "zmp/authkey.hpp"
#include "zmp/connection.hpp"
#include "zmp/errors.hpp"
#include "zmp/pipe.hpp"
#include "zmp/process.hpp"

using namespace std::chrono_literals;

namespace {

// A private directory for ipc paths, removed afterwards.
struct IpcDir : test_util::ScratchDir {
    IpcDir() : ScratchDir("zmp-test-conn") {}
};

// The two families a Listener serves, as Python's tests run each family.
std::string listen_address(const IpcDir& dir, bool tcp) {
    return tcp ? std::string("tcp://127.0.0.1:0") : dir.path("listener.sock");
}

}  // namespace

TEST_CASE("a child connects with Client and talks to the Connection accept() returns, over tcp and ipc") {
    const bool tcp = GENERATE(true, false);
    INFO((tcp ? "tcp" : "ipc"));
    IpcDir dir;
    const zmp::Authkey key = zmp::generate_authkey();
    zmp::Listener listener(listen_address(dir, tcp), key);
    const std::string address = listener.address();
    CHECK(address.rfind(tcp ? "tcp://127.0.0.1:" : "ipc://", 0) == 0);
    CHECK_FALSE(listener.last_accepted().has_value());
    zmp::Process child([address, key] {
        zmp::Connection c = zmp::Client(address, key, 60s);
        c.send(std::string("hello"));
        c.send_bytes("");
        c.send_bytes("raw");
        const auto numbers = c.recv<std::vector<int>>();
        c.send(static_cast<int>(numbers.size()));
        c.send_bytes(c.recv_bytes());  // a big one, echoed
        c.close();
    });
    child.start();
    zmp::Connection conn = listener.accept();
    CHECK(conn.readable());
    CHECK(conn.writable());
    CHECK(listener.last_accepted() == std::optional<std::string>(tcp ? "127.0.0.1" : ""));
    CHECK(conn.recv<std::string>() == "hello");
    CHECK(conn.poll(60s));
    CHECK(conn.recv_bytes() == "");
    CHECK(conn.recv_bytes() == "raw");
    conn.send(std::vector<int>{1, 2, 3});
    CHECK(conn.recv<int>() == 3);
    std::string big(16 << 20, '\0');
    for (std::size_t i = 0; i < big.size(); i += 4093) big[i] = static_cast<char>(i);
    conn.send_bytes(big);
    CHECK(conn.recv_bytes() == big);
    CHECK_THROWS_AS(conn.recv_bytes(), zmp::EOFError);  // the child closed its end
    child.join();
    CHECK(child.exitcode() == 0);
}

TEST_CASE("a Client that sent and left before accept() is still accepted: its messages, then EOF") {
    const bool tcp = GENERATE(true, false);
    IpcDir dir;
    zmp::Listener listener(listen_address(dir, tcp));  // this run's authkey, on both sides
    const std::string address = listener.address();
    zmp::Process child([address] {
        zmp::Connection c = zmp::Client(address, 60s);
        c.send(std::string("sent before accept"));
    });
    child.start();
    child.join();
    CHECK(child.exitcode() == 0);
    zmp::Connection conn = listener.accept();
    CHECK(conn.recv<std::string>() == "sent before accept");
    CHECK_THROWS_AS(conn.recv<std::string>(), zmp::EOFError);
}

TEST_CASE("a Client with another authkey gets AuthenticationError at once, and the Listener goes on listening") {
    const bool tcp = GENERATE(true, false);
    IpcDir dir;
    const zmp::Authkey key = zmp::generate_authkey();
    zmp::Listener listener(listen_address(dir, tcp), key);
    const auto start = test_util::Clock::now();
    CHECK_THROWS_AS(zmp::Client(listener.address(), zmp::generate_authkey(), 120s), zmp::AuthenticationError);
    // Not the 120 s connect timeout (how fast it is belongs to the bench).
    CHECK(test_util::seconds_since(start) < 110);
    CHECK_FALSE(listener.accept(zmp::Seconds(0.2)).has_value());  // nothing was accepted
    zmp::Connection client = zmp::Client(listener.address(), key, 60s);
    zmp::Connection served = listener.accept();
    client.send_bytes("after the refusal");
    CHECK(served.recv_bytes() == "after the refusal");
}

TEST_CASE("garbage at a Listener's tcp port is refused and the Listener goes on serving") {
    const zmp::Authkey key = zmp::generate_authkey();
    zmp::Listener listener("tcp://127.0.0.1:0", key);
    std::mt19937 random(7);
    for (int i = 0; i < 100; ++i) {
        std::string bytes(static_cast<std::size_t>(random() % 4096), '\0');
        for (char& c : bytes) c = static_cast<char>(random());
        if (i % 4 == 0) bytes.insert(0, std::string("\xff\0\0\0\0\0\0\0\x01\x7f", 10));  // a ZMTP signature
        test_util::send_raw(test_util::port_of(listener.address()), bytes);
    }
    zmp::Connection client = zmp::Client(listener.address(), key, 60s);
    zmp::Connection served = listener.accept();
    served.send(42);
    CHECK(client.recv<int>() == 42);
}

TEST_CASE("Listener: address in use, accept after close, close waking accept, accepted Connections outliving it") {
    const bool tcp = GENERATE(true, false);
    IpcDir dir;
    auto listener = std::make_unique<zmp::Listener>(listen_address(dir, tcp));
    const std::string address = listener->address();
    // Python: a second Listener on the same address is OSError (ZeroMQ would take an ipc path over).
    try {
        zmp::Listener second(tcp ? address : dir.path("listener.sock"));
        FAIL("a second Listener bound " << address);
    } catch (const zmp::OSError& e) {
        CHECK(e.code() == EADDRINUSE);
    }
    zmp::Connection client = zmp::Client(address, 60s);
    zmp::Connection served = listener->accept();
    std::thread closer([&] {
        std::this_thread::sleep_for(200ms);
        listener->close();
    });
    CHECK_THROWS_AS(listener->accept(), zmp::OSError);  // woken by close()
    closer.join();
    CHECK(listener->closed());
    CHECK_THROWS_AS(listener->accept(), zmp::OSError);
    listener.reset();
    // The accepted Connection works on; a new Client is refused.
    served.send_bytes("still here");
    CHECK(client.recv_bytes() == "still here");
    client.send_bytes("me too");
    CHECK(served.recv_bytes() == "me too");
    CHECK_THROWS_AS(zmp::Client(address, 1s), zmp::OSError);
    // Closing one end is EOF at the other, both ways.
    served.close();
    CHECK(client.poll(60s));
    CHECK_THROWS_AS(client.recv_bytes(), zmp::EOFError);
}

TEST_CASE("the death of the process at the other end is EOF, on the Listener's side and on the Client's") {
    const bool tcp = GENERATE(true, false);
    IpcDir dir;
    zmp::Listener listener(listen_address(dir, tcp));
    const std::string address = listener.address();
    // A client that connects and then hangs until killed.
    zmp::Process client_side([address] {
        zmp::Connection c = zmp::Client(address, 60s);
        c.send_bytes("connected");
        for (;;) ::pause();
    });
    client_side.start();
    zmp::Connection served = listener.accept();
    CHECK(served.recv_bytes() == "connected");
    client_side.kill();
    client_side.join();
    CHECK(served.poll(60s));
    CHECK_THROWS_AS(served.recv_bytes(), zmp::EOFError);

    // A listener process that accepts and is then killed.
    auto [ready_reader, ready_writer] = zmp::Pipe(false);
    zmp::Process listener_side([path = dir.path("other.sock"), tcp, w = ready_writer]() mutable {
        zmp::Listener other(tcp ? "tcp://127.0.0.1:0" : path);
        w.send(other.address());
        zmp::Connection c = other.accept();
        c.send_bytes("accepted");
        for (;;) ::pause();
    });
    listener_side.start();
    ready_writer.close();
    zmp::Connection client = zmp::Client(ready_reader.recv<std::string>(), 60s);
    CHECK(client.recv_bytes() == "accepted");
    listener_side.kill();
    listener_side.join();
    CHECK(client.poll(60s));
    CHECK_THROWS_AS(client.recv_bytes(), zmp::EOFError);
}

TEST_CASE("Client errors: nobody listening is OSError ECONNREFUSED after the timeout, bad addresses are ValueError") {
    IpcDir dir;
    try {
        (void)zmp::Client(dir.path("nobody.sock"), 300ms);
        FAIL("connected to nobody");
    } catch (const zmp::OSError& e) {
        CHECK(e.code() == ECONNREFUSED);
    }
    CHECK_THROWS_AS(zmp::Client("udp://1.2.3.4:5", 300ms), zmp::ValueError);
    CHECK_THROWS_AS(zmp::Listener("inproc://x"), zmp::ValueError);
    CHECK_THROWS_AS(zmp::Listener(""), zmp::ValueError);
    CHECK_THROWS_AS(zmp::Listener("/" + std::string(200, 'x')), zmp::ValueError);
}

TEST_CASE("wait: 4 children each send 10 messages and close, and waiting and receiving collects all 40") {
    // Python's TestWait.test_wait, over Pipes and over Listener/Client Connections at once.
    IpcDir dir;
    zmp::Listener listener("tcp://127.0.0.1:0");
    const std::string address = listener.address();
    std::vector<zmp::Connection> readers;
    std::vector<zmp::Process> children;
    for (int i = 0; i < 4; ++i) {
        const bool piped = i % 2 == 0;
        auto [r, w] = zmp::Pipe(false);
        zmp::Process p([w = w, i, piped, address]() mutable {
            zmp::Connection out = piped ? w : zmp::Client(address, 60s);
            for (int k = 0; k < 10; ++k) out.send(i * 100 + k);
            out.close();
            w.close();
        });
        p.start();
        w.close();
        readers.push_back(piped ? r : listener.accept());
        children.push_back(std::move(p));
    }
    std::multiset<int> got;
    while (!readers.empty()) {
        for (const zmp::Connection& ready : zmp::wait(readers, zmp::Seconds(60))) {
            zmp::Connection c = ready;
            try {
                got.insert(c.recv<int>());
            } catch (const zmp::EOFError&) {
                readers.erase(std::find(readers.begin(), readers.end(), c));
            }
        }
    }
    std::multiset<int> expected;
    for (int i = 0; i < 4; ++i)
        for (int k = 0; k < 10; ++k) expected.insert(i * 100 + k);
    CHECK(got == expected);
    for (auto& p : children) {
        p.join();
        CHECK(p.exitcode() == 0);
    }
}

TEST_CASE("wait: timeouts, a negative timeout, sentinels beside Connections, several ready at once") {
    auto [a, a_peer] = zmp::Pipe();
    auto [b, b_peer] = zmp::Pipe();
    auto start = test_util::Clock::now();
    CHECK(zmp::wait({a, b}, zmp::Seconds(0.3)).empty());
    CHECK(test_util::seconds_since(start) >= 0.29);
    CHECK(zmp::wait({a, b}, zmp::Seconds(-1)).empty());

    zmp::Process p([] { std::this_thread::sleep_for(300ms); });
    p.start();
    const auto ready = zmp::wait({a, p.sentinel()}, zmp::Seconds(60));
    REQUIRE(ready.size() == 1);
    CHECK(std::get<int>(ready[0]) == p.sentinel());
    p.join();

    a_peer.send(1);
    b_peer.send(2);
    const auto both = zmp::wait({a, b, p.sentinel()}, zmp::Seconds(60));
    REQUIRE(both.size() == 3);
    CHECK(std::get<zmp::Connection>(both[0]) == a);
    CHECK(std::get<zmp::Connection>(both[1]) == b);
    CHECK(std::get<int>(both[2]) == p.sentinel());
    // EOF counts as ready.
    zmp::Connection c = a;
    (void)c.recv<int>();
    a_peer.close();
    CHECK(zmp::wait(std::vector<zmp::Connection>{a}, zmp::Seconds(60)).size() == 1);
    CHECK_THROWS_AS(a.recv<int>(), zmp::EOFError);
    // A closed Connection is an error, as in Python.
    b.close();
    CHECK_THROWS_AS(zmp::wait({b}, zmp::Seconds(0)), zmp::OSError);
}
