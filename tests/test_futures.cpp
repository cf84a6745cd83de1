// zmp::Future, as_completed and wait (concurrent.futures' semantics) on real pools of worker
// processes, and ProcessPoolExecutor on top of a Pool: results with timeouts, cancellation of
// tasks not started (proved by files they would have written), futures yielded as they complete.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "pool_tasks.hpp"
#include "test_util.hpp"
#include "zmp/futures.hpp"
#include "zmp/pool.hpp"

using namespace std::chrono_literals;
using zmp::Connection;

namespace {

using pool_tasks::fail_on;
using pool_tasks::sleep_then;
using pool_tasks::square;

// Blocks until the test sends on `gate`, then returns `value`.
int gated(Connection gate, int value) {
    (void)gate.recv<int>();
    return value;
}

// Says it runs (on `started`), then blocks until the test sends on `gate`.
int announce_then_wait(Connection started, Connection gate) {
    started.send(1);
    (void)gate.recv<int>();
    return 7;
}

// Leaves a file behind: the proof that it ran.
int touch(std::string path) {
    std::ofstream(path) << "ran";
    return 1;
}

// Leaves its file, then returns once the test sends on the gate.
int touch_then_wait(std::tuple<std::string, Connection> item) {
    touch(std::get<0>(item));
    (void)std::get<1>(item).recv<int>();
    return 2;
}

// Returns once the test sends on `gate`.
int wait_for_gate(Connection gate) {
    (void)gate.recv<int>();
    return 1;
}

int one_fails(int x) {
    if (x == 1) throw std::runtime_error("item 1 failed");
    return x;
}

// A path in the temporary directory no other test uses, and no file there yet.
std::string fresh_path(const std::string& name) {
    const auto path =
        std::filesystem::temp_directory_path() / ("zmp-test-futures-" + std::to_string(::getpid()) + "-" + name);
    std::filesystem::remove(path);
    return path.string();
}

// Test set-up only: waits until `path` exists, at most 60 s.
bool appears(const std::string& path) {
    for (int i = 0; i < 6000 && !std::filesystem::exists(path); ++i) std::this_thread::sleep_for(10ms);
    return std::filesystem::exists(path);
}

}  // namespace

TEST_CASE("Future: result and exception with timeouts, running, done") {
    zmp::Pool pool(2);
    auto [started_r, started_w] = zmp::Pipe(false);
    auto [gate_r, gate_w] = zmp::Pipe(false);
    auto future = pool.submit(announce_then_wait, started_w, gate_r);
    REQUIRE(started_r.poll(60s));
    CHECK(future.running());
    CHECK_FALSE(future.done());
    CHECK_THROWS_AS(future.result(0.05s), zmp::TimeoutError);
    CHECK_THROWS_AS(future.exception(0.05s), zmp::TimeoutError);
    gate_w.send(1);
    CHECK(future.result(60s) == 7);
    CHECK(future.done());
    CHECK_FALSE(future.running());
    CHECK_FALSE(future.cancelled());
    CHECK(future.exception() == nullptr);
    auto failed = pool.submit(fail_on, 3, 3);
    auto error = failed.exception(60s);
    REQUIRE(error != nullptr);
    CHECK_THROWS_AS(std::rethrow_exception(error), std::runtime_error);
    CHECK_THROWS_AS(failed.result(), std::runtime_error);
}

TEST_CASE("Future::cancel withdraws a task that has not started: it never runs") {
    zmp::Pool pool(1);
    auto [started_r, started_w] = zmp::Pipe(false);
    auto [gate_r, gate_w] = zmp::Pipe(false);
    auto blocker = pool.submit(announce_then_wait, started_w, gate_r);  // holds the only worker
    REQUIRE(started_r.poll(60s));
    CHECK_FALSE(blocker.cancel());  // running: too late
    const std::string marker = fresh_path("cancelled");
    const std::string map_marker = fresh_path("cancelled-map");
    auto queued = pool.submit(touch, marker);
    auto queued_map = pool.map_async(touch, std::vector<std::string>{map_marker});
    std::atomic<int> cancelled_callbacks{0};
    queued.add_done_callback([&](const zmp::Future<int>& f) { cancelled_callbacks += f.cancelled() ? 1 : 0; });
    CHECK_FALSE(queued.running());
    CHECK(queued.cancel());
    CHECK(queued.cancel());  // already cancelled: still true
    CHECK(queued_map.cancel());
    CHECK(queued.cancelled());
    CHECK(queued.done());
    CHECK_FALSE(queued.running());
    CHECK_THROWS_AS(queued.result(), zmp::CancelledError);
    CHECK_THROWS_AS(queued.exception(), zmp::CancelledError);
    CHECK_THROWS_AS(queued_map.get(), zmp::CancelledError);
    auto after = pool.submit(square, 5);  // queued behind the cancelled ones
    gate_w.send(1);
    CHECK(blocker.result(60s) == 7);
    CHECK(after.result(60s) == 25);  // the worker was free: the cancelled tasks would have run before this
    CHECK_FALSE(after.cancel());     // done: too late
    pool.close();
    pool.join();
    CHECK(cancelled_callbacks == 1);
    CHECK_FALSE(std::filesystem::exists(marker));
    CHECK_FALSE(std::filesystem::exists(map_marker));
}

TEST_CASE("as_completed yields the first future while the others still run (4 tasks of 0.1-0.4 s)") {
    zmp::Pool pool(4);
    // Set-up: all four workers up and each holding one task at the same time, so that the timed
    // tasks below start together, one per worker (the dispatcher deals to the least loaded).
    std::vector<Connection> gates;
    std::vector<zmp::Future<int>> warm;
    for (int i = 0; i < 4; ++i) {
        auto [started_r, started_w] = zmp::Pipe(false);
        auto [gate_r, gate_w] = zmp::Pipe(false);
        warm.push_back(pool.submit(announce_then_wait, started_w, gate_r));
        REQUIRE(started_r.poll(60s));
        gates.push_back(gate_w);
    }
    for (auto& gate : gates) gate.send(1);
    for (auto& f : warm) REQUIRE(f.result(60s) == 7);

    std::vector<zmp::Future<int>> futures;
    for (int i : {4, 3, 2, 1}) futures.push_back(pool.submit(sleep_then, 0.1 * i, i));  // the slowest first
    auto completing = zmp::as_completed(futures);
    auto it = completing.begin();
    REQUIRE(it != completing.end());
    CHECK((*it).result() == 1);
    // The first is in hand before the last has finished: the others are still running.
    CHECK_FALSE(futures[0].done());
    CHECK_FALSE(futures[1].done());
    CHECK_FALSE(futures[2].done());
    std::vector<int> order{(*it).result()};
    for (++it; it != completing.end(); ++it) order.push_back((*it).result());
    CHECK(order == std::vector<int>{1, 2, 3, 4});
}

TEST_CASE("as_completed yields each future as it completes, in the order they complete") {
    zmp::Pool pool(3);
    std::vector<Connection> gates;
    std::vector<zmp::Future<int>> futures;
    for (int i = 0; i < 3; ++i) {
        auto [reader, writer] = zmp::Pipe(false);
        futures.push_back(pool.submit(gated, reader, i));
        gates.push_back(writer);
    }
    auto completing = zmp::as_completed(futures);
    for (int i : {1, 2, 0}) {
        gates[i].send(1);
        auto next = completing.next();
        REQUIRE(next.has_value());
        CHECK(next->result() == i);
        int still_running = 0;
        for (const auto& f : futures) still_running += f.done() ? 0 : 1;
        CHECK(still_running == (i == 1 ? 2 : i == 2 ? 1 : 0));  // the gated ones cannot be done
    }
    CHECK_FALSE(completing.next().has_value());
}

TEST_CASE("wait: FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED, and a timeout that is not an error") {
    zmp::Pool pool(3);
    auto [r0, w0] = zmp::Pipe(false);
    auto [r1, w1] = zmp::Pipe(false);
    auto a = pool.submit(gated, r0, 0);
    auto b = pool.submit(gated, r1, 1);
    auto failing = pool.submit(fail_on, 5, 5);
    auto first_error = zmp::wait(std::vector{a, b, failing}, zmp::forever, zmp::FIRST_EXCEPTION);
    REQUIRE(first_error.done.size() == 1);
    CHECK(first_error.done[0].core() == failing.core());
    CHECK(first_error.not_done.size() == 2);
    auto timed_out = zmp::wait(std::vector{a, b}, 0.1s);
    CHECK(timed_out.done.empty());
    CHECK(timed_out.not_done.size() == 2);
    w1.send(1);
    auto first = zmp::wait(std::vector{a, b}, zmp::forever, zmp::FIRST_COMPLETED);
    REQUIRE(first.done.size() == 1);
    CHECK(first.done[0].result() == 1);
    REQUIRE(first.not_done.size() == 1);
    CHECK(first.not_done[0].core() == a.core());
    w0.send(1);
    auto all = zmp::wait(std::vector{a, b, a});  // a future listed twice appears once
    CHECK(all.done.size() == 2);
    CHECK(all.not_done.empty());
    auto no_error = zmp::wait(std::vector{a, b}, zmp::forever, zmp::FIRST_EXCEPTION);
    CHECK(no_error.done.size() == 2);  // none failed: all completed
}

TEST_CASE("ProcessPoolExecutor: submit, map in order with errors in place, map's timeout") {
    zmp::ProcessPoolExecutor executor({.processes = 2});
    CHECK(executor.submit(square, 6).result() == 36);
    std::vector<int> got;
    for (int v : executor.map(square, std::vector<int>{1, 2, 3})) got.push_back(v);
    CHECK(got == std::vector<int>{1, 4, 9});
    auto mapped = executor.map(one_fails, std::vector<int>{0, 1, 2});
    CHECK(mapped.next() == 0);
    CHECK_THROWS_AS(mapped.next(), std::runtime_error);
    CHECK(mapped.next() == 2);
    CHECK_FALSE(mapped.next().has_value());
    auto [open_r, open_w] = zmp::Pipe(false);
    auto [shut_r, shut_w] = zmp::Pipe(false);
    open_w.send(1);  // the first task may return; the second waits until the test lets it
    auto late = executor.map(wait_for_gate, std::vector<Connection>{open_r, shut_r}, 10s);
    CHECK(late.next() == 1);
    CHECK_THROWS_AS(late.next(), zmp::TimeoutError);  // 10 s from the map call, the second still waits
    shut_w.send(1);
}

TEST_CASE("ProcessPoolExecutor::shutdown(cancel_futures): what has not started never runs") {
    const std::string queued_marker = fresh_path("executor-queued");
    const std::string first = fresh_path("executor-map-0");
    const std::string rest = fresh_path("executor-map-1");
    zmp::ProcessPoolExecutor executor({.processes = 1});
    auto [gate_r, gate_w] = zmp::Pipe(false);
    using Item = std::tuple<std::string, Connection>;
    auto mapped = executor.map(touch_then_wait, std::vector<Item>{{first, gate_r}, {rest, gate_r}});
    REQUIRE(appears(first));  // the map has started: its first item runs, and waits for the gate
    auto queued = executor.submit(touch, queued_marker);
    executor.shutdown(false, true);
    gate_w.send(1);
    gate_w.send(1);  // had the second item run, it would not wait for ever: it would leave its file
    CHECK(queued.cancelled());
    CHECK_THROWS_AS(executor.submit(square, 1), zmp::RuntimeError);
    CHECK(mapped.next() == 2);
    CHECK_THROWS_AS(mapped.next(), zmp::CancelledError);  // in place of what was not started
    CHECK_FALSE(mapped.next().has_value());
    executor.shutdown();  // waits for the worker
    CHECK_FALSE(std::filesystem::exists(queued_marker));
    CHECK_FALSE(std::filesystem::exists(rest));
    std::filesystem::remove(first);
}
