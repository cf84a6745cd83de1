// A Manager served on an address (Manager::serve) and unrelated programs that connect to it
// (Manager::connect, tests/helpers/manager_peer.cpp): named objects reached from both sides,
// get_or_create racing across programs, a wrong key refused, a killed server reported as an error
// to its clients, and garbage at the manager's endpoint survived.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <random>
#include <string>
#include <thread>

#include "broker/client.hpp"
#include "broker/handle.hpp"
#include "broker/protocol.hpp"
#include "spawned.hpp"
#include "tcp_peers.hpp"
#include "zmp/authkey.hpp"
#include "zmp/errors.hpp"
#include "zmp/manager.hpp"
#include "zmp/remote.hpp"
#include "zmp/transport/codec.hpp"

using namespace std::chrono_literals;
using test_util::KeyDir;
using test_util::port_of;
using test_util::send_raw;
using test_util::Spawned;

namespace {

std::string line_of(Spawned& peer) {
    const auto line = peer.line_within(60s);
    return line ? *line : std::string("(nothing within 60 s)");
}

// manager_peer serving on a loopback port.
struct PeerServer {
    std::unique_ptr<Spawned> process;
    std::string address;

    explicit PeerServer(const std::string& keyfile) {
        process = std::make_unique<Spawned>(std::vector<std::string>{HELPER_manager_peer, "serve", keyfile});
        const std::string line = line_of(*process);
        const std::string prefix = "serving ";
        REQUIRE(line.rfind(prefix, 0) == 0);
        address = line.substr(prefix.size());
        REQUIRE(address.rfind("tcp://127.0.0.1:", 0) == 0);
    }
};

template <class T>
std::string packed(const T& value) {
    const msgpack::sbuffer out = zmp::transport::encode(value);
    return std::string(out.data(), out.size());
}

}  // namespace

TEST_CASE("Manager::serve: a program that connects with the key works on the published objects and names new ones") {
    KeyDir keys;
    auto manager = zmp::Manager::serve("tcp://127.0.0.1:0", keys.key);
    REQUIRE(manager.address().rfind("tcp://127.0.0.1:", 0) == 0);
    auto jobs = manager.Queue<int>();
    for (int i = 1; i <= 5; ++i) jobs.put(i);
    auto results = manager.dict<int, int>();
    manager.publish("jobs", jobs);
    manager.publish("results", results);
    manager.publish("done", manager.Event());
    CHECK(manager.names() == std::vector<std::string>{"done", "jobs", "results"});
    CHECK(manager.get<zmp::DictProxy<int, int>>("results") == results);

    Spawned client({HELPER_manager_peer, manager.address(), keys.keyfile, "work"});
    CHECK(line_of(client) == "missing: KeyError");
    CHECK(line_of(client) == "wrong type: TypeError");
    CHECK(line_of(client) == "worked");
    CHECK(client.wait() == 0);
    CHECK(manager.get<zmp::Event>("done").is_set());
    CHECK(results.copy() == std::map<int, int>{{1, 1}, {2, 4}, {3, 9}, {4, 16}, {5, 25}});
    // The client named a list; it outlives the client, held by the manager.
    REQUIRE(manager.contains("log"));
    CHECK(manager.get<zmp::ListProxy<std::string>>("log").copy() == std::vector<std::string>{"worked"});

    // Names are replaced, removed, and gone with the manager.
    manager.publish("results", manager.dict<int, int>());
    CHECK(manager.get<zmp::DictProxy<int, int>>("results").len() == 0);
    CHECK(results.len() == 5);  // the old dict lives on in its handles
    manager.unpublish("log");
    CHECK_FALSE(manager.contains("log"));
    CHECK_THROWS_AS(manager.unpublish("log"), zmp::KeyError);
    CHECK_THROWS_AS(manager.get<zmp::Lock>("jobs"), zmp::TypeError);
    manager.shutdown();
    CHECK_THROWS_AS(manager.get<zmp::Event>("done"), zmp::ProcessError);
}

TEST_CASE("get_or_create across programs: racing clients share one dict, and their increments are exact") {
    KeyDir keys;
    auto manager = zmp::Manager::serve("tcp://127.0.0.1:0", keys.key);
    constexpr int kClients = 4, kEach = 250;
    std::vector<std::unique_ptr<Spawned>> clients;
    for (int i = 0; i < kClients; ++i) {
        clients.push_back(std::make_unique<Spawned>(std::vector<std::string>{
            HELPER_manager_peer, manager.address(), keys.keyfile, "count", std::to_string(kEach)}));
    }
    for (auto& client : clients) {
        CHECK(line_of(*client) == "counted");
        CHECK(client->wait() == 0);
    }
    CHECK(manager.names() == std::vector<std::string>{"counts"});
    CHECK(manager.get<zmp::DictProxy<std::string, int>>("counts")["n"] == kClients * kEach);
    // Here too: the same dict, not a new one.
    CHECK(manager.get_or_create<zmp::DictProxy<std::string, int>>("counts").get("n") == kClients * kEach);
}

TEST_CASE(
    "Manager::connect: a wrong key is refused with AuthenticationError, a killed server's clients get ProcessError") {
    KeyDir keys;
    PeerServer server(keys.keyfile);
    CHECK_THROWS_AS(zmp::Manager::connect(server.address, zmp::generate_authkey(), 120s), zmp::AuthenticationError);

    auto manager = zmp::Manager::connect(server.address, keys.key);
    CHECK(manager.address() == server.address);
    auto jobs = manager.get<zmp::Queue<int>>("jobs");
    CHECK(jobs.get(60s) == 1);
    auto results = manager.get<zmp::DictProxy<int, int>>("results");
    results[7] = 49;
    // Objects this program makes live at the server's broker, and can be named there.
    auto mine = manager.list<int>({1, 2, 3});
    manager.publish("mine", mine);
    CHECK(manager.get<zmp::ListProxy<int>>("mine").slice(0, 2) == std::vector<int>{1, 2});
    // A connected program cannot shut the server's manager down: shutdown() lets go of it here.
    {
        auto second = zmp::Manager::connect(server.address, keys.key);
        second.shutdown();
        CHECK_THROWS_AS(second.get<zmp::Queue<int>>("jobs"), zmp::ProcessError);
    }
    CHECK(results.get(7) == 49);

    // The server is killed while a call waits for it, and while nothing does.
    for (int i = 0; i < 4; ++i) (void)jobs.get(60s);  // the queue is empty now
    std::thread killer([&] {
        std::this_thread::sleep_for(300ms);
        ::kill(server.process->pid, SIGKILL);
    });
    CHECK_THROWS_AS(jobs.get(60s), zmp::ProcessError);  // not Empty: that would take 60 s
    killer.join();
    CHECK(server.process->wait() == -SIGKILL);
    CHECK_THROWS_AS(results.get(7), zmp::ProcessError);
    using Results = zmp::DictProxy<int, int>;
    CHECK_THROWS_AS(manager.get<Results>("results"), zmp::ProcessError);
    CHECK_THROWS_AS(mine.append(4), zmp::ProcessError);
}

TEST_CASE("Manager::connect to a broker that serves no Manager raises ValueError") {
    KeyDir keys(zmp::current_authkey());
    const std::string bound = zmp::serve("tcp://127.0.0.1:0");
    Spawned client({HELPER_manager_peer, bound, keys.keyfile, "no-manager"});
    CHECK(line_of(client) == "no manager: ValueError");
    CHECK(client.wait() == 0);
}

TEST_CASE("garbage at the manager's endpoint and malformed name requests leave the manager serving, unchanged") {
    KeyDir keys;
    PeerServer server(keys.keyfile);
    std::mt19937 random(13);
    for (int i = 0; i < 100; ++i) {
        std::string bytes(static_cast<std::size_t>(random() % 2048), '\0');
        for (char& c : bytes) c = static_cast<char>(random());
        if (i % 4 == 0) bytes.insert(0, std::string("\xff\0\0\0\0\0\0\0\x01\x7f", 10));  // a ZMTP signature
        send_raw(port_of(server.address), bytes);
    }

    // Well-formed connections with the key, saying wrong things about names.
    auto manager = zmp::Manager::connect(server.address, keys.key);
    using namespace zmp::detail;
    using managed::Method;
    const auto to = [&](const ObjectHandle& object, Method method, std::vector<std::string> items, std::int64_t a = 0) {
        ManagedItems its;
        for (const auto& item : items) its.add_bytes(item);
        return managed_call(object, method, std::move(its), a);
    };
    const auto to_manager = [&](Method method, std::vector<std::string> items, std::int64_t a = 0) {
        return to(manager.handle(), method, std::move(items), a);
    };
    const std::string name = packed(std::string("x"));
    const std::string wire = packed(std::make_tuple(std::string("ipc://nowhere"), 1, 1, -1, std::string(), 0));
    // A manager's method sent to another object is refused.
    CHECK_THROWS_AS(to(manager.get<zmp::Event>("done").handle(), Method::name_get, {name}), zmp::ProtocolError);
    CHECK_THROWS_AS(to_manager(Method::name_get, {packed(7)}), zmp::ProtocolError);              // a name is a string
    CHECK_THROWS_AS(to_manager(Method::name_get, {packed(std::string())}), zmp::ProtocolError);  // not empty
    CHECK_THROWS_AS(to_manager(Method::name_get, {}), zmp::ProtocolError);
    CHECK_THROWS_AS(to_manager(Method::name_bind, {name, wire}), zmp::ProtocolError);
    CHECK_THROWS_AS(to_manager(Method::name_bind, {name, wire, packed(7)}), zmp::ProtocolError);
    CHECK_THROWS_AS(to_manager(Method::name_bind, {name, wire, packed(std::vector<int>{})}), zmp::ProtocolError);
    CHECK_THROWS_AS(to_manager(Method::name_bind, {name, wire, packed(std::vector<int>{-1})}), zmp::ProtocolError);
    // Objects that do not exist are refused with ValueError, and nothing is named.
    CHECK_THROWS_AS(to_manager(Method::name_bind, {name, wire, packed(std::vector<std::uint64_t>{1u << 30})}, 1),
                    zmp::ValueError);
    CHECK_THROWS_AS(to_manager(Method::publish, {}), zmp::ProtocolError);  // a connected manager does not publish
    CHECK_THROWS_AS(to_manager(Method::getitem, {name}), zmp::ProtocolError);
    CHECK_FALSE(manager.contains("x"));

    CHECK(manager.names() == std::vector<std::string>{"done", "jobs", "results"});
    CHECK(manager.get<zmp::Queue<int>>("jobs").get(60s) == 1);
    CHECK(::kill(server.process->pid, 0) == 0);
}
