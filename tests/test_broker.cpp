// The broker as a service: when the root starts it, handles in a process that inherited nothing,
// the standalone zmp-broker, what clients see when the broker dies, objects freed with their last
// handle, and memory bounded whatever clients send.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include "runtime/run.hpp"
#include "runtime/run_directory.hpp"
#include "runtime/zmq_context.hpp"
#include "broker/client.hpp"
#include "broker/handle.hpp"
#include "spawned.hpp"
#include "test_util.hpp"
#include "zmp/context.hpp"
#include "zmp/pipe.hpp"
#include "zmp/process.hpp"
#include "zmp/queue.hpp"
#include "zmp/sync.hpp"
#include "zmp/transport/codec.hpp"
#include "zmp/transport/zsocket.hpp"

extern char** environ;

using namespace std::chrono_literals;
using test_util::hex;
using test_util::Spawned;

namespace {

using test_util::rss_kib;

// A fresh standalone broker on an ipc endpoint in a private directory; this process uses it.
struct Standalone {
    std::string dir;
    std::string endpoint;
    std::unique_ptr<Spawned> process;

    Standalone() {
        char pattern[] = "/tmp/zmp-test-broker-XXXXXX";
        REQUIRE(::mkdtemp(pattern) != nullptr);
        dir = pattern;
        endpoint = "ipc://" + dir + "/broker";
        process = std::make_unique<Spawned>(std::vector<std::string>{ZMP_BROKER_EXE, endpoint});
        REQUIRE(process->line() == "zmp-broker: serving " + endpoint);
        zmp::detail::this_run().set_broker_endpoint(endpoint);
    }
    ~Standalone() {
        process.reset();
        std::error_code ignored;
        std::filesystem::remove_all(dir, ignored);
    }
};

// The broker's counters (STATS), asked on a connection of this process's own.
struct BrokerStats {
    std::int64_t clients, objects, connections, waiters, held_aside, slots;
};
BrokerStats broker_stats(const std::string& endpoint) {
    using namespace zmp::detail::broker;
    zmq::socket_t raw = zmp::transport::open_socket(zmp::detail::zmq_context(), zmq::socket_type::dealer);
    raw.connect(endpoint);
    for (auto [op, rid] : {std::pair{Op::hello, 1}, std::pair{Op::stats, 2}}) {
        msgpack::sbuffer out;
        if (op == Op::hello) {
            encode_request(out, op, 0, rid, {::getpid(), 0});
        } else {
            encode_request(out, op, 0, rid, {});
        }
        raw.send(zmq::buffer(out.data(), out.size()), zmq::send_flags::none);
    }
    std::vector<zmq::message_t> frames;
    for (;;) {
        REQUIRE(zmp::transport::recv_message(raw, frames, 2, std::chrono::milliseconds(60000)));
        const Reply r = decode_reply(frames[0].data(), frames[0].size());
        if (r.rid == 2) return {r.value(2), r.value(3), r.value(4), r.value(5), r.value(6), r.value(7)};
    }
}

// Test set-up only: waits until cond() holds, at most `limit`.
template <class F>
bool eventually(F cond, std::chrono::seconds limit = std::chrono::seconds(60)) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (!cond()) {
        if (std::chrono::steady_clock::now() > end) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
}

// A child that keeps a handle it was given after its parent dropped every copy: spawned, so that it
// inherited nothing.
int use_handles_later(zmp::Lock lock, zmp::Queue<int> queue) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the parent's drops land first
    if (!lock.acquire(std::chrono::seconds(60))) return 1;
    lock.release();
    queue.put(7);
    return queue.get(std::chrono::seconds(60)) == 7 ? 0 : 1;
}
void use_handles_later_target(zmp::Lock lock, zmp::Queue<int> queue) { zmp::exit(use_handles_later(lock, queue)); }

}  // namespace

TEST_CASE("the root starts its broker before its first child, even if it made no object") {
    zmp::detail::ThisRun& run = zmp::detail::this_run();
    CHECK(run.broker_endpoint().empty());
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process child([w = writer]() mutable {
        zmp::Lock lock;  // made in the child: the root's broker must already run
        lock.acquire();
        w.send(lock);
    });
    child.start();
    writer.close();
    CHECK_FALSE(run.broker_endpoint().empty());
    CHECK(run.broker_endpoint().rfind("ipc://" + zmp::detail::run_directory().path() + "/", 0) == 0);
    auto lock = reader.recv<zmp::Lock>();
    child.join();
    CHECK(child.exitcode() == 0);
    // The child held it when it exited: the broker freed it and tells the next owner.
    CHECK(lock.acquire(30s));
    CHECK(lock.owner_died());
}

TEST_CASE("a process that was only handed the broker endpoint (as a spawned child is) uses handles from a message") {
    zmp::Lock lock;
    zmp::Event ready;
    lock.acquire();
    msgpack::sbuffer packed;
    msgpack::pack(packed, std::make_tuple(lock, ready));
    Spawned probe({HELPER_sync_handle_probe, zmp::detail::this_run().broker_endpoint(), hex(packed)});
    REQUIRE(ready.wait(60s));  // it saw the lock held, and set the event
    lock.release();
    CHECK(probe.line() == "probe ok");
    CHECK(probe.wait() == 0);
}

TEST_CASE("zmp-broker serves a program whose runtime points at it, and exits 0 on SIGTERM") {
    Standalone broker;
    zmp::Lock lock;
    zmp::Condition cond;
    zmp::Barrier barrier(2);
    CHECK(lock.handle().ref().link->endpoint() == broker.endpoint);
    zmp::Process child([=] {
        if (!lock.acquire(60s)) zmp::exit(1);
        lock.release();
        {
            std::lock_guard g(cond);
            cond.notify();
        }
        (void)barrier.wait(60s);
    });
    {
        std::unique_lock g(cond);
        child.start();
        CHECK(cond.wait(60s));
    }
    (void)barrier.wait(60s);
    child.join();
    CHECK(child.exitcode() == 0);
    ::kill(broker.process->pid, SIGTERM);
    CHECK(broker.process->wait() == 0);
    CHECK_FALSE(std::filesystem::exists(broker.dir + "/broker"));
}

TEST_CASE("when the broker dies, calls that need it raise ProcessError instead of hanging") {
    Standalone broker;
    zmp::Condition cond;
    zmp::Lock lock;
    zmp::Semaphore waiting(0);
    zmp::Process child([=] {
        std::unique_lock g(cond);
        waiting.release();
        try {
            (void)cond.wait();  // the broker dies while this waits
        } catch (const zmp::ProcessError&) {
            zmp::exit(0);
        }
        zmp::exit(1);
    });
    child.start();
    REQUIRE(waiting.acquire(60s));
    { std::lock_guard g(cond); }  // the child is inside wait()
    ::kill(broker.process->pid, SIGKILL);
    CHECK(broker.process->wait() == -SIGKILL);
    child.join();
    CHECK(child.exitcode() == 0);
    CHECK_THROWS_AS(zmp::Event(), zmp::ProcessError);
    // An object on the fast path lives in shared memory: it still works.
    if (lock.handle().ref().slot != nullptr) {
        CHECK(lock.acquire(false));
        lock.release();
    }
}

TEST_CASE("a wait whose timeout is near INT64_MAX nanoseconds waits for ever instead of timing out at once") {
    using namespace zmp::detail::broker;
    zmp::Condition cond;  // a Condition's waits always go through the broker
    zmq::socket_t raw = zmp::transport::open_socket(zmp::detail::zmq_context(), zmq::socket_type::dealer);
    raw.connect(zmp::detail::this_run().broker_endpoint());
    std::uint64_t rid = 0;
    auto request = [&](Op op, std::uint64_t object, std::initializer_list<std::int64_t> args) {
        msgpack::sbuffer out;
        encode_request(out, op, object, ++rid, args);
        raw.send(zmq::buffer(out.data(), out.size()), zmq::send_flags::none);
        return rid;
    };
    auto reply_within = [&](std::chrono::milliseconds wait) -> std::optional<Reply> {
        zmq::pollitem_t item{raw.handle(), 0, ZMQ_POLLIN, 0};
        if (zmq::poll(&item, 1, wait) == 0) return std::nullopt;
        zmq::message_t m;
        REQUIRE(raw.recv(m));
        return decode_reply(m.data(), m.size());
    };
    request(Op::hello, 0, {::getpid(), 424242});
    REQUIRE(reply_within(60s)->status == Status::ok);
    const std::uint64_t wait_rid = request(Op::cond_wait, cond.handle().ref().id, {INT64_MAX});
    const auto registered = reply_within(60s);
    REQUIRE(registered);
    CHECK(registered->rid == wait_rid);
    CHECK(registered->status == Status::registered);
    // An overflowing deadline lands in the past and is answered "timed out" on the broker's next
    // turn; a saturated one is not answered until notified.
    CHECK_FALSE(reply_within(300ms));
    {
        std::lock_guard g(cond);
        cond.notify_all();
    }
    const auto notified = reply_within(60s);
    REQUIRE(notified);
    CHECK(notified->rid == wait_rid);
    CHECK(notified->value(0) == 1);
}

// ---- object lifetime -----------------------------------------------------------------------------

TEST_CASE("100,000 make-and-drop cycles of a Lock and a Queue keep the root's RSS, /dev/shm and the broker flat") {
    auto cycle = [](int i) {
        zmp::Lock lock;
        zmp::Queue<int> queue;
        if (i % 10 == 0) {  // used now and then: a queue delivery takes a cursor slot of its own
            lock.acquire();
            lock.release();
            queue.put(i);
            REQUIRE(queue.get(std::chrono::seconds(60)) == i);
        }
    };
    for (int i = 0; i < 2000; ++i) cycle(i);  // warm-up: caches, the first segments
    const std::string endpoint = zmp::detail::this_run().broker_endpoint();
    const std::string shm_prefix = "zmp-" + std::to_string(::getpid()) + "-";
    REQUIRE(eventually([&] { return broker_stats(endpoint).objects <= 2; }));
    const BrokerStats before = broker_stats(endpoint);
    const long rss_before = rss_kib(::getpid());
    const auto shm_before = test_util::segments_starting(shm_prefix).size();

    for (int i = 0; i < 100000; ++i) cycle(i);

    REQUIRE(eventually([&] { return broker_stats(endpoint).objects <= before.objects; }));
    const BrokerStats after = broker_stats(endpoint);
    const long rss_after = rss_kib(::getpid());
    CHECK(after.slots <= before.slots);
    CHECK(after.held_aside == 0);
    CHECK(test_util::segments_starting(shm_prefix).size() <= shm_before);
    // Without freeing, 100,000 cycles grew the root by more than 500 MB.
    CHECK(rss_after - rss_before < 32 * 1024);
}

TEST_CASE("handles sent through a Pipe to a child and dropped by the parent keep working in the child") {
    auto [reader, writer] = zmp::Pipe(false);
    // The child starts before the objects exist: it inherits none of them.
    zmp::Process child([r = reader]() mutable {
        const std::string handles = r.recv_bytes();  // decoded only once the parent dropped its copies
        if (r.recv<std::string>() != "dropped") zmp::exit(2);
        auto [lock, queue] =
            zmp::transport::decode_as<std::tuple<zmp::Lock, zmp::Queue<int>>>(handles.data(), handles.size());
        if (!lock.acquire(std::chrono::seconds(60))) zmp::exit(3);
        lock.release();
        queue.put(5);
        zmp::exit(queue.get(std::chrono::seconds(60)) == 5 ? 0 : 4);
    });
    child.start();
    reader.close();
    const std::string endpoint = zmp::detail::this_run().broker_endpoint();
    const auto objects_before = broker_stats(endpoint).objects;
    {
        zmp::Lock lock;
        zmp::Queue<int> queue;
        writer.send(std::make_tuple(lock, queue));
    }
    // Every copy here is gone, and the broker knows: the objects live on the references set aside
    // for the child.
    zmp::detail::broker::BrokerLink::local().sync_references(std::chrono::seconds(60));
    CHECK(broker_stats(endpoint).objects == objects_before + 2);
    CHECK(broker_stats(endpoint).held_aside >= 2);
    writer.send(std::string("dropped"));
    child.join();
    CHECK(child.exitcode() == 0);
    // The child held the last references: the objects went with it.
    CHECK(eventually([&] { return broker_stats(endpoint).objects == objects_before; }));
}

TEST_CASE("handles given to a child as arguments outlive the parent's copies, under every start method") {
    for (const char* method : {"fork", "spawn", "forkserver"}) {
        INFO(method);
        std::optional<zmp::Process> child;
        {
            zmp::Lock lock;
            zmp::Queue<int> queue;
            child.emplace(zmp::get_context(method).Process(use_handles_later_target, lock, queue));
            child->start();
        }
        child->join();
        CHECK(child->exitcode() == 0);
    }
}

TEST_CASE("a hostile client that floods the broker with creates and exits leaves its object count where it was") {
    zmp::Lock lock;  // the broker is up
    const std::string endpoint = zmp::detail::this_run().broker_endpoint();
    REQUIRE(eventually([&] { return broker_stats(endpoint).objects <= 1; }));
    const BrokerStats before = broker_stats(endpoint);
    zmp::Process flooder([endpoint] {
        using namespace zmp::detail::broker;
        zmq::socket_t raw = zmp::transport::open_socket(zmp::detail::zmq_context(), zmq::socket_type::dealer);
        raw.connect(endpoint);
        msgpack::sbuffer out;
        encode_request(out, Op::hello, 0, 1, {::getpid(), 1});
        raw.send(zmq::buffer(out.data(), out.size()), zmq::send_flags::none);
        // As fast as the broker answers: 32 creates in flight at any time.
        constexpr int kCreates = 30000;
        std::vector<zmq::message_t> frames;
        int answered = 0;
        for (int i = 0; i < kCreates; ++i) {
            out.clear();
            const auto kind = static_cast<std::int64_t>(i % 2 == 0 ? Kind::lock : Kind::queue);
            encode_request(out, Op::create, 0, 2 + static_cast<std::uint64_t>(i),
                           {kind, 0, 1024, i % 4 == 0 ? 1 : 0, 0});
            raw.send(zmq::buffer(out.data(), out.size()), zmq::send_flags::none);
            while (i + 1 - answered > 32 || (i + 1 == kCreates && answered < kCreates)) {
                if (!zmp::transport::recv_message(raw, frames, 2, std::chrono::milliseconds(60000))) zmp::exit(1);
                if (decode_reply(frames[0].data(), frames[0].size()).rid >= 2) ++answered;
            }
        }
        ::_exit(0);  // as a crash would: no goodbye
    });
    flooder.start();
    flooder.join();
    CHECK(flooder.exitcode() == 0);
    CHECK(eventually([&] { return broker_stats(endpoint).objects <= before.objects; }));
    CHECK(broker_stats(endpoint).slots <= before.slots);
}

// ---- the broker's death ----------------------------------------------------------------------------

TEST_CASE(
    "a grandchild blocked on a Lock, Event, Condition, Barrier or Queue.get raises ProcessError when its root is "
    "SIGKILLed") {
    for (const char* what : {"lock", "event", "condition", "barrier", "queue"}) {
        INFO(what);
        Spawned root({HELPER_orphan_root, what});
        const auto announced = root.line_within(std::chrono::milliseconds(60000));
        REQUIRE(announced);
        REQUIRE(announced->rfind("grandchild ", 0) == 0);
        const pid_t grandchild = std::stoi(announced->substr(11));
        std::this_thread::sleep_for(std::chrono::milliseconds(300));  // set-up: let it block
        ::kill(root.pid, SIGKILL);
        // The call raises within milliseconds (README: within 1 s of the broker's death); without
        // the watch on the broker it never would. The wait is a set-up bound, not a measurement.
        const auto result = root.line_within(std::chrono::milliseconds(60000));
        ::kill(grandchild, SIGKILL);  // in case it is still blocked
        REQUIRE(result);
        CHECK(result->rfind("raised ProcessError", 0) == 0);
    }
}

// ---- bounded memory ------------------------------------------------------------------------------

TEST_CASE(
    "a client that floods the broker with requests it never reads, or with connections, leaves it near its start") {
    using namespace zmp::detail::broker;
    Standalone broker;
    const pid_t broker_pid = broker.process->pid;
    // A well-behaved client in another process is served the whole time (one round trip a turn).
    zmp::Condition cond;
    zmp::Semaphore rounds(0);
    zmp::Event stop;
    zmp::Process client([=] {
        while (!stop.is_set()) {
            {
                std::lock_guard g(cond);
                cond.notify();
            }
            rounds.release();
        }
    });
    client.start();
    REQUIRE(eventually([&] { return rounds.get_value() >= 10; }));
    auto unsent = [&] {
        zmq::socket_t raw = zmp::transport::open_socket(zmp::detail::zmq_context(), zmq::socket_type::dealer);
        raw.connect(broker.endpoint);
        msgpack::sbuffer out;
        encode_request(out, Op::hello, 0, 1, {::getpid(), 0});
        raw.send(zmq::buffer(out.data(), out.size()), zmq::send_flags::none);
        out.clear();
        encode_request(out, Op::stats, 0, 2, {});
        raw.send(zmq::buffer(out.data(), out.size()), zmq::send_flags::none);
        std::vector<zmq::message_t> frames;
        for (;;) {
            REQUIRE(zmp::transport::recv_message(raw, frames, 2, std::chrono::milliseconds(60000)));
            const Reply r = decode_reply(frames[0].data(), frames[0].size());
            if (r.rid == 2) return r.value(8);
        }
    };
    const long rss_start = rss_kib(broker_pid);

    // 1,000,000 requests whose answers are never read.
    const int rounds_before_requests = rounds.get_value();
    {
        // A plain DEALER (ZeroMQ's default high-water marks): once it holds 1,000 unread answers,
        // the rest wait in the broker, or are dropped there.
        zmq::socket_t flood(zmp::detail::zmq_context(), zmq::socket_type::dealer);
        flood.set(zmq::sockopt::linger, 0);
        flood.connect(broker.endpoint);
        msgpack::sbuffer out;
        encode_request(out, Op::hello, 0, 1, {::getpid(), 1});
        flood.send(zmq::buffer(out.data(), out.size()), zmq::send_flags::none);
        for (std::uint64_t rid = 2; rid < 1000002; ++rid) {
            out.clear();
            encode_request(out, Op::stats, 0, rid, {});
            flood.send(zmq::buffer(out.data(), out.size()), zmq::send_flags::none);
        }
        // Every answer but a few was dropped rather than kept for a reader that never comes.
        CHECK(eventually([&] { return unsent() >= 999000; }, std::chrono::seconds(110)));
    }
    CHECK(rounds.get_value() > rounds_before_requests);
    const long rss_after_requests = rss_kib(broker_pid);
    CHECK(rss_after_requests - rss_start < 24 * 1024);  // without bounds: +120 MB

    // 30,000 connections that say HELLO and go.
    const int rounds_before_connections = rounds.get_value();
    for (int i = 0; i < 30000; ++i) {
        zmq::socket_t one = zmp::transport::open_socket(zmp::detail::zmq_context(), zmq::socket_type::dealer);
        one.connect(broker.endpoint);
        msgpack::sbuffer out;
        encode_request(out, Op::hello, 0, 1, {::getpid(), i + 2});
        one.send(zmq::buffer(out.data(), out.size()), zmq::send_flags::none);
        std::vector<zmq::message_t> frames;
        REQUIRE(zmp::transport::recv_message(one, frames, 2, std::chrono::milliseconds(60000)));
    }
    CHECK(rounds.get_value() > rounds_before_connections);
    const BrokerStats stats = broker_stats(broker.endpoint);
    // The closed ones are forgotten (without: 30,000 records of ~210 bytes, kept for ever). Their
    // memory in ZeroMQ is freed as the broker catches up, which a loaded machine delays: RSS is
    // checked against the flood of answers' bound, generous.
    CHECK(stats.connections < 1000);
    CHECK(rss_kib(broker_pid) - rss_start < 24 * 1024);
    stop.set();
    client.join();
    CHECK(client.exitcode() == 0);
}
