// The Manager (zmp/manager.hpp): every proxy operation and the exceptions that cross back, atomic
// increments from many processes, proxies travelling (every start method, messages, Pool tasks),
// shutdown, the owner's death and the broker's, and garbage sent to the broker about its objects.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "broker/client.hpp"
#include "broker/handle.hpp"
#include "broker/protocol.hpp"
#include "runtime/run.hpp"
#include "test_util.hpp"
#include "zmp/context.hpp"
#include "zmp/manager.hpp"
#include "zmp/pipe.hpp"
#include "zmp/pool.hpp"
#include "zmp/process.hpp"
#include "zmp/shared_memory.hpp"

extern char** environ;

using namespace std::chrono_literals;
using test_util::in_child;
using Clock = std::chrono::steady_clock;

namespace {

using IntList = std::vector<int>;

}  // namespace

// ---- dict --------------------------------------------------------------------------------------

TEST_CASE("dict: every Python operation, with KeyError where Python raises it") {
    zmp::Manager manager;
    auto d = manager.dict<std::string, int>();
    CHECK(d.len() == 0);
    d.set("a", 1);
    d["b"] = 2;
    d.set("c", 3);
    CHECK(d.len() == 3);
    CHECK(d.getitem("a") == 1);
    CHECK(static_cast<int>(d["b"]) == 2);
    CHECK(d.get("c") == std::optional<int>(3));
    CHECK(d.get("zz") == std::nullopt);
    CHECK(d.get("zz", 9) == 9);
    CHECK_THROWS_AS(d.getitem("zz"), zmp::KeyError);
    CHECK_THROWS_WITH(static_cast<int>(d["zz"]), Catch::Contains("zz"));
    CHECK(d.contains("a"));
    CHECK_FALSE(d.contains("zz"));
    // Insertion order, as Python's dict; a new value keeps its key's place.
    d.set("a", 10);
    CHECK(d.keys() == std::vector<std::string>{"a", "b", "c"});
    CHECK(d.values() == IntList{10, 2, 3});
    CHECK(d.items() == std::vector<std::pair<std::string, int>>{{"a", 10}, {"b", 2}, {"c", 3}});
    d.del("b");
    CHECK_THROWS_AS(d.del("b"), zmp::KeyError);
    CHECK(d.keys() == std::vector<std::string>{"a", "c"});
    d.update(std::map<std::string, int>{{"x", 7}, {"y", 8}});
    d.update({{"c", 30}, {"z", 9}});
    CHECK(d.copy() == std::map<std::string, int>{{"a", 10}, {"c", 30}, {"x", 7}, {"y", 8}, {"z", 9}});
    CHECK(d.pop("x") == 7);
    CHECK_THROWS_AS(d.pop("x"), zmp::KeyError);
    CHECK(d.pop("x", -1) == -1);
    CHECK(d.setdefault("c", 0) == 30);
    CHECK(d.setdefault("n", 5) == 5);
    CHECK(d.getitem("n") == 5);
    CHECK(d.popitem() == std::pair<std::string, int>{"n", 5});  // the last inserted
    CHECK(d.len() == 4);
    d.clear();
    CHECK(d.len() == 0);
    CHECK_THROWS_AS(d.popitem(), zmp::KeyError);
}

TEST_CASE("dict beyond Python: get_many, set_many, increment, compare_and_set, update_with") {
    zmp::Manager manager;
    auto d = manager.dict<std::string, double>();
    d.set_many({{"a", 1.5}, {"b", 2.0}});
    CHECK(d.get_many({"a", "missing", "b"}) == std::vector<std::optional<double>>{1.5, std::nullopt, 2.0});
    CHECK(d.increment("a", 2) == 3.5);
    CHECK(d.increment("new") == 1.0);  // a missing key counts as 0

    auto counts = manager.dict<std::string, long>();
    CHECK((counts["k"] += 5) == 5);
    CHECK((counts["k"] -= 2) == 3);
    CHECK(counts.increment("k", 10) == 13);
    CHECK(counts.compare_and_set("k", 13L, 100L));
    CHECK_FALSE(counts.compare_and_set("k", 13L, 200L));
    CHECK(counts.getitem("k") == 100);
    CHECK(counts.compare_and_set("fresh", std::nullopt, 1L));  // only if absent
    CHECK_FALSE(counts.compare_and_set("fresh", std::nullopt, 2L));
    CHECK(counts.update_with("fresh", [](std::optional<long> v) { return v.value_or(0) * 10 + 7; }) == 17);
    CHECK(counts.getitem("fresh") == 17);

    // increment of what is not a number: TypeError, nothing changed; an overflow: ValueError.
    auto any = manager.dict();
    any.set("text", "hello");
    CHECK_THROWS_AS(any.increment("text"), zmp::TypeError);
    CHECK(any.getitem("text").as<std::string>() == "hello");
    counts.set("big", INT64_MAX);
    CHECK_THROWS_AS(counts.increment("big"), zmp::ValueError);
    CHECK(counts.getitem("big") == INT64_MAX);
}

TEST_CASE("dict<> holds keys and values of any type, and integers of every width are the same key") {
    zmp::Manager manager;
    auto d = manager.dict();
    d.set(1, "one");
    d.set("two", 2);
    d.set(std::vector<int>{1, 2}, std::map<std::string, int>{{"x", 1}});
    CHECK(d.getitem(static_cast<std::int64_t>(1)).as<std::string>() == "one");
    CHECK(d.getitem(static_cast<unsigned char>(1)).as<std::string>() == "one");
    CHECK(d.getitem("two").as<int>() == 2);
    CHECK(d.getitem(std::vector<int>{1, 2}).as<std::map<std::string, int>>().at("x") == 1);
    CHECK(d.contains(1.0));  // msgpack packs a whole double as the integer: 1.0 is 1, as in Python
    CHECK_FALSE(d.contains(1.5));
    // A stored value read as the wrong type: ProtocolError, and the dict goes on.
    d.set("text", "not a number");
    auto typed = zmp::DictProxy<std::string, int>(d.handle());
    CHECK_THROWS_AS(typed.getitem("text"), zmp::ProtocolError);
    CHECK(typed.getitem("two") == 2);
}

// ---- list ----------------------------------------------------------------------------------------

TEST_CASE("list: every Python operation, with IndexError and ValueError where Python raises them") {
    zmp::Manager manager;
    auto l = manager.list<int>({5, 3, 8});
    CHECK(l.len() == 3);
    l.append(1);
    l.extend({9, 3});
    CHECK(l.copy() == IntList{5, 3, 8, 1, 9, 3});
    CHECK(l.getitem(0) == 5);
    CHECK(static_cast<int>(l[-1]) == 3);
    CHECK_THROWS_AS(l.getitem(6), zmp::IndexError);
    CHECK_THROWS_AS(l.getitem(-7), zmp::IndexError);
    l[1] = 4;
    l.set(-1, 7);
    CHECK_THROWS_AS(l.set(6, 0), zmp::IndexError);
    CHECK(l.copy() == IntList{5, 4, 8, 1, 9, 7});
    l.insert(0, 100);
    l.insert(-1, 200);    // before the last
    l.insert(1000, 300);  // clamped to the end
    CHECK(l.copy() == IntList{100, 5, 4, 8, 1, 9, 200, 7, 300});
    CHECK(l.index(8) == 3);
    CHECK(l.index(8, 2, 5) == 3);
    CHECK_THROWS_AS(l.index(8, 4), zmp::ValueError);
    CHECK_THROWS_AS(l.index(12345), zmp::ValueError);
    l.append(5);
    CHECK(l.count(5) == 2);
    CHECK(l.count(6) == 0);
    CHECK(l.contains(9));
    CHECK(l.pop() == 5);
    CHECK(l.pop(0) == 100);
    CHECK(l.pop(-2) == 7);
    CHECK_THROWS_AS(l.pop(50), zmp::IndexError);
    l.remove(200);
    CHECK_THROWS_AS(l.remove(200), zmp::ValueError);
    CHECK(l.copy() == IntList{5, 4, 8, 1, 9, 300});
    l.del(0);
    CHECK_THROWS_AS(l.del(10), zmp::IndexError);
    l.sort();
    CHECK(l.copy() == IntList{1, 4, 8, 9, 300});
    l.sort(true);
    CHECK(l.copy() == IntList{300, 9, 8, 4, 1});
    l.reverse();
    CHECK(l.copy() == IntList{1, 4, 8, 9, 300});
    // Slices, with Python's bounds: negative from the end, clamped, a bound left out.
    CHECK(l.slice(1, 3) == IntList{4, 8});
    CHECK(l.slice(std::nullopt, 2) == IntList{1, 4});
    CHECK(l.slice(-2, std::nullopt) == IntList{9, 300});
    CHECK(l.slice(3, 1).empty());
    CHECK(l.slice(-100, 100) == IntList{1, 4, 8, 9, 300});
    l.set_slice(1, 3, IntList{40, 41, 42});
    CHECK(l.copy() == IntList{1, 40, 41, 42, 9, 300});
    l.del_slice(-2, std::nullopt);
    CHECK(l.copy() == IntList{1, 40, 41, 42});
    CHECK((l[0] += 10) == 11);
    CHECK(l.increment(-1, -2) == 40);
    l.clear();
    CHECK(l.len() == 0);
    CHECK_THROWS_AS(l.pop(), zmp::IndexError);
}

TEST_CASE("list.sort orders numbers, strings and lists like Python, and refuses mixed types unchanged") {
    zmp::Manager manager;
    auto numbers = manager.list({zmp::AnyValue(3), zmp::AnyValue(-1.5), zmp::AnyValue(2), zmp::AnyValue(-7)});
    numbers.sort();
    std::vector<double> got;
    for (const auto& v : numbers.copy()) got.push_back(v.as<double>());
    CHECK(got == std::vector<double>{-7, -1.5, 2, 3});
    auto words = manager.list<std::string>({"pear", "apple", "fig", "apples"});
    words.sort();
    CHECK(words.copy() == std::vector<std::string>{"apple", "apples", "fig", "pear"});
    auto pairs = manager.list<std::vector<int>>({{2, 1}, {1, 9}, {1, 2, 3}, {1, 2}});
    pairs.sort();
    CHECK(pairs.copy() == std::vector<std::vector<int>>{{1, 2}, {1, 2, 3}, {1, 9}, {2, 1}});
    auto mixed = manager.list({zmp::AnyValue(1), zmp::AnyValue("a"), zmp::AnyValue(0)});
    CHECK_THROWS_AS(mixed.sort(), zmp::TypeError);
    CHECK(mixed.getitem(1).as<std::string>() == "a");  // unchanged
    CHECK(mixed.getitem(2).as<int>() == 0);
}

// ---- Namespace and Value ------------------------------------------------------------------------

TEST_CASE("Namespace: fields of any type, AttributeError for one that is not there") {
    zmp::Manager manager;
    auto ns = manager.Namespace();
    ns.set("x", 10);
    ns.set("name", "zmp");
    ns.set("ratios", std::vector<double>{0.5, 0.25});
    CHECK(ns.get<int>("x") == 10);
    CHECK(ns.get<std::string>("name") == "zmp");
    CHECK(ns.get("ratios").as<std::vector<double>>() == std::vector<double>{0.5, 0.25});
    CHECK(ns.has("x"));
    CHECK_FALSE(ns.has("y"));
    CHECK_THROWS_AS(ns.get("y"), zmp::AttributeError);
    CHECK_THROWS_WITH(ns.get("y"), Catch::Contains("no attribute"));
    CHECK(ns.names() == std::vector<std::string>{"x", "name", "ratios"});
    CHECK(ns.increment<int>("x", 5) == 15);
    ns.del("x");
    CHECK_THROWS_AS(ns.del("x"), zmp::AttributeError);
    CHECK(ns.names() == std::vector<std::string>{"name", "ratios"});
}

TEST_CASE("Value: get, set, increment and compare_and_set") {
    zmp::Manager manager;
    auto v = manager.Value<int>(3);
    CHECK(v.get() == 3);
    CHECK(v.value() == 3);
    v.set(5);
    CHECK(v.increment(2) == 7);
    CHECK(v.compare_and_set(7, 70));
    CHECK_FALSE(v.compare_and_set(7, 700));
    CHECK(v.get() == 70);
    auto text = manager.Value<std::string>("abc");
    CHECK(text.get() == "abc");
    CHECK_THROWS_AS(text.increment(), zmp::TypeError);
    CHECK(text.get() == "abc");
}

// ---- atomic across processes ------------------------------------------------------------------------

namespace {
void add_thousand(zmp::DictProxy<std::string, int> d, zmp::ValueProxy<long> v, zmp::ListProxy<int> l,
                  zmp::NamespaceProxy ns) {
    for (int i = 0; i < 1000; ++i) {
        d["hits"] += 1;
        v.increment();
        l[0] += 1;
        ns.increment("n");
        // A read-modify-write of the caller's own: compare_and_set retries until it lands.
        d.update_with("cas", [](std::optional<int> x) { return x.value_or(0) + 1; });
    }
}
}  // namespace

TEST_CASE("4 processes x 1,000 increments on one key: exactly 4,000 (dict, Value, list item, Namespace, CAS)") {
    zmp::Manager manager;
    auto d = manager.dict<std::string, int>();
    auto v = manager.Value<long>(0);
    auto l = manager.list<int>({0});
    auto ns = manager.Namespace();
    std::vector<zmp::Process> workers;
    for (int i = 0; i < 4; ++i) workers.emplace_back(add_thousand, d, v, l, ns);
    for (auto& w : workers) w.start();
    for (auto& w : workers) {
        w.join();
        CHECK(w.exitcode() == 0);
    }
    CHECK(d.getitem("hits") == 4000);
    CHECK(d.getitem("cas") == 4000);
    CHECK(v.get() == 4000);
    CHECK(l.getitem(0) == 4000);
    CHECK(ns.get<int>("n") == 4000);
}

TEST_CASE("threads of one process share proxies: 4 threads x 500 increments") {
    zmp::Manager manager;
    auto d = manager.dict<std::string, int>();
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([d] {
            for (int i = 0; i < 500; ++i) d["n"] += 1;
        });
    for (auto& t : threads) t.join();
    CHECK(d.getitem("n") == 2000);
}

// ---- proxies travel ---------------------------------------------------------------------------------

namespace {
// A spawn or forkserver child has the proxies only as arguments: it shares no memory with us.
void use_travelled_proxies(zmp::DictProxy<std::string, int> d, zmp::ListProxy<std::string> l, zmp::NamespaceProxy ns,
                           zmp::ValueProxy<double> v, zmp::Queue<int> q, zmp::Event e) {
    d.set("child", d.getitem("parent") + 1);
    l.append("from the child");
    ns.set("seen", l.len());
    v.set(v.get() * 2);
    q.put(7);
    e.set();
}
}  // namespace

TEST_CASE("proxies work as Process arguments under every start method") {
    const auto method = GENERATE(zmp::StartMethod::fork, zmp::StartMethod::spawn, zmp::StartMethod::forkserver);
    zmp::Manager manager = zmp::get_context(method).Manager();
    auto d = manager.dict<std::string, int>();
    auto l = manager.list<std::string>({"from the parent"});
    auto ns = manager.Namespace();
    auto v = manager.Value<double>(1.25);
    auto q = manager.Queue<int>();
    auto e = manager.Event();
    d.set("parent", 41);
    zmp::Process p = zmp::get_context(method).Process(use_travelled_proxies, d, l, ns, v, q, e);
    p.start();
    p.join();
    CHECK(p.exitcode() == 0);
    CHECK(d.getitem("child") == 42);
    CHECK(l.copy() == std::vector<std::string>{"from the parent", "from the child"});
    CHECK(ns.get<int>("seen") == 2);
    CHECK(v.get() == 2.5);
    CHECK(q.get(60s) == 7);
    CHECK(e.is_set());
}

TEST_CASE("proxies sent through a Pipe to a process that never inherited them keep working") {
    auto [to_child, from_parent] = zmp::Pipe();
    zmp::Process sibling([c = from_parent]() mutable {
        auto [d, l] = c.recv<std::tuple<zmp::DictProxy<std::string, int>, zmp::ListProxy<int>>>();
        d["sum"] += 5;
        l.append(d.getitem("sum"));
        c.send(std::string("done"));
    });
    sibling.start();
    zmp::Manager manager;
    auto d = manager.dict<std::string, int>();
    auto l = manager.list<int>();
    d.set("sum", 1);
    to_child.send(std::make_tuple(d, l));
    REQUIRE(to_child.poll(60s));
    CHECK(to_child.recv<std::string>() == "done");
    CHECK(l.copy() == IntList{6});
    sibling.join();
    CHECK(sibling.exitcode() == 0);
    // A proxy decodes to the same object; a proxy of another type is refused.
    const msgpack::sbuffer packed = zmp::transport::encode(d);
    auto again = zmp::transport::decode_as<zmp::DictProxy<std::string, int>>(packed.data(), packed.size());
    CHECK(again == d);
    CHECK_THROWS_AS((zmp::transport::decode_as<zmp::ListProxy<int>>(packed.data(), packed.size())), zmp::ProtocolError);
    CHECK_THROWS_AS((zmp::transport::decode_as<zmp::NamespaceProxy>(packed.data(), packed.size())), zmp::ProtocolError);
}

namespace {
int record_square(zmp::DictProxy<int, int> squares, int x) {
    squares.set(x, x * x);
    return x;
}
}  // namespace

TEST_CASE("a proxy works as a Pool task argument under every start method") {
    const auto method = GENERATE(zmp::StartMethod::fork, zmp::StartMethod::spawn, zmp::StartMethod::forkserver);
    zmp::Manager manager;
    auto squares = manager.dict<int, int>();
    zmp::Pool pool(zmp::PoolOptions{.processes = 2, .context = method});
    std::vector<zmp::AsyncResult<int>> results;
    for (int i = 0; i < 20; ++i) results.push_back(pool.apply_async(record_square, squares, i));
    for (auto& r : results) (void)r.get(60s);
    CHECK(squares.len() == 20);
    for (int i = 0; i < 20; ++i) CHECK(squares.getitem(i) == i * i);
}

TEST_CASE("a KeyError raised by a proxy in a Pool task comes back as a KeyError") {
    zmp::Manager manager;
    auto d = manager.dict<int, int>();
    zmp::Pool pool(zmp::PoolOptions{.processes = 1});
    auto r = pool.apply_async([](zmp::DictProxy<int, int> dict) { return dict.getitem(404); }, d);
    CHECK_THROWS_AS(r.get(60s), zmp::KeyError);
}

// ---- shutdown and deaths ------------------------------------------------------------------------------

TEST_CASE("shutdown: every proxy raises ProcessError, in this process and in a child, and a second shutdown is fine") {
    auto manager = std::make_unique<zmp::Manager>();
    auto d = manager->dict<std::string, int>();
    auto l = manager->list<int>({1, 2});
    auto v = manager->Value<int>(1);
    auto q = manager->Queue<int>();
    d.set("a", 1);
    manager->shutdown();
    manager->shutdown();
    CHECK_THROWS_AS(d.get("a"), zmp::ProcessError);
    CHECK_THROWS_WITH(d.len(), Catch::Contains("shut down"));
    CHECK_THROWS_AS(l.append(3), zmp::ProcessError);
    CHECK_THROWS_AS(v.get(), zmp::ProcessError);
    CHECK_THROWS_AS(manager->dict(), zmp::ProcessError);
    CHECK(in_child([d] {
              try {
                  (void)d.len();
              } catch (const zmp::ProcessError&) {
                  return 0;
              }
              return 1;
          }) == 0);
    // The run's own objects it handed out live on.
    q.put(5);
    CHECK(q.get(30s) == 5);
    // The destructor of another manager shuts it down too.
    std::optional<zmp::DictProxy<int, int>> kept;
    {
        zmp::Manager scoped;
        kept.emplace(scoped.dict<int, int>());
        kept->set(1, 1);
    }
    CHECK_THROWS_AS(kept->len(), zmp::ProcessError);
}

TEST_CASE("the process that made a Manager is SIGKILLed: its objects shut down, other holders are told") {
    zmp::Queue<zmp::DictProxy<std::string, int>> handover;
    zmp::Event stay;
    zmp::Process owner([handover, stay] {
        zmp::Manager manager;
        auto d = manager.dict<std::string, int>();
        d.set("alive", 1);
        handover.put(d);
        (void)stay.wait(120s);
    });
    owner.start();
    auto d = handover.get(60s);
    CHECK(d.getitem("alive") == 1);
    ::kill(owner.pid().value(), SIGKILL);
    owner.join();
    // The broker learns of the death through a pidfd: within moments (a loaded machine may delay it).
    const auto deadline = Clock::now() + 60s;
    bool raised = false;
    while (!raised && Clock::now() < deadline) {
        try {
            (void)d.len();
            std::this_thread::sleep_for(5ms);
        } catch (const zmp::ProcessError& e) {
            raised = std::string(e.what()).find("shut down") != std::string::npos;
        }
    }
    CHECK(raised);
}

namespace {
// A standalone zmp-broker on an ipc endpoint in a private directory.
struct StandaloneBroker {
    std::string dir;
    std::string endpoint;
    pid_t pid = -1;

    StandaloneBroker() {
        char pattern[] = "/tmp/zmp-test-manager-XXXXXX";
        REQUIRE(::mkdtemp(pattern) != nullptr);
        dir = pattern;
        endpoint = "ipc://" + dir + "/broker";
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        posix_spawn_file_actions_t actions;
        ::posix_spawn_file_actions_init(&actions);
        ::posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
        std::string exe = ZMP_BROKER_EXE;
        char* argv[] = {exe.data(), endpoint.data(), nullptr};
        REQUIRE(::posix_spawn(&pid, argv[0], &actions, nullptr, argv, environ) == 0);
        ::posix_spawn_file_actions_destroy(&actions);
        ::close(fds[1]);
        FILE* out = ::fdopen(fds[0], "r");
        char line[512] = {};
        REQUIRE(std::fgets(line, sizeof line, out) != nullptr);  // "zmp-broker: serving ..."
        ::fclose(out);
        zmp::detail::this_run().set_broker_endpoint(endpoint);
    }
    ~StandaloneBroker() {
        if (pid > 0) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
        }
        std::error_code ignored;
        std::filesystem::remove_all(dir, ignored);
    }
};
}  // namespace

TEST_CASE("the broker dies: proxies raise ProcessError at once instead of hanging, in every process") {
    StandaloneBroker broker;
    zmp::Manager manager;
    auto d = manager.dict<std::string, int>();
    d.set("a", 1);
    zmp::Semaphore ready(0);
    zmp::Event never;
    zmp::Process child([d, ready, never] {
        ready.release();
        try {
            // Waits on an Event the broker serves until the broker dies; then the proxy must raise.
            (void)never.wait(120s);
            (void)d.len();
        } catch (const zmp::ProcessError&) {
            try {
                (void)d.len();
            } catch (const zmp::ProcessError&) {
                zmp::exit(0);
            }
        }
        zmp::exit(1);
    });
    child.start();
    REQUIRE(ready.acquire(60s));
    ::kill(broker.pid, SIGKILL);
    ::waitpid(broker.pid, nullptr, 0);
    broker.pid = -1;
    const auto start = Clock::now();
    CHECK_THROWS_AS(d.len(), zmp::ProcessError);
    const double seconds = test_util::seconds_since(start);
    WARN("a proxy call raised " << seconds * 1000 << " ms after its broker was reaped");
    CHECK_THROWS_AS(d.set("b", 2), zmp::ProcessError);
    child.join();
    CHECK(child.exitcode() == 0);
}

// ---- SharedMemoryManager ------------------------------------------------------------------------------

TEST_CASE("SharedMemoryManager: its segments work in a child and are unlinked at shutdown (case 74)") {
    std::string shm_name, list_name;
    {
        zmp::SharedMemoryManager smm;
        zmp::SharedMemory shm = smm.SharedMemory(64);
        zmp::ShareableList list = smm.ShareableList({std::int64_t{1}, std::string("two")});
        shm_name = shm.name();
        list_name = list.name();
        shm.buf()[0] = std::byte{42};
        CHECK(in_child([shm_name, list_name] {
                  zmp::SharedMemory seen(shm_name);
                  auto l = zmp::ShareableList::attach(list_name);
                  return seen.buf()[0] == std::byte{42} && l.get(1) == zmp::ShareableValue(std::string("two")) ? 0 : 1;
              }) == 0);
        // One its user unlinked already is no trouble at shutdown.
        zmp::SharedMemory early = smm.SharedMemory(16);
        early.unlink();
        CHECK(test_util::segments_starting(shm_name).size() == 1);
        smm.shutdown();
        CHECK_THROWS_AS(zmp::SharedMemory(shm_name), zmp::FileNotFoundError);
        CHECK_THROWS_AS(zmp::ShareableList::attach(list_name), zmp::FileNotFoundError);
        CHECK_THROWS_AS(smm.SharedMemory(8), zmp::ValueError);
        CHECK(shm.buf()[0] == std::byte{42});  // a mapping made before stays valid
        smm.shutdown();
    }
    // The destructor shuts down too.
    {
        zmp::SharedMemoryManager smm;
        shm_name = smm.SharedMemory(8).name();
    }
    CHECK(test_util::segments_starting(shm_name).empty());
}

// ---- garbage -----------------------------------------------------------------------------------------

TEST_CASE("garbage sent to the broker about a Manager's objects is refused, and they go on unchanged") {
    using namespace zmp::detail::broker;
    using zmp::detail::managed::Method;
    zmp::Manager manager;
    auto d = manager.dict<std::string, int>();
    auto l = manager.list<int>({1, 2, 3});
    d.set("k", 1);
    const zmp::detail::ObjectRef& dr = d.handle().ref();
    const zmp::detail::ObjectRef& lr = l.handle().ref();
    BrokerLink& link = *dr.link;
    auto item = [](const auto& value) {
        const msgpack::sbuffer b = zmp::transport::encode(value);
        std::string batch;
        append_item(batch, std::string_view(b.data(), b.size()));
        return batch;
    };
    const auto m = [](Method method) { return static_cast<std::int64_t>(method); };
    const std::string key = item(std::string("k"));
    const std::string value = item(99);
    // Each is refused with ProtocolError.
    CHECK_THROWS_AS(link.call(Op::manager_call, dr.id, {0, 0}), zmp::ProtocolError);                // no method
    CHECK_THROWS_AS(link.call(Op::manager_call, dr.id, {250, 0}), zmp::ProtocolError);              // unknown method
    CHECK_THROWS_AS(link.call(Op::manager_call, dr.id, {m(Method::setitem)}), zmp::ProtocolError);  // no count
    CHECK_THROWS_AS(link.call(Op::manager_call, dr.id, {m(Method::setitem), -1}), zmp::ProtocolError);
    CHECK_THROWS_AS(link.call(Op::manager_call, dr.id, {m(Method::setitem), 2}), zmp::ProtocolError);       // no items
    CHECK_THROWS_AS(link.call(Op::manager_call, dr.id, {m(Method::setitem), 1}, key), zmp::ProtocolError);  // 1 of 2
    CHECK_THROWS_AS(link.call(Op::manager_call, dr.id, {m(Method::setitem), 3}, key + value), zmp::ProtocolError);
    CHECK_THROWS_AS(link.call(Op::manager_call, dr.id, {m(Method::setitem), 2}, key + value + "x"),
                    zmp::ProtocolError);  // bytes after the last item
    std::string not_msgpack;
    append_item(not_msgpack, "\xc1");  // a byte msgpack never uses
    CHECK_THROWS_AS(link.call(Op::manager_call, dr.id, {m(Method::setitem), 2}, key + not_msgpack), zmp::ProtocolError);
    std::string two_values;
    append_item(two_values, std::string("\x01\x02", 2));  // two values in one item
    CHECK_THROWS_AS(link.call(Op::manager_call, dr.id, {m(Method::setitem), 2}, key + two_values), zmp::ProtocolError);
    std::string empty;
    append_item(empty, "");
    CHECK_THROWS_AS(link.call(Op::manager_call, dr.id, {m(Method::setitem), 2}, key + empty), zmp::ProtocolError);
    CHECK_THROWS_AS(link.call(Op::manager_call, dr.id, {m(Method::update), 3}, key + value + key),
                    zmp::ProtocolError);  // not pairs
    CHECK_THROWS_AS(link.call(Op::manager_call, dr.id, {m(Method::list_pop), 0, 0, 0}), zmp::ProtocolError);
    CHECK_THROWS_AS(link.call(Op::manager_call, lr.id, {m(Method::getitem), 1}, key), zmp::ProtocolError);
    CHECK_THROWS_AS(link.call(Op::manager_call, lr.id, {m(Method::list_getitem), 0}), zmp::ProtocolError);  // no index
    CHECK_THROWS_AS(link.call(Op::manager_call, lr.id, {m(Method::value_get), 0, 0, 0}), zmp::ProtocolError);
    const std::uint64_t manager_id = dr.id - 1;  // made just before the dict, in this process
    CHECK_THROWS_AS(link.call(Op::manager_call, manager_id, {m(Method::getitem), 1}, key), zmp::ProtocolError);
    // Other ops on a Manager's object, and creating one without a manager.
    CHECK_THROWS_AS(link.call(Op::event_set, dr.id, {}), zmp::ProtocolError);
    CHECK_THROWS_AS(link.call(Op::queue_put, dr.id, {1, 0, 1}, value), zmp::ProtocolError);
    CHECK_THROWS_AS(link.call(Op::create, 0, {static_cast<std::int64_t>(Kind::manager_dict), 0, 0, 0, 0}),
                    zmp::ValueError);
    CHECK_THROWS_AS(link.call(Op::create, 0, {static_cast<std::int64_t>(Kind::manager_list), 1 << 30, 0, 0, 0}),
                    zmp::ValueError);
    // Indexes at the ends of int64 are only out of range.
    CHECK_THROWS_AS(l.getitem(INT64_MIN), zmp::IndexError);
    CHECK_THROWS_AS(l.getitem(INT64_MAX), zmp::IndexError);
    CHECK(l.slice(INT64_MIN + 1, INT64_MAX) == IntList{1, 2, 3});
    // Nothing changed.
    CHECK(d.items() == std::vector<std::pair<std::string, int>>{{"k", 1}});
    CHECK(l.copy() == IntList{1, 2, 3});
    d["k"] += 1;
    CHECK(d.getitem("k") == 2);
}
