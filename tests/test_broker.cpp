// The broker as a service: when the root starts it, handles in a process that inherited nothing,
// the standalone zmp-broker, and what clients see when the broker dies.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <optional>
#include <thread>

#include "runtime/runtime.hpp"
#include "broker/client.hpp"
#include "test_util.hpp"
#include "zmp/pipe.hpp"
#include "zmp/process.hpp"
#include "zmp/sync.hpp"
#include "zmp/transport/codec.hpp"
#include "zmp/transport/zsocket.hpp"

extern char** environ;

using namespace std::chrono_literals;
using zmp::detail::Runtime;

namespace {

// A child process started with posix_spawn (no fork of this one), its stdout on a pipe.
struct Spawned {
    pid_t pid = -1;
    FILE* out = nullptr;

    Spawned(const std::vector<std::string>& argv) {
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        posix_spawn_file_actions_t actions;
        ::posix_spawn_file_actions_init(&actions);
        ::posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        REQUIRE(::posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ) == 0);
        ::posix_spawn_file_actions_destroy(&actions);
        ::close(fds[1]);
        out = ::fdopen(fds[0], "r");
    }
    ~Spawned() {
        if (pid > 0) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
        }
        if (out != nullptr) ::fclose(out);
    }
    std::string line() {
        char buffer[512];
        if (std::fgets(buffer, sizeof buffer, out) == nullptr) return {};
        std::string s(buffer);
        if (!s.empty() && s.back() == '\n') s.pop_back();
        return s;
    }
    int wait() {
        int status = 0;
        ::waitpid(pid, &status, 0);
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    }
};

std::string hex(const msgpack::sbuffer& b) {
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (std::size_t i = 0; i < b.size(); ++i) {
        const auto c = static_cast<unsigned char>(b.data()[i]);
        s += digits[c >> 4];
        s += digits[c & 15];
    }
    return s;
}

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
        Runtime::instance().set_broker_endpoint(endpoint);
    }
    ~Standalone() {
        process.reset();
        std::error_code ignored;
        std::filesystem::remove_all(dir, ignored);
    }
};

}  // namespace

TEST_CASE("the root starts its broker before its first child, even if it made no object") {
    Runtime& rt = Runtime::instance();
    CHECK(rt.broker_endpoint().empty());
    auto [reader, writer] = zmp::Pipe(false);
    zmp::Process child([w = writer]() mutable {
        zmp::Lock lock;  // made in the child: the root's broker must already run
        lock.acquire();
        w.send(lock);
    });
    child.start();
    writer.close();
    CHECK_FALSE(rt.broker_endpoint().empty());
    CHECK(rt.broker_endpoint().rfind("ipc://" + rt.run_dir() + "/", 0) == 0);
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
    Spawned probe({HELPER_sync_handle_probe, Runtime::instance().broker_endpoint(), hex(packed)});
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
    CHECK(zmp::detail::to_wire(lock.ref()).endpoint == broker.endpoint);
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
    if (lock.ref().slot != nullptr) {
        CHECK(lock.acquire(false));
        lock.release();
    }
}

TEST_CASE("a wait whose timeout is near INT64_MAX nanoseconds waits for ever instead of timing out at once") {
    using namespace zmp::detail::broker;
    zmp::Condition cond;  // a Condition's waits always go through the broker
    auto& rt = Runtime::instance();
    zmq::socket_t raw = zmp::transport::open_socket(rt.context(), zmq::socket_type::dealer);
    raw.connect(rt.broker_endpoint());
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
    const std::uint64_t wait_rid = request(Op::cond_wait, cond.ref().id, {INT64_MAX});
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
