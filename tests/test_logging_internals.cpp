// zmp's own records (logging/log.hpp) from real events, and children's output captured at the
// parent's request (zmp::capture_children_output): each test makes the event happen — a pool
// worker killed, a lock holder killed, a consumer killed holding queue items, a HELLO the broker
// refuses, the fork server killed, a daemonic child left running at exit — and waits for the
// record the root's handlers receive.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "broker/protocol.hpp"
#include "log_collector.hpp"
#include "process/forkserver.hpp"
#include "runtime/run.hpp"
#include "runtime/zmq_context.hpp"
#include "zmp/context.hpp"
#include "zmp/logging.hpp"
#include "zmp/pool.hpp"
#include "zmp/process.hpp"
#include "zmp/queue.hpp"
#include "zmp/sync.hpp"

using namespace std::chrono_literals;
using zmp::LogLevel;
using zmp::LogOrigin;
using zmp::LogRecord;
using zmp::StartMethod;

namespace {

using test_util::Collector;

std::string die_once_marker() {
    return (std::filesystem::temp_directory_path() /
            ("zmp-test-die-once-" + std::to_string(zmp::detail::this_run().root_pid())))
        .string();
}

// Kills its worker the first time it runs; returns x * 10 when tried again.
int die_once(int x) {
    const std::string marker = die_once_marker();
    if (!std::filesystem::exists(marker)) {
        std::FILE* f = std::fopen(marker.c_str(), "w");
        if (f != nullptr) std::fclose(f);
        ::raise(SIGKILL);
    }
    return x * 10;
}

void print_lines() {
    std::puts("out line");
    std::cout << "iostream line" << std::endl;
    std::fprintf(stderr, "err line\n");
    (void)!::write(1, "raw line\n", 9);
}

int print_in_task(int x) {
    std::printf("task %d printing\n", x);
    return x;
}

void print_uncaptured() { std::puts("written to the inherited stdout"); }

}  // namespace

TEST_CASE("pool workers: started, died by a signal, task retried, replaced") {
    Collector collected(LogLevel::info);
    std::filesystem::remove(die_once_marker());
    std::vector<int> results;
    {
        zmp::Pool pool(zmp::PoolOptions{.processes = 1, .context = StartMethod::fork, .max_retries = 1});
        results = pool.map(die_once, std::vector<int>{4});
        pool.close();
        pool.join();
    }
    std::filesystem::remove(die_once_marker());
    CHECK(results == std::vector<int>{40});
    const auto died = collected.wait_for("pool worker ForkPoolWorker-1 (pid ");
    REQUIRE(died);
    CHECK(collected.messages_with("ForkPoolWorker-1 (pid ").size() >= 2);  // started, then died
    const auto death = collected.wait_for(" died: killed by signal 9 (SIGKILL), running a task");
    REQUIRE(death);
    CHECK(death->level == LogLevel::info);
    CHECK(death->pid == ::getpid());  // the dispatcher, in the pool's process, tells it
    CHECK(death->message.starts_with("pool worker ForkPoolWorker-1 (pid "));
    const auto retried = collected.wait_for("retried (attempt 2 of 2): its worker ForkPoolWorker-1 died");
    REQUIRE(retried);
    CHECK(retried->level == LogLevel::warning);
    const auto replaced = collected.wait_for("pool worker ForkPoolWorker-1 replaced by ForkPoolWorker-2 (pid ");
    REQUIRE(replaced);
    CHECK(replaced->level == LogLevel::info);
    CHECK(collected.wait_for("pool worker ForkPoolWorker-2 (pid "));
}

TEST_CASE("quiet by default: at warning, a worker's life is not sent, a retried task is") {
    Collector collected(LogLevel::warning);
    std::filesystem::remove(die_once_marker());
    {
        zmp::Pool pool(zmp::PoolOptions{.processes = 1, .context = StartMethod::fork, .max_retries = 1});
        CHECK(pool.map(die_once, std::vector<int>{1}) == std::vector<int>{10});
        pool.close();
        pool.join();
    }
    std::filesystem::remove(die_once_marker());
    CHECK(collected.wait_for("retried (attempt 2 of 2): its worker ForkPoolWorker-1 died"));
    CHECK(collected.messages_with("running a task").empty());
    CHECK(collected.messages_with(" started").empty());
    CHECK(collected.messages_with(" replaced by ").empty());
}

TEST_CASE("a lock whose holder died is freed, and the broker says so") {
    Collector collected(LogLevel::warning);
    zmp::Lock lock;
    zmp::Process holder([lock]() mutable {
        lock.acquire();
        ::raise(SIGKILL);
    });
    holder.start();
    holder.join();
    REQUIRE(holder.exitcode() == -SIGKILL);
    CHECK(lock.acquire(true, zmp::Seconds(60)));
    lock.release();
    const auto freed =
        collected.wait_for("freed: its holder (pid " + std::to_string(*holder.pid()) + ") died holding it");
    REQUIRE(freed);
    CHECK(freed->message.starts_with("Lock "));
    CHECK(freed->level == LogLevel::warning);
}

TEST_CASE("queue items a killed consumer was sent and had not taken go back, and the broker says so") {
    Collector collected(LogLevel::info);
    zmp::Queue<int> queue;
    constexpr int kItems = 2000, kTaken = 300;
    for (int i = 0; i < kItems; ++i) queue.put(i);
    queue.join_thread();
    zmp::Process consumer([queue]() mutable {
        // Quick takes make each delivery bigger than the last: it dies holding some untaken.
        for (int i = 0; i < kTaken; ++i) (void)queue.get();
        ::raise(SIGKILL);
    });
    consumer.start();
    consumer.join();
    REQUIRE(consumer.exitcode() == -SIGKILL);
    std::vector<int> rest;
    for (int i = 0; i < kItems - kTaken; ++i) rest.push_back(queue.get(true, zmp::Seconds(60)));
    CHECK(rest.front() == kTaken);  // given back to their places, at the front
    CHECK(queue.empty());
    const auto back = collected.wait_for("given back to Queue ");
    REQUIRE(back);
    INFO(back->message);
    CHECK(back->message.ends_with(": its consumer (pid " + std::to_string(*consumer.pid()) +
                                  ") died or closed its connection before taking them"));
    CHECK(back->level == LogLevel::info);
}

TEST_CASE("a HELLO the broker refuses is logged with its reason") {
    Collector collected(LogLevel::warning);
    zmp::Event started;  // the broker runs from here on
    zmp::Process gone([] {});
    gone.start();
    gone.join();
    const pid_t dead = *gone.pid();
    zmq::socket_t dealer(zmp::detail::zmq_context(), zmq::socket_type::dealer);
    dealer.set(zmq::sockopt::linger, 0);
    dealer.set(zmq::sockopt::rcvtimeo, 60000);
    dealer.connect(zmp::detail::this_run().broker_endpoint());
    msgpack::sbuffer hello;
    zmp::detail::broker::encode_request(hello, zmp::detail::broker::Op::hello, 0, 7, {dead, 1});
    dealer.send(zmq::const_buffer(hello.data(), hello.size()));
    zmq::message_t answer;
    REQUIRE(dealer.recv(answer));
    const auto reply = zmp::detail::broker::decode_reply(answer.data(), answer.size());
    CHECK(reply.status == zmp::detail::broker::Status::protocol_error);
    const auto refused =
        collected.wait_for("broker refused a connection (HELLO from pid " + std::to_string(dead) + ")");
    REQUIRE(refused);
    CHECK(refused->message.ends_with("is not running"));
}

TEST_CASE("a fork server that was killed is started again, and the record says so") {
    Collector collected(LogLevel::info);
    auto first = zmp::get_context(StartMethod::forkserver).Process([] {});
    first.start();
    first.join();
    const auto server = zmp::detail::forkserver_pid();
    REQUIRE(server);
    ::kill(*server, SIGKILL);
    ::waitpid(*server, nullptr, 0);  // gone, its socket closed: the next start cannot reach it
    auto second = zmp::get_context(StartMethod::forkserver).Process([] {});
    second.start();
    second.join();
    CHECK(second.exitcode() == 0);
    const auto again = collected.wait_for("the fork server was gone: a new one started (pid ");
    REQUIRE(again);
    CHECK(again->message.find(std::to_string(*server)) == std::string::npos);
}

TEST_CASE("a process that exits with a daemonic child still running terminates it, and says so") {
    Collector collected(LogLevel::info);
    zmp::Process parent({.name = "leaving"}, [] {
        zmp::Process sleeper({.name = "sleeper", .daemon = true}, [] { ::pause(); });
        sleeper.start();
    });
    parent.start();
    parent.join();
    CHECK(parent.exitcode() == 0);
    const auto terminated = collected.wait_for("at exit: terminating daemonic child sleeper (pid ");
    REQUIRE(terminated);
    CHECK(terminated->process_name == "leaving");
    CHECK(terminated->level == LogLevel::info);
}

TEST_CASE("capture_children_output: every child's stdout and stderr reach the root, tagged with its name") {
    const StartMethod method = GENERATE(StartMethod::fork, StartMethod::spawn, StartMethod::forkserver);
    Collector collected(LogLevel::warning);
    zmp::capture_children_output();
    auto p = zmp::get_context(method).Process({.name = "printer"}, print_lines);
    p.start();
    p.join();
    REQUIRE(p.exitcode() == 0);
    {
        zmp::Pool pool(zmp::PoolOptions{.processes = 1, .context = method});
        CHECK(pool.map(print_in_task, std::vector<int>{5}) == std::vector<int>{5});
    }
    zmp::capture_children_output(false);
    auto later = zmp::get_context(method).Process({.name = "uncaptured"}, print_uncaptured);
    later.start();
    later.join();
    // One reader takes both pipes: lines keep their order within each stream.
    std::vector<std::string> out, err, worker_lines;
    for (const auto& r : collected.records()) {
        if (r.origin == LogOrigin::logger) continue;
        if (r.process_name == "printer") {
            CHECK(r.pid == *p.pid());
            (r.origin == LogOrigin::captured_stdout ? out : err).push_back(zmp::format_record(r));
        } else {
            CHECK(r.process_name.find("PoolWorker-1") != std::string::npos);
            worker_lines.push_back(r.message);
        }
    }
    CHECK(out == std::vector<std::string>{"[stdout/printer] out line", "[stdout/printer] iostream line",
                                          "[stdout/printer] raw line"});
    CHECK(err == std::vector<std::string>{"[stderr/printer] err line"});
    CHECK(worker_lines == std::vector<std::string>{"task 5 printing"});
}
