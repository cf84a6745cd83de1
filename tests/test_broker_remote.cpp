// The broker across hosts, over loopback tcp: zmp::serve in the root and zmp-broker on tcp with
// CURVE, programs that join with zmp::connect and use the handles they are given, the death of a
// remote client freeing what it held, wrong keys refused at once, garbage at the endpoint survived,
// and zmp-broker's command line. (Across real "hosts", cut off without a FIN: test_broker_multihost.)
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <tuple>

#include "broker/client.hpp"
#include "broker/handle.hpp"
#include "broker/protocol.hpp"
#include "run_leftovers.hpp"
#include "runtime/zmq_context.hpp"
#include "spawned.hpp"
#include "tcp_peers.hpp"
#include "test_util.hpp"
#include "zmp/authkey.hpp"
#include "zmp/errors.hpp"
#include "zmp/queue.hpp"
#include "zmp/remote.hpp"
#include "zmp/sync.hpp"
#include "zmp/transport/codec.hpp"
#include "zmp/transport/security.hpp"
#include "zmp/transport/zsocket.hpp"

using namespace std::chrono_literals;
using run_leftovers::eventually;
using test_util::hex;
using test_util::KeyDir;
using test_util::port_of;
using test_util::send_raw;
using test_util::Spawned;

namespace {

// zmp-broker serving tcp on a loopback port it picks; `endpoint` is where it listens.
struct TcpBroker {
    std::unique_ptr<Spawned> process;
    std::string endpoint;

    explicit TcpBroker(const std::vector<std::string>& options) {
        std::vector<std::string> argv{ZMP_BROKER_EXE, "tcp://127.0.0.1:0"};
        argv.insert(argv.end(), options.begin(), options.end());
        process = std::make_unique<Spawned>(argv);
        const std::string line = process->line();
        const std::string prefix = "zmp-broker: serving ";
        REQUIRE(line.rfind(prefix, 0) == 0);
        endpoint = line.substr(prefix.size());
        REQUIRE(endpoint.rfind("tcp://127.0.0.1:", 0) == 0);
    }
    bool alive() const { return ::kill(process->pid, 0) == 0; }
};

std::string helper_line(Spawned& helper) {
    const auto line = helper.line_within(60s);
    return line ? *line : std::string("(nothing within 60 s)");
}

}  // namespace

TEST_CASE("zmp::serve: a program that joins over tcp uses the handles it is given, and they work here too") {
    KeyDir keys(zmp::current_authkey());
    const std::string bound = zmp::serve("tcp://127.0.0.1:0");
    REQUIRE(bound.rfind("tcp://127.0.0.1:", 0) == 0);
    zmp::Lock lock;
    zmp::Event event;
    zmp::Queue<std::string> queue;
    CHECK(lock.handle().ref().slot == nullptr);  // a broker that serves tcp keeps the state itself
    lock.acquire();
    Spawned remote({HELPER_remote_client, bound, keys.keyfile, "handles",
                    hex(zmp::transport::encode(std::make_tuple(lock, event, queue)))});
    REQUIRE(event.wait(60s));  // it found the lock held, and said so
    lock.release();
    CHECK(queue.get(60s) == "from remote");
    CHECK(helper_line(remote) == "handles ok");
    CHECK(remote.wait() == 0);
}

TEST_CASE("zmp-broker on tcp: a joined program's lock, semaphore unit and barrier wait are freed when it dies") {
    KeyDir keys;
    TcpBroker broker({"--authkey-file", keys.keyfile});
    Spawned maker({HELPER_remote_client, broker.endpoint, keys.keyfile, "make"});
    const std::string objects = helper_line(maker);
    REQUIRE(objects.rfind("objects ", 0) == 0);
    REQUIRE(helper_line(maker) == "held");

    zmp::connect(broker.endpoint, keys.key);
    const std::string bytes = test_util::unhex(objects.substr(8));
    // Not a structured binding: clang 14 cannot capture one in a lambda.
    auto held =
        zmp::transport::decode_as<std::tuple<zmp::Lock, zmp::Semaphore, zmp::Barrier>>(bytes.data(), bytes.size());
    zmp::Lock& lock = std::get<0>(held);
    zmp::Semaphore& semaphore = std::get<1>(held);
    zmp::Barrier& barrier = std::get<2>(held);
    CHECK_FALSE(lock.acquire(false));
    CHECK_FALSE(semaphore.acquire(false));
    CHECK(eventually([&] { return barrier.n_waiting() == 1; }, 60s));

    ::kill(maker.pid, SIGKILL);
    CHECK(maker.wait() == -SIGKILL);
    REQUIRE(lock.acquire(60s));
    CHECK(lock.owner_died());
    CHECK(semaphore.acquire(60s));
    CHECK(eventually([&] { return barrier.broken(); }, 60s));
    lock.release();
    // Objects made here live at that broker too, and work for a forked child (a client of its own).
    zmp::Lock mine;
    CHECK(mine.handle().ref().link->endpoint() == broker.endpoint);
    mine.acquire();
    CHECK(test_util::in_child([mine]() mutable { return mine.acquire(false) ? 1 : 0; }) == 0);
    mine.release();
    CHECK(test_util::in_child([mine]() mutable { return mine.acquire(60s) ? 0 : 1; }) == 0);
    CHECK(broker.alive());
}

TEST_CASE("a wrong authkey is refused with AuthenticationError, not after a timeout, and the broker serves on") {
    KeyDir keys;
    TcpBroker broker({"--authkey-file", keys.keyfile});
    const auto start = test_util::Clock::now();
    CHECK_THROWS_AS(zmp::connect(broker.endpoint, zmp::generate_authkey(), 120s), zmp::AuthenticationError);
    CHECK_THROWS_AS(zmp::connect_insecure(broker.endpoint, 120s), zmp::AuthenticationError);
    // Not a timeout (that would be 120 s and a ProcessError); how fast it is, is the bench's business.
    INFO("refused twice in " << test_util::seconds_since(start) << " s");
    CHECK(test_util::seconds_since(start) < 110);
    // A program on another host does the same.
    KeyDir other_keys;
    Spawned other({HELPER_remote_client, broker.endpoint, other_keys.keyfile, "refused"});
    CHECK(helper_line(other) == "refused");
    CHECK(other.wait() == 0);
    // The right key is admitted afterwards.
    zmp::connect(broker.endpoint, keys.key);
    zmp::Semaphore semaphore(2);
    CHECK(semaphore.acquire(60s));
    CHECK(semaphore.get_value() == 1);
    CHECK(broker.alive());
}

TEST_CASE("garbage at the tcp endpoint (raw bytes, wrong handshakes, bad requests) leaves the broker serving") {
    KeyDir keys;
    TcpBroker curve({"--authkey-file", keys.keyfile});
    TcpBroker plain({"--insecure"});
    std::mt19937 random(12);
    for (int i = 0; i < 200; ++i) {
        std::string bytes(static_cast<std::size_t>(random() % 4096), '\0');
        for (char& c : bytes) c = static_cast<char>(random());
        if (i % 4 == 0) bytes.insert(0, std::string("\xff\0\0\0\0\0\0\0\x01\x7f", 10));  // a ZMTP signature
        send_raw(port_of(curve.endpoint), bytes);
        send_raw(port_of(plain.endpoint), bytes);
    }
    // ZMTP that is well formed but says nothing the broker understands, on the plain endpoint.
    {
        using namespace zmp::detail::broker;
        zmq::socket_t raw = zmp::transport::open_socket(zmp::detail::zmq_context(), zmq::socket_type::dealer);
        raw.connect(plain.endpoint);
        for (int i = 0; i < 1000; ++i) {
            std::string junk(static_cast<std::size_t>(random() % 256), '\0');
            for (char& c : junk) c = static_cast<char>(random());
            raw.send(zmq::buffer(junk), zmq::send_flags::none);
        }
        msgpack::sbuffer out;
        encode_request(out, Op::hello, 0, 1, {::getpid(), 1});  // no incarnation: refused over tcp
        raw.send(zmq::buffer(out.data(), out.size()), zmq::send_flags::none);
        out.clear();
        encode_request(out, Op::hello, 0, 2, {::getpid(), 1, -5});
        raw.send(zmq::buffer(out.data(), out.size()), zmq::send_flags::none);
        std::vector<zmq::message_t> frames;
        for (std::uint64_t want = 1; want <= 2; ++want) {
            REQUIRE(zmp::transport::recv_message(raw, frames, 2, 60s));
            const Reply r = decode_reply(frames[0].data(), frames[0].size());
            CHECK(r.rid == want);
            CHECK(r.status == Status::protocol_error);
        }
    }
    CHECK(curve.alive());
    CHECK(plain.alive());
    zmp::connect(curve.endpoint, keys.key);
    zmp::Queue<int> queue;
    queue.put(42);
    CHECK(queue.get(60s) == 42);
}

TEST_CASE("when a tcp broker dies, a joined program's blocked call raises ProcessError instead of hanging") {
    KeyDir keys;
    TcpBroker broker({"--authkey-file", keys.keyfile});
    zmp::connect(broker.endpoint, keys.key);
    zmp::Lock lock;
    zmp::Event started;
    lock.acquire();
    std::thread killer([&] {
        (void)started.wait(60s);
        std::this_thread::sleep_for(200ms);  // the acquire below is (most likely) blocked by now
        ::kill(broker.process->pid, SIGKILL);
    });
    started.set();
    CHECK_THROWS_AS(zmp::Lock(lock).acquire(), zmp::ProcessError);
    killer.join();
}

TEST_CASE("zmp-broker's command line: --help, bad flags exit 2, tcp needs a key or --insecure (which warns)") {
    const std::string exe = ZMP_BROKER_EXE;
    const auto help = test_util::run_command(exe + " --help");
    CHECK(help.status == 0);
    CHECK(help.out.find("--authkey-file") != std::string::npos);
    CHECK(help.out.find("--insecure") != std::string::npos);
    CHECK(test_util::run_command(exe + " --bogus ipc:///tmp/x 2>/dev/null").status == 2);
    CHECK(test_util::run_command(exe + " 2>/dev/null").status == 2);
    const auto no_key = test_util::run_command(exe + " tcp://127.0.0.1:0 2>&1");
    CHECK(no_key.status == 2);
    CHECK(no_key.out.find("--authkey-file") != std::string::npos);
    CHECK(test_util::run_command(exe + " tcp://127.0.0.1:0 --authkey-file /nonexistent/key 2>/dev/null").status == 2);
    CHECK(test_util::run_command(exe + " udp://x 2>/dev/null").status == 2);
    // --insecure serves, after a warning; SIGTERM ends it with 0.
    const auto insecure = test_util::run_command(
        "(" + exe + " tcp://127.0.0.1:0 --insecure 2>&1 & pid=$!; sleep 1; kill -TERM $pid; wait $pid; echo exit=$?)");
    CHECK(insecure.out.find("warning") != std::string::npos);
    CHECK(insecure.out.find("zmp-broker: serving tcp://127.0.0.1:") != std::string::npos);
    CHECK(insecure.out.find("exit=0") != std::string::npos);
}

TEST_CASE("zmp::serve is refused once the broker runs with shared memory, and outside the root") {
    CHECK(test_util::in_child([] {
              try {
                  (void)zmp::serve("tcp://127.0.0.1:0");
              } catch (const zmp::ProcessError&) {
                  return 0;
              }
              return 1;
          }) == 0);
    zmp::Lock lock;  // the broker starts, with its fast path
    CHECK_THROWS_AS(zmp::serve("tcp://127.0.0.1:0"), zmp::ValueError);
    CHECK_THROWS_AS(zmp::connect("ipc:///tmp/not-tcp", zmp::current_authkey()), zmp::ValueError);
}
